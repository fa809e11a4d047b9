"""TensorRT engine backend (.engine files from export/to_tensorrt.py): TensorRT 10.x or 11.x and NVIDIA's cuda-python.

An engine runs only with the TensorRT version and on the GPU it was built for. The manifest beside it
(``model.engine`` -> ``model.json``, models.engine_manifest) says which, and gives the input size,
normalisation and labels; both are checked before the engine is deserialized, so a mismatch is one line
naming both sides instead of TensorRT's own error. Tensors are bound by name ("image" in, "logits" out),
device buffers grow with the batch shape and are reused, and every CUDA call's error code is checked.

    with TensorRTBackend("runs/demo/trt/model.engine") as backend:
        logits = backend.infer(batch)          # (N, 3, H, W) float32 -> (N, C, H, W) float32
        backend.describe()                     # {"backend": "tensorrt", "tensorrt": "10.7.0", "gpu": ..., ...}

The TensorRT and CUDA glue (importing tensorrt and cuda-python, checking CUDA calls, the logger, the GPU's
name, shape strings) is models/core/tensorrt_glue.py, shared with export/to_tensorrt.py: the GPU checked
against the manifest here is named by the same function that named it there when the engine was built.
tensorrt and cuda-python are imported only when an engine is opened: this module imports on any machine
(and never imports torch or export/).

Both supported TensorRT versions run an engine the same way here (name-based I/O tensors, ``execute_async_v3``):
the 10.x/11.x difference is in how the builder gives the engine its precision (weak typing with builder flags on
10.x, strong typing from the ONNX graph on 11.x; export/to_tensorrt.py). An engine's input and output keep the
dtype its ONNX gave them (float32 for ours: export/to_fp16.py keeps the FP16 model's input and output FP32), and
the batch is cast to it either way. Another TensorRT major version is refused in one line
(tensorrt_glue.tensorrt_major), as is an engine whose manifest names another TensorRT version.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from roadseg.deploy.backends import Backend
from roadseg.models.core.cli import ToolError
from roadseg.models.core.engine_manifest import manifest_path, read_manifest
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.tensorrt_glue import (
    ENGINE_TARGET_FIELDS,
    INPUT_NAME,
    OUTPUT_NAME,
    CudaError,
    Gpu,
    Shape,
    cuda_check,
    engine_target,
    format_profile,
    format_shape,
    gpu_identity,
    import_cudart,
    import_tensorrt,
    make_logger,
    onnxruntime_hint,
)

REBUILD = "export/to_tensorrt.py"

ShapeProfile = tuple[Shape, Shape, Shape]  # (min, opt, max)


# checks (pure functions) -------------------------------------------------------------------------------
def check_engine_compatible(manifest: dict, trt_version: str, gpu: Gpu, where: str = "engine") -> None:
    """A one-line ToolError unless the engine was built with this TensorRT version for this GPU.

    TensorRT engines are specific to the TensorRT version and the GPU model they were built with. ``gpu``
    comes from tensorrt_glue.gpu_identity and the comparison goes through engine_target, as the builder's did.
    """
    components = manifest.get("components") or {}
    built = {key: components.get(key) for key in ENGINE_TARGET_FIELDS}
    missing = [key for key, value in built.items() if value in (None, "")]
    if missing:
        raise ToolError(f"{where}: its manifest does not say {', '.join(missing)}; rebuild it with {REBUILD}")
    here = engine_target(trt_version, gpu)
    if {key: str(value) for key, value in built.items()} == here:
        return
    source = f" --model {manifest['onnx']}" if manifest.get("onnx") else ""
    raise ToolError(f"{where}: built with TensorRT {built['tensorrt_version']} for {built['gpu_name']} "
                    f"(sm {built['compute_capability']}); this machine has TensorRT {here['tensorrt_version']} "
                    f"and {here['gpu_name']} (sm {here['compute_capability']}): rebuild it with {REBUILD}{source}")


def check_input_shape(shape: Shape, profile: ShapeProfile, where: str = "engine") -> None:
    """A one-line ToolError unless ``shape`` lies within the engine's profile (min <= shape <= max, per dimension)."""
    low, opt, high = profile
    shape = tuple(int(d) for d in shape)
    if len(shape) == len(low) and all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
        return
    raise ToolError(f"{where}: input {INPUT_NAME!r} of shape {format_shape(shape)} is outside the engine's profile "
                    f"({format_profile(low, opt, high)}); "
                    f"rebuild it with {REBUILD} --min-shape/--max-shape covering it")


def check_engine_bytes(data: bytes, manifest: dict, where: str) -> None:
    """The engine file must be the one its manifest describes (same sha256)."""
    if hashlib.sha256(data).hexdigest() != manifest["engine_sha256"]:
        raise ToolError(f"{where}: does not match its manifest {manifest_path(where)} (sha256 differs: another "
                        f"engine or a damaged copy); rebuild it with {REBUILD}")


def load_manifest(engine_path: Path, info: ModelInfo | None = None) -> tuple[dict | None, ModelInfo]:
    """(manifest or None, model info). The manifest may be absent only when ``info`` is given."""
    path = manifest_path(engine_path)
    if not path.exists():
        if info is not None:
            return None, info
        raise ToolError(f"{engine_path}: no engine manifest {path} beside it (it gives the TensorRT version, GPU, "
                        f"input size, normalisation and labels); rebuild the engine with {REBUILD}")
    manifest = read_manifest(path)
    return manifest, info or ModelInfo.from_props(manifest["model"], str(path))


# the GPU -------------------------------------------------------------------------------------------------
def current_gpu(cudart) -> Gpu:
    """The current CUDA device, named as export/to_tensorrt.py named it in the manifest (both: gpu_identity)."""
    try:
        return gpu_identity(cudart)
    except CudaError as err:
        raise CudaError(f"no usable CUDA GPU ({err}); a TensorRT engine runs only on the GPU it was built for: "
                        f"{onnxruntime_hint()}") from None


class TensorRTBackend(Backend):
    kind = "tensorrt"

    def __init__(self, path: str | os.PathLike, info: ModelInfo | None = None):
        self.path = Path(path)
        where = str(self.path)
        self._cudart = self._stream = self._context = self._engine = self._runtime = None
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, bytes allocated)
        self._thread = threading.get_ident()  # the thread whose current CUDA device is the engine's
        if not self.path.is_file():
            raise ToolError(f"--model {self.path}: no such file")
        self.manifest, self.info = load_manifest(self.path, info)
        data = self.path.read_bytes()
        if self.manifest is not None:
            check_engine_bytes(data, self.manifest, where)

        trt = import_tensorrt(where, self.manifest.get("onnx") if self.manifest else None)
        self._cudart = cudart = import_cudart()
        self.gpu = current_gpu(cudart)
        self.tensorrt_version = trt.__version__
        if self.manifest is not None:
            check_engine_compatible(self.manifest, trt.__version__, self.gpu, where)

        try:
            self._load(trt, data, where)
        except BaseException:
            self.close()
            raise

    def _load(self, trt, data: bytes, where: str) -> None:
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ToolError(f"{where}: TensorRT cannot deserialize it: {self._logger.last_error or 'see its log'}; "
                            f"rebuild it with {REBUILD}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME]:
            raise ToolError(f"{where}: expected one input named {INPUT_NAME!r}, the engine has {inputs}")
        if OUTPUT_NAME in self.outputs:
            self.output_name = OUTPUT_NAME
        elif len(self.outputs) == 1:
            self.output_name = self.outputs[0]
        else:
            raise ToolError(f"{where}: expected an output named {OUTPUT_NAME!r}, the engine has {self.outputs}")
        self.input_name = INPUT_NAME
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        low, opt, high = engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.profile: ShapeProfile = tuple(tuple(int(d) for d in dims) for dims in (low, opt, high))

        self._context = engine.create_execution_context()
        if self._context is None:
            raise ToolError(f"{where}: TensorRT cannot create an execution context: "
                            f"{self._logger.last_error or 'out of GPU memory?'}")
        self._stream = cuda_check(self._cudart, self._cudart.cudaStreamCreate(), "cudaStreamCreate")

    # inference ----------------------------------------------------------------------------------------
    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for tensor ``name``, (re)allocated only when it must grow."""
        ptr, allocated = self._buffers.get(name, (0, 0))
        if nbytes > allocated:
            if ptr:
                del self._buffers[name]
                cuda_check(self._cudart, self._cudart.cudaFree(ptr), "cudaFree")
            ptr = cuda_check(self._cudart, self._cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)")
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise ToolError(f"{self.path}: the TensorRT backend is closed")
        cudart, context, where = self._cudart, self._context, str(self.path)
        if threading.get_ident() != self._thread:  # the current device is per thread (deploy infers in a worker)
            cuda_check(cudart, cudart.cudaSetDevice(self.gpu.device), f"cudaSetDevice({self.gpu.device})")
            self._thread = threading.get_ident()
        batch = np.ascontiguousarray(batch, dtype=self.dtypes[self.input_name])
        check_input_shape(batch.shape, self.profile, where)
        if not context.set_input_shape(self.input_name, batch.shape):
            raise ToolError(f"{where}: TensorRT refused input shape {format_shape(batch.shape)}: "
                            f"{self._logger.last_error}")
        outputs = {}
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ToolError(f"{where}: TensorRT cannot infer the shape of {name!r} for input "
                                f"{format_shape(batch.shape)} (got {shape})")
            outputs[name] = np.empty(shape, dtype=self.dtypes[name])

        input_ptr = self._device_buffer(self.input_name, batch.nbytes)
        addresses = {name: self._device_buffer(name, host.nbytes) for name, host in outputs.items()}
        for name, pointer in {**addresses, self.input_name: input_ptr}.items():
            if not context.set_tensor_address(name, pointer):  # a bool in TensorRT 10 and 11
                raise ToolError(f"{where}: TensorRT refused the device buffer of {name!r}: "
                                f"{self._logger.last_error or 'see its log'}")
        cuda_check(cudart, cudart.cudaMemcpyAsync(input_ptr, batch.ctypes.data, batch.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                   "cudaMemcpyAsync (host to device)")
        if not context.execute_async_v3(int(self._stream)):
            raise ToolError(f"{where}: TensorRT inference failed: {self._logger.last_error or 'see its log'}")
        logits = outputs[self.output_name]
        cuda_check(cudart, cudart.cudaMemcpyAsync(logits.ctypes.data, self._buffers[self.output_name][0],
                                                  logits.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                  self._stream), "cudaMemcpyAsync (device to host)")
        cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return logits.astype(np.float32, copy=False)

    def describe(self) -> dict:
        profile = {name: format_shape(shape) for name, shape in zip(("min", "opt", "max"), self.profile, strict=True)}
        return {**super().describe(), "provider": f"TensorRT {self.tensorrt_version} on {self.gpu.name}",
                "tensorrt": self.tensorrt_version, "gpu": self.gpu.name,
                "compute_capability": self.gpu.compute_capability, "profile": profile}

    # lifetime -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the device buffers and the stream, then the TensorRT objects. Idempotent."""
        cudart, errors = self._cudart, []
        for name, (ptr, _) in list(self._buffers.items()):
            del self._buffers[name]
            try:
                cuda_check(cudart, cudart.cudaFree(ptr), "cudaFree")
            except CudaError as err:
                errors.append(err)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                cuda_check(cudart, cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")
            except CudaError as err:
                errors.append(err)
        # context before engine before runtime, the order TensorRT requires
        self._context = None
        self._engine = None
        self._runtime = None
        if errors:
            raise errors[0]

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
