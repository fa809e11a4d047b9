"""OpenVINO run time: the same interface as onnxruntime and TensorRT (``roadseg.deploy.backends``).

Reads an .onnx file (our export, whose ``roadseg.*`` metadata OpenVINO keeps in the model's
``rt_info["framework"]``) or an OpenVINO IR (.xml + .bin, e.g. the INT8 file of ``roadseg quantize
--target openvino``). The exports' dynamic batch, height and width are fixed before compiling to
(1, 3, H, W) at the model's own input size, the only shape the run time feeds it: a static model
skips OpenVINO's shape inference on every request (measured 5-12% less latency on the zoo's models).
Compiled models are cached on disk (``$XDG_CACHE_HOME/roadseg/openvino``, or
the ``cache_dir`` argument), so the second start of a model skips compilation. Threads and the performance hint
(LATENCY for one stream of frames) are set on the compiled model; the device is ``CPU`` or any
device name OpenVINO reports (``GPU``, ``NPU``) where present. Inference precision is f32 unless
bf16 is asked for (``--backend openvino-bf16``; refused on a CPU without bf16 units).

openvino is an optional extra (``pip install 'roadseg[openvino]'``): it is imported only when a
model is opened with this backend, so this module imports on any machine.

    backend = OpenVinoBackend("runs/camvid/onnx/model_fp32.onnx", threads=2)
    logits = backend.infer(batch)                 # (1, 3, H, W) float32 -> (1, 2, H, W)
    OpenVinoBackend(path, batch=None)             # keep the file's dynamic dimensions
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from roadseg.deploy.backends import Backend, check_shapes
from roadseg.models.core.cli import ToolError
from roadseg.models.core.model_metadata import ModelInfo

SUFFIXES = (".onnx", ".xml")
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("f32", "bf16")


def import_openvino():
    try:
        import openvino as ov
    except ImportError:
        raise ToolError("--backend openvino needs OpenVINO (pip install 'roadseg[openvino]'); "
                        "--backend onnxruntime runs the same .onnx") from None
    return ov


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "roadseg" / "openvino"


def has_bf16_units(core, device: str = "CPU") -> bool:
    """Whether OpenVINO's ``device`` computes in bf16 natively (AMX, AVX512-BF16): where --backend
    openvino-bf16 runs, and where ``make zoo`` times it."""
    return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")


def framework_props(model) -> dict[str, str]:
    """The ONNX metadata_props OpenVINO kept in rt_info["framework"] (empty for a model without them)."""
    if not model.has_rt_info(["framework"]):
        return {}
    keys = model.get_rt_info()["framework"].keys()
    return {key: model.get_rt_info(["framework", key]).astype(str) for key in keys}


class OpenVinoBackend(Backend):
    kind = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int = 0, device: str = "CPU", hint: str = "LATENCY",
                 cache_dir: str | os.PathLike | None = None, info: ModelInfo | None = None,
                 inference_precision: str = "f32", batch: int | None = 1):
        ov = import_openvino()
        self.path, self.threads, self.device, self.hint = Path(path), threads, device, hint
        self.inference_precision = inference_precision
        if self.path.suffix not in SUFFIXES:
            raise ToolError(f"--model {self.path}: OpenVINO reads .onnx or .xml (IR) files")
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise ToolError(f"--model {self.path}: no such file, or empty")
        if hint not in HINTS:
            raise ToolError(f"--hint {hint}: expected one of {', '.join(HINTS)}")
        if inference_precision not in PRECISIONS:
            raise ToolError(f"inference precision {inference_precision}: expected one of {', '.join(PRECISIONS)}")
        core = ov.Core()
        if device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise ToolError(f"--device {device}: OpenVINO offers {', '.join(core.available_devices)} here")
        if inference_precision == "bf16":
            if not has_bf16_units(core, device):
                raise ToolError(f"--backend openvino-bf16: OpenVINO's {device} has no bf16 units here "
                                "(needs AMX or AVX512-BF16); use --backend openvino")
            self.kind = "openvino-bf16"
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(self.cache_dir)})
        except OSError:
            self.cache_dir = None  # a read-only home: compile every time rather than fail
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as err:
            raise ToolError(f"--model {self.path}: OpenVINO cannot load it: {_first_line(err)}") from None
        self.info = info or ModelInfo.from_props(framework_props(model), str(self.path))
        self.input_name = model.inputs[0].get_any_name()
        check_shapes(self.path, [_dim(d) for d in model.inputs[0].get_partial_shape()],
                     [_dim(d) for d in model.outputs[0].get_partial_shape()], self.info, self.input_name)
        if batch:
            try:
                model.reshape([batch, 3, *self.info.input_size])
            except RuntimeError as err:
                raise ToolError(f"--model {self.path}: OpenVINO cannot fix its input to "
                                f"({batch}, 3, {self.info.input_size[0]}, {self.info.input_size[1]}): "
                                f"{_first_line(err)}") from None
        self.input_shape = tuple(_dim(d) for d in model.inputs[0].get_partial_shape())
        # f32 unless asked: on CPUs with bf16 units OpenVINO would otherwise infer in bf16 by default,
        # which is a precision choice (and an accuracy change) of its own, not "fp32".
        # Unpinned threads: the run time's capture and output threads share the cores with inference, and
        # pinned inference threads measured 2.3x slower (p50) than unpinned ones on a loaded 2-core machine.
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": inference_precision,
                  "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as err:
            raise ToolError(f"--model {self.path}: OpenVINO cannot compile it for {device}: "
                            f"{_first_line(err)}") from None
        self.request = self.compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if None not in self.input_shape and batch.shape != self.input_shape:
            raise ToolError(f"{self.path}: compiled for a {self.input_shape} batch, given {tuple(batch.shape)} "
                            "(open it with batch=None for any shape)")
        try:
            self.request.infer({0: batch})
        except RuntimeError as err:
            raise ToolError(f"{self.path}: OpenVINO failed on a {tuple(batch.shape)} batch: {_first_line(err)}") \
                from None
        return self.request.get_output_tensor(0).data.copy()

    def describe(self) -> dict:
        described = super().describe()
        if self.inference_precision == "bf16":  # the file's weights, computed in bf16: a precision of its own
            described["precision"] = f"{self.info.precision} as bf16"
        return {**described, "provider": f"OpenVINO {self.device}", "hint": self.hint,
                "inference_precision": self.inference_precision, "input_shape": list(self.input_shape),
                "threads": self.threads or "OpenVINO default", "cache_dir": str(self.cache_dir)}


def _dim(dimension):
    return dimension.get_length() if dimension.is_static else None


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
