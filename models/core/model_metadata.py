"""The metadata every exported artifact carries (ONNX ``metadata_props``, TensorRT manifest).

Standard library only, so deploy reads it on a machine without torch. An exported model holds
the checkpoint's ``arch`` and ``meta`` as JSON (DESIGN.md), plus what the export decided:

    roadseg.format     "roadseg-model/1"
    roadseg.arch       JSON of the checkpoint's arch (every width; enough to rebuild it)
    roadseg.meta       JSON of the checkpoint's meta (stage, input_size, mean, std, dataset, ...)
    roadseg.precision  fp32 | fp16 | int8-qat-qdq | int8-ort-ptq | int8-trt-ptq
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
PRECISIONS = ("fp32", "fp16", "int8-qat-qdq", "int8-ort-ptq", "int8-trt-ptq")
CLASSES = ("not road", "road")
IGNORE_INDEX = 255
# The input normalisation every stage records in meta["mean"] / meta["std"] (ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MetadataError(ToolError):
    """An artifact without usable roadseg metadata; the message says what is missing."""


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
            classes = tuple(json.loads(ours.get("classes", json.dumps(CLASSES))))
            ignore_index = int(ours.get("ignore_index", IGNORE_INDEX))
        except (KeyError, ValueError) as err:
            raise MetadataError(f"{where}: roadseg metadata is damaged ({err})") from None
        for key in ("input_size", "mean", "std"):
            if key not in meta:
                raise MetadataError(f"{where}: roadseg metadata lacks meta[{key!r}]")
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
