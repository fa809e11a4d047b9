"""The TensorRT and cuda-python glue that the engine builder and the engine run time share.

export/to_tensorrt.py builds an engine and writes into its cache key and manifest where the engine runs
(TensorRT version, GPU name, compute capability); deploy/tensorrt_backend.py reads that back and refuses
an engine built elsewhere. Both sides take those fields from ``engine_target`` and the GPU from
``gpu_identity``, so an engine is never refused because the two spelled the same GPU differently.
Also here: importing tensorrt (one-line error pointing to onnxruntime, the CPU path) and cuda-python
(either package layout), which TensorRT major versions roadseg speaks, checking CUDA calls, TensorRT's
logger, and the shape strings of both sides.

TensorRT versions: 10.x and 11.x. They differ in how an engine gets its precision (the builder picks the
path, export/to_tensorrt.py): 10.x networks are weakly typed, reduced precision comes from builder flags
(``BuilderFlag.FP16``, ``BuilderFlag.INT8`` with Q/DQ); 11.x removed weak typing, every network is strongly
typed and the precision comes from the ONNX graph (an FP16/mixed ONNX, or Q/DQ for INT8). JetPack 6 (Jetson
Orin) ships TensorRT 10.x and stays on the 10.x path. Any other major version is refused in one line.

    trt = import_tensorrt()                       # ToolError without tensorrt 10.x or 11.x
    tensorrt_major(trt.__version__)               # 10 or 11
    cudart = import_cudart()                      # ToolError without cuda-python
    gpu = gpu_identity(cudart)                    # Gpu("NVIDIA Orin", "8.7", 0): the current device
    engine_target(trt.__version__, gpu)           # {"tensorrt_version", "gpu_name", "compute_capability"}

A library module, not run on its own. tensorrt and cuda-python are imported only inside functions, so it
imports on any machine; it never imports torch, nor the train, compress, export or deploy stages.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from roadseg.models.core.cli import ToolError

INPUT_NAME = "image"  # the builder's shape profile and the run time's binding both name the input this
OUTPUT_NAME = "logits"
MIN_TENSORRT_MAJOR = 10
# 10: weakly typed networks, precision builder flags (JetPack 6 / Jetson Orin stays here); 11: strongly typed only.
SUPPORTED_TENSORRT_MAJORS = (10, 11)

Shape = tuple[int, ...]


def onnxruntime_hint(onnx: str | None = None) -> str:
    """Where to go without TensorRT or a GPU: the ONNX model (``onnx``, when known) on onnxruntime."""
    source = f" it was built from ({onnx})" if onnx else ""
    return f"use the .onnx{source} with onnxruntime (deploy/run.py) instead"


def _one_line(text) -> str:
    return " ".join(str(text).split())


# tensorrt ---------------------------------------------------------------------------------------------
def import_tensorrt(where: str | None = None, onnx: str | None = None):
    """The tensorrt module (10.x or 11.x), or a one-line ToolError (prefixed with ``where``) saying what is missing."""
    prefix = f"{where}: " if where else ""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: the wheel is there, its CUDA libraries are not
        raise ToolError(f"{prefix}the tensorrt package is not available ({_one_line(err)}); {onnxruntime_hint(onnx)}, "
                        "or install it on a machine with an NVIDIA GPU: pip install -e '.[tensorrt]'") from None
    tensorrt_major(trt.__version__, where, onnx)
    return trt


def tensorrt_major(version: str, where: str | None = None, onnx: str | None = None) -> int:
    """The major version of TensorRT ``version`` when roadseg speaks it (10 or 11), else a one-line ToolError.

    10.x: weakly typed networks, precision from builder flags. 11.x: strongly typed networks only, precision
    from the ONNX graph. Both sides (builder and run time) call this, so neither meets an API it was not
    written for.
    """
    prefix = f"{where}: " if where else ""
    head = str(version).split(".")[0]
    major = int(head) if head.isascii() and head.isdigit() else None
    if major is not None and major < MIN_TENSORRT_MAJOR:
        raise ToolError(f"{prefix}TensorRT {version} is too old: roadseg needs TensorRT >= "
                        f"{MIN_TENSORRT_MAJOR}; {onnxruntime_hint(onnx)}")
    if major not in SUPPORTED_TENSORRT_MAJORS:
        known = " or ".join(f"{m}.x" for m in SUPPORTED_TENSORRT_MAJORS)
        raise ToolError(f"{prefix}TensorRT {version} is not a version roadseg supports (it speaks TensorRT {known}); "
                        f"install one of those, or {onnxruntime_hint(onnx)}")
    return major


def make_logger(trt, verbose: bool = False, write: Callable[[str], None] | None = None):
    """A TensorRT logger: warnings and errors (also info when ``verbose``) go to ``write`` (default: stderr);
    ``last_error`` keeps TensorRT's last error, on one line, for our own one-line messages."""
    if write is None:
        def write(line: str) -> None:
            print(line, file=sys.stderr)

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.threshold = int(trt.ILogger.Severity.INFO if verbose else trt.ILogger.Severity.WARNING)
            self.last_error = ""

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.last_error = _one_line(msg)
            if int(severity) <= self.threshold:
                # Warnings and errors on one line each, between progress bars and frame logs; info (--verbose)
                # as TensorRT wrote it, since it holds multi-line tables.
                text = _one_line(msg) if int(severity) <= int(trt.ILogger.Severity.WARNING) else str(msg).rstrip()
                write(f"[TensorRT] {getattr(severity, 'name', severity)}: {text}")

    return Logger()


# cuda-python ------------------------------------------------------------------------------------------
class CudaError(ToolError):
    """A CUDA runtime call failed; the message names the call and CUDA's error."""


def import_cudart():
    """NVIDIA's cuda-python runtime bindings (current layout, else the older one), or a one-line ToolError."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise ToolError("NVIDIA's cuda-python is not installed (TensorRT needs it for the GPU): "
                            "pip install cuda-python (the version matching the driver's CUDA)") from None
    return cudart


def cuda_check(cudart, result, what: str):
    """Unpack a cuda-python call's ``(err, *values)``: the value(s), or a CudaError naming ``what`` and the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        try:
            name = cudart.cudaGetErrorName(err)[1].decode()
            text = cudart.cudaGetErrorString(err)[1].decode()
        except Exception:  # describing the error must not hide it
            name, text = str(err), ""
        raise CudaError(f"CUDA {what} failed: {name}" + (f" ({text})" if text else ""))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# the GPU and where an engine runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "8.7", as in the manifest
    device: int = 0  # CUDA device index


def gpu_identity(cudart, device: int | None = None) -> Gpu:
    """The GPU ``device`` (default: the current CUDA device), named as the engine manifest names it.

    The builder's cache key and the run time's compatibility check both take the GPU from here.
    A CudaError (one line) when CUDA cannot describe the device.
    """
    try:
        if device is None:
            device = cuda_check(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
        props = cuda_check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    except CudaError:
        raise
    except Exception as exc:  # the bindings raise, e.g., when no driver library can be loaded
        raise CudaError(f"CUDA cannot be used: {_one_line(exc)}") from None
    name = props.name
    if isinstance(name, bytes):  # a C char array: the name, a NUL, then whatever the buffer held
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return Gpu(str(name), f"{props.major}.{props.minor}", int(device))


ENGINE_TARGET_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")


def engine_target(tensorrt_version: str, gpu: Gpu) -> dict[str, str]:
    """The manifest components that say where an engine runs (an engine runs only there).

    The builder puts them into the cache key; the run time compares them with its own.
    """
    return {"tensorrt_version": str(tensorrt_version), "gpu_name": str(gpu.name),
            "compute_capability": str(gpu.compute_capability)}


# shapes -------------------------------------------------------------------------------------------------
def format_shape(shape: Iterable) -> str:
    """``(1, 3, 64, 128)`` (ints, numpy ints or TensorRT dims) -> ``"1x3x64x128"``."""
    return "x".join(str(int(d)) for d in shape)


def parse_shape(text: str, flag: str, batch: int, channels: int) -> Shape:
    """``NxCxHxW``, or ``HxW`` with the given batch and channels; a ToolError naming ``flag`` otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) not in (2, 4) or not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        raise ToolError(f"{flag}: expected NxCxHxW or HxW with positive integers, got {text!r}")
    dims = tuple(int(part) for part in parts)
    return dims if len(dims) == 4 else (batch, channels, *dims)


def format_profile(low: Iterable, opt: Iterable, high: Iterable) -> str:
    """An optimization profile as both sides print it: ``"min 1x3x32x64, opt 1x3x64x128, max 2x3x64x128"``."""
    return f"min {format_shape(low)}, opt {format_shape(opt)}, max {format_shape(high)}"
