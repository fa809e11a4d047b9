"""The metadata every exported artifact carries (ONNX ``metadata_props``, TensorRT manifest).

Standard library only, so deploy reads it on a machine without torch. An exported model holds
the checkpoint's ``arch`` and ``meta`` as JSON (DESIGN.md), plus what the export decided:

    roadseg.format     "roadseg-model/1"
    roadseg.arch       JSON of the checkpoint's arch (every width; enough to rebuild it)
    roadseg.meta       JSON of the checkpoint's meta (stage, input_size, mean, std, dataset, ...)
    roadseg.precision  fp32 | fp16 | int8-qat-qdq | int8-ort-ptq | int8-trt-ptq | int8-ov-ptq
    roadseg.source     sha256 of the checkpoint (or parent ONNX) it was made from
    roadseg.classes    JSON list of class names by output index; roadseg.ignore_index "255"

    from roadseg.models.core.model_metadata import ModelInfo
    info = ModelInfo.from_props(session.get_modelmeta().custom_metadata_map)
    info.input_size, info.mean, info.std
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from roadseg.models.core.cli import ToolError

FORMAT = "roadseg-model/1"
PREFIX = "roadseg."
PRECISIONS = ("fp32", "fp16", "int8-qat-qdq", "int8-ort-ptq", "int8-trt-ptq", "int8-ov-ptq")
CLASSES = ("not road", "road")
IGNORE_INDEX = 255
# The input normalisation every stage records in meta["mean"] / meta["std"] (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MetadataError(ToolError):
    """An artifact without usable roadseg metadata; the message says what is missing."""


# What a sane model's metadata holds; anything outside is refused before it sizes an allocation.
MAX_INPUT_SIDE = 8192
MIN_INPUT_SIDE = 8
MAX_DEPTH = 8


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


def check_meta(meta, where: str) -> None:
    """input_size: two integers in [8, 8192]; mean/std: three finite numbers, std > 0."""
    if not isinstance(meta, dict):
        raise MetadataError(f"{where}: roadseg meta must be a JSON object, got {type(meta).__name__}")
    size = meta.get("input_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            and all(MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in size)):
        raise MetadataError(f"{where}: meta input_size {size!r}: expected [H, W], integers from "
                            f"{MIN_INPUT_SIDE} to {MAX_INPUT_SIDE}")
    for key, positive in (("mean", False), ("std", True)):
        values = meta.get(key)
        if not (isinstance(values, (list, tuple)) and len(values) == 3 and all(map(_is_number, values))
                and (not positive or all(v > 0 for v in values))):
            rule = "three finite numbers > 0" if positive else "three finite numbers"
            raise MetadataError(f"{where}: meta {key} {values!r}: expected {rule}")


def check_arch(arch, where: str) -> None:
    """The fields that size things at run time: depth (U-Net) and encoder_blocks (MobileUNet)."""
    if not isinstance(arch, dict):
        raise MetadataError(f"{where}: roadseg arch must be a JSON object, got {type(arch).__name__}")
    depth = arch.get("depth", 0)
    if not (isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= MAX_DEPTH):
        raise MetadataError(f"{where}: arch depth {depth!r}: expected an integer from 0 to {MAX_DEPTH}")
    blocks = arch.get("encoder_blocks", [])
    if not isinstance(blocks, list) or len(blocks) > MAX_DEPTH:
        raise MetadataError(f"{where}: arch encoder_blocks: expected a list of at most {MAX_DEPTH} levels")


@dataclass(frozen=True)
class ModelInfo:
    arch: dict
    meta: dict
    precision: str = "fp32"
    source: str = ""
    classes: tuple[str, ...] = CLASSES
    ignore_index: int = IGNORE_INDEX
    extra: dict = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.meta["input_size"]
        return int(height), int(width)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.meta["std"])

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2**depth for UNet (its max-pools), 2**(levels + 1)
        for MobileUNet (stride-2 stem and levels); peers resize internally."""
        if "encoder_blocks" in self.arch:
            return 2 ** (len(self.arch["encoder_blocks"]) + 1)
        return 2 ** int(self.arch.get("depth", 0))

    def with_changes(self, **changes) -> ModelInfo:
        values = {"arch": self.arch, "meta": self.meta, "precision": self.precision, "source": self.source,
                  "classes": self.classes, "ignore_index": self.ignore_index, "extra": self.extra}
        values.update(changes)
        return ModelInfo(**values)

    def to_props(self) -> dict[str, str]:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        props = {
            "format": FORMAT,
            "arch": json.dumps(self.arch, sort_keys=True),
            "meta": json.dumps(self.meta, sort_keys=True),
            "precision": self.precision,
            "source": self.source,
            "classes": json.dumps(list(self.classes)),
            "ignore_index": str(self.ignore_index),
            **{key: str(value) for key, value in self.extra.items()},
        }
        return {PREFIX + key: value for key, value in props.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str = "model") -> ModelInfo:
        """Parse ``metadata_props``; a model exported by another tool gets a MetadataError naming ``where``."""
        ours = {key.removeprefix(PREFIX): value for key, value in props.items() if key.startswith(PREFIX)}
        if ours.get("format") != FORMAT:
            raise MetadataError(
                f"{where}: has no {FORMAT} metadata (was it exported by export/to_onnx.py?); "
                "give the input size and normalisation explicitly"
            )
        try:
            arch = json.loads(ours["arch"])
            meta = json.loads(ours["meta"])
            classes = json.loads(ours.get("classes", json.dumps(CLASSES)))
            classes = tuple(classes) if isinstance(classes, list) else classes
            ignore_index = int(ours.get("ignore_index", IGNORE_INDEX))
        except (KeyError, ValueError, TypeError, RecursionError) as err:
            raise MetadataError(f"{where}: roadseg metadata is damaged ({err})") from None
        for key in ("input_size", "mean", "std"):
            if not isinstance(meta, dict) or key not in meta:
                raise MetadataError(f"{where}: roadseg metadata lacks meta[{key!r}]")
        check_meta(meta, where)
        check_arch(arch, where)
        if not (isinstance(classes, tuple) and len(classes) == len(CLASSES)
                and all(isinstance(c, str) for c in classes)):
            raise MetadataError(f"{where}: roadseg classes {list(classes)!r}: expected {len(CLASSES)} class names")
        known = {"format", "arch", "meta", "precision", "source", "classes", "ignore_index"}
        extra = {key: value for key, value in ours.items() if key not in known}
        return cls(arch=arch, meta=meta, precision=ours.get("precision", "fp32"), source=ours.get("source", ""),
                   classes=classes, ignore_index=ignore_index, extra=extra)


def from_checkpoint(ckpt: dict, precision: str = "fp32", source: str = "") -> ModelInfo:
    """The metadata of a model exported from a loaded checkpoint (plain data; no tensors)."""
    return ModelInfo(arch=dict(ckpt["arch"]), meta=_json_safe(ckpt["meta"]), precision=precision, source=source)


def _json_safe(value):
    # meta is plain data, but may hold torch dtypes or tuples; JSON keeps what it can say exactly.
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_onnx_info(proto, info: ModelInfo) -> None:
    """Replace any roadseg metadata in an onnx ModelProto with ``info`` (in place)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *info.to_props().items()]:
        proto.metadata_props.add(key=key, value=value)
