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

    def describe(self) -> dict:
        return {"backend": self.kind, "model": str(self.path), "precision": self.info.precision}


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
        """A model exported elsewhere must take (N, 3, H, W) at the given size and give one logit per class."""
        inputs, outputs = self.session.get_inputs()[0].shape, self.session.get_outputs()[0].shape
        fixed = [d if isinstance(d, int) else None for d in inputs]
        expected = [None, 3, *self.info.input_size]
        if len(fixed) != 4 or any(f is not None and f != e for f, e in zip(fixed[1:], expected[1:], strict=True)):
            raise ToolError(f"--model {self.path}: input {self.input_name!r} has shape {inputs}; expected "
                            f"(N, 3, {self.info.input_size[0]}, {self.info.input_size[1]}) (see --input-size)")
        if len(outputs) != 4 or (isinstance(outputs[1], int) and outputs[1] != len(self.info.classes)):
            raise ToolError(f"--model {self.path}: output shape {outputs}; expected (N, {len(self.info.classes)}, "
                            "H, W): one logit per class (not road, road)")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: batch})[0]
        except self._runtime_errors as err:
            raise ToolError(f"{self.path}: onnxruntime failed on a {tuple(batch.shape)} batch: "
                            f"{str(err).splitlines()[0]}") from None

    def describe(self) -> dict:
        return {**super().describe(), "provider": self.session.get_providers()[0],
                "threads": self.threads or "onnxruntime default (one per physical core)"}


def open_backend(path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None) -> Backend:
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxRuntimeBackend(path, threads, providers)
    if path.suffix == ".pt":
        raise ToolError(f"--model {path}: a PyTorch checkpoint; export it first (roadseg export --ckpt {path})")
    if path.suffix == ".engine":
        from roadseg.deploy.tensorrt_backend import TensorRTBackend  # here: it imports this module

        return TensorRTBackend(path)
    raise ToolError(f"--model {path}: expected an .onnx file or a TensorRT .engine")
