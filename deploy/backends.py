"""Inference backends behind one small interface: load a model, infer a preprocessed batch, describe itself.

- ``OnnxRuntimeBackend`` (.onnx): execution providers picked in order of preference among those
  available: TensorRT, CUDA, CPU (or the ones asked for); CPU threads configurable.
- ``TensorRTBackend`` (.engine, ``roadseg.deploy.tensorrt_backend``). Deploy never imports torch:
  a .pt checkpoint is exported first (``roadseg export``).

Input size, normalisation and labels come from the model's metadata (models.model_metadata),
never from re-typed flags; a model without it needs ``info`` given explicitly.

    backend = open_backend("runs/camvid/onnx/model_fp32.onnx", threads=2)
    logits = backend.infer(batch)            # (N, 3, H, W) float32 -> (N, C, H, W)
    backend.describe()                        # {"backend": "onnxruntime", "provider": ..., ...}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from roadseg.deploy.latency import checked_onnx_session
from roadseg.models.core.cli import ToolError
from roadseg.models.core.model_metadata import ModelInfo

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INPUT_NAME = "image"


class Backend:
    """A loaded model. Subclasses set ``info`` and implement ``infer``."""

    kind = "?"
    info: ModelInfo
    path: Path

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    chosen_because = "given"

    def describe(self) -> dict:
        return {"backend": self.kind, "model": str(self.path), "precision": self.info.precision,
                "chosen_because": self.chosen_because}


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """The providers to use, best first: those requested (each must be available), else every
    preferred one that this onnxruntime build has; CPU is always the last resort."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ToolError(f"--providers: {', '.join(missing)} not available in this onnxruntime "
                            f"(available: {', '.join(available)})")
        return list(requested)
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or ["CPUExecutionProvider"]


def check_shapes(path: Path, inputs: list, outputs: list, info: ModelInfo, input_name: str) -> None:
    """A model exported elsewhere must take (N, 3, H, W) at the given size and give one logit per class
    (dimensions that are not fixed integers are dynamic)."""
    fixed = [d if isinstance(d, int) else None for d in inputs]
    expected = [None, 3, *info.input_size]
    if len(fixed) != 4 or any(f is not None and f != e for f, e in zip(fixed[1:], expected[1:], strict=True)):
        raise ToolError(f"--model {path}: input {input_name!r} has shape {inputs}; expected "
                        f"(N, 3, {info.input_size[0]}, {info.input_size[1]}) (see --input-size)")
    if len(outputs) != 4 or (isinstance(outputs[1], int) and outputs[1] != len(info.classes)):
        raise ToolError(f"--model {path}: output shape {outputs}; expected (N, {len(info.classes)}, "
                        "H, W): one logit per class (not road, road)")


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None,
                 info: ModelInfo | None = None):
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self.path = Path(path)
        self.threads = threads
        providers = choose_providers(ort.get_available_providers(), providers)
        self.session = checked_onnx_session(self.path, threads=threads, providers=providers)
        props = self.session.get_modelmeta().custom_metadata_map
        self.info = info or ModelInfo.from_props(props, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self._check_shapes()
        self._runtime_errors = (state.InvalidArgument, state.Fail, state.RuntimeException, state.NotImplemented)

    def _check_shapes(self) -> None:
        check_shapes(self.path, self.session.get_inputs()[0].shape, self.session.get_outputs()[0].shape, self.info,
                     self.input_name)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: batch})[0]
        except self._runtime_errors as err:
            raise ToolError(f"{self.path}: onnxruntime failed on a {tuple(batch.shape)} batch: "
                            f"{str(err).splitlines()[0]}") from None

    def describe(self) -> dict:
        return {**super().describe(), "provider": self.session.get_providers()[0],
                "threads": self.threads or "onnxruntime default (one per physical core)"}


BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_backend(path: Path, requested: str = "auto") -> tuple[str, str]:
    """(backend, why) for a model file. The ``auto`` rule, from measurements on CPUs (DESIGN.md):
    an .engine runs in TensorRT and an .xml in OpenVINO; an .onnx runs in onnxruntime when it has a
    GPU execution provider (TensorRT/CUDA), else in OpenVINO when installed (it ran our FP32 models
    1.1-2.3x faster than onnxruntime on a 2-core x86 CPU), else in onnxruntime."""
    if requested != "auto":
        return requested, f"--backend {requested}"
    if path.suffix == ".engine":
        return "tensorrt", "a TensorRT engine"
    if path.suffix == ".xml":
        return "openvino", "an OpenVINO IR"
    import onnxruntime as ort

    gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
    if gpu:
        return "onnxruntime", f"onnxruntime has {gpu[0]}"
    try:
        import openvino  # noqa: F401  (only asking whether it is installed)
    except ImportError:
        return "onnxruntime", "no GPU provider and OpenVINO is not installed"
    return "openvino", "a CPU-only machine with OpenVINO installed (faster than onnxruntime on CPUs measured)"


def open_backend(path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None,
                 backend: str = "auto") -> Backend:
    path = Path(path)
    if backend not in BACKENDS:
        raise ToolError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if path.suffix == ".pt":
        raise ToolError(f"--model {path}: a PyTorch checkpoint; export it first (roadseg export --ckpt {path})")
    if path.suffix not in (".onnx", ".engine", ".xml"):
        raise ToolError(f"--model {path}: expected an .onnx file, a TensorRT .engine or an OpenVINO .xml")
    if providers and backend == "auto":
        backend = "onnxruntime"  # execution providers are onnxruntime's
    chosen, why = choose_backend(path, backend)
    if chosen == "openvino":
        from roadseg.deploy.openvino_backend import OpenVinoBackend  # here: it imports this module

        opened = OpenVinoBackend(path, threads)
    elif chosen == "tensorrt":
        if path.suffix != ".engine":
            raise ToolError(f"--backend tensorrt: give a .engine (roadseg engine --model {path}), or use "
                            "--backend onnxruntime, whose TensorRT execution provider runs the .onnx")
        from roadseg.deploy.tensorrt_backend import TensorRTBackend

        opened = TensorRTBackend(path)
    else:
        if path.suffix != ".onnx":
            raise ToolError(f"--backend onnxruntime: {path} is not an .onnx file")
        opened = OnnxRuntimeBackend(path, threads, providers)
    opened.chosen_because = why
    return opened

