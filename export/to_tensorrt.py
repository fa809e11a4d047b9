"""ONNX -> TensorRT engine (FP16, or INT8 from a Q/DQ ONNX) with an engine cache keyed by content. No torch.

Owns the engine cache and its manifests. An engine is rebuilt exactly when something that changes it
changes: the ONNX bytes, the TensorRT version, the GPU and its compute capability, the precision, the
shape profile, the workspace limit, the DLA core or the builder optimization level (all hashed into
one sha256 key); otherwise the cached engine is reused. Beside each engine lies a manifest
(``<engine stem>.json``) with the key, every key component and the model's roadseg metadata, so deploy
knows input size, normalisation and labels without flags.

    python export/to_tensorrt.py --model runs/demo/model.onnx --precision fp16 --out runs/demo/trt
    python export/to_tensorrt.py --model runs/demo/model.int8.onnx --precision int8 --engine runs/demo/int8.engine
    roadseg fp16 --model runs/demo/model_fp32.onnx     # TensorRT 11.x: FP16 must be in the ONNX
    python export/to_tensorrt.py --model runs/demo/model_fp16.onnx --precision fp16 --out runs/demo/trt

``--out DIR`` (default: the ONNX file's folder) writes ``DIR/<onnx stem>.<key[:16]>.engine``, so engines
for different settings live side by side; ``--engine FILE`` writes exactly FILE, rebuilt when the key
changes. The timing cache (``--timing-cache``, default ``timing.<gpu>-sm<cc>-trt<version>.cache`` beside
the engine) is loaded if present and saved back after each build, so rebuilds take seconds.

TensorRT 10.x and 11.x take different paths to the same precisions (``build_plan``), picked by the
installed version (any other major version is refused in one line, models/core/tensorrt_glue.py):

- TensorRT 10.x (weakly typed network, ``create_network(0)``): precision comes from builder flags, as it
  always has here. ``--precision fp16``: ``BuilderFlag.FP16`` on the FP32 ONNX (or on an FP16 ONNX from
  export/to_fp16.py). ``--precision int8``: ``BuilderFlag.INT8`` and ``BuilderFlag.FP16`` on a Q/DQ ONNX
  (explicit quantization: Q/DQ layers run INT8, FP16 stays on for the layers between). JetPack 6 (Jetson
  Orin, DLA included) ships TensorRT 10.x and stays on this path.
- TensorRT 11.x removed weak typing: there is no ``BuilderFlag.FP16``/``INT8`` and no calibrator; every
  network is strongly typed and each tensor keeps the type the ONNX graph gives it. The builder creates the
  network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (accepted, and the only mode, in 11.x) and
  sets no precision flag. ``--precision fp16`` therefore needs an FP16 (or mixed FP16/FP32) ONNX, the
  ``model_fp16.onnx`` written by export/to_fp16.py (ModelOpt AutoCast, FP32 input and output, behind a
  parity gate); an FP32 ONNX is refused in one line saying so, since it would build an FP32 engine.
  ``--precision int8`` builds the Q/DQ ONNX as it is: Q/DQ layers run INT8 and the layers between keep
  the ONNX's float type (FP32 in our Q/DQ files).

NVIDIA's "Migrating from TensorRT 10.x to 11.x" guide (docs.nvidia.com/deeplearning/tensorrt, api/migration:
the overview, the Python API page and its list of removed Python APIs, and the Jetson/JetPack page) is what
these two paths follow.

INT8 is explicit quantization only, on both versions: the ONNX must carry TensorRT-ready Q/DQ nodes
(export/to_onnx.py from a QAT checkpoint, or export/quantize_onnx.py --target tensorrt); there is no calibrator.

Default shape profile of the input "image" (``--min/--opt/--max-shape`` override each; NxCxHxW or HxW,
H and W multiples of the model's size multiple): opt = batch 1 at the metadata's input size;
max = batch ``--max-batch`` at the opt size; min = batch 1 at half the opt size, rounded up to the
size multiple. Kernels are tuned for the size deploy uses, and smaller frames still run.

Without the tensorrt package or a CUDA GPU this fails with one line pointing to the onnxruntime path.
Importing tensorrt and cuda-python, TensorRT's logger, the GPU's name and the shape strings come from
models/core/tensorrt_glue.py, shared with deploy/tensorrt_backend.py, which checks the manifest's TensorRT
version and GPU against its own: both take them from the same functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

from tqdm import tqdm

from roadseg.export.onnx_info import read_onnx_info
from roadseg.models.core.cli import ToolError, run
from roadseg.models.core.engine_manifest import (  # the reading side: models/core
    MANIFEST_FIELDS,  # noqa: F401 (re-exported)
    MANIFEST_FORMAT,
    cache_key,
    manifest_path,
    manifest_problem,
    read_manifest,
)
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.tensorrt_glue import (
    INPUT_NAME,
    Gpu,
    engine_target,
    format_profile,
    format_shape,
    gpu_identity,
    import_cudart,
    import_tensorrt,
    make_logger,
    onnxruntime_hint,
    parse_shape,
    tensorrt_major,
)

PRECISIONS = ("fp16", "int8")
# ONNX metadata precisions whose Q/DQ nodes TensorRT can run (int8-ort-ptq is onnxruntime's CPU format).
TRT_INT8_SOURCES = ("int8-qat-qdq", "int8-trt-ptq")
SHAPE_FLAGS = ("--min-shape", "--opt-shape", "--max-shape")
DEFAULT_OPTIMIZATION_LEVEL = 3  # TensorRT's own default, stated so that it is part of the key
# Bump when build_engine changes what it builds from the same inputs, so older cached engines are not reused.
BUILD_RECIPE = 1

Shape = tuple[int, int, int, int]


# shape profile ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """The shapes the engine accepts for input "image" (NCHW), from min to max; kernels are tuned for opt."""

    min: Shape
    opt: Shape
    max: Shape

    def shapes(self) -> tuple[Shape, Shape, Shape]:
        return self.min, self.opt, self.max


def half_rounded_up(size: int, multiple: int) -> int:
    """Half of ``size``, rounded up to a multiple of ``multiple``."""
    half = (size + 1) // 2
    return max(multiple, -(-half // multiple) * multiple)


def make_profile(info: ModelInfo, min_shape: str | None = None, opt_shape: str | None = None,
                 max_shape: str | None = None, max_batch: int = 1) -> Profile:
    """The profile from the shape flags; each one not given follows the default rule (module docstring)."""
    channels = int(info.arch.get("in_channels", 3))
    multiple = info.size_multiple
    opt = parse_shape(opt_shape, "--opt-shape", 1, channels) if opt_shape else (1, channels, *info.input_size)
    half = tuple(half_rounded_up(size, multiple) for size in opt[2:])
    low = parse_shape(min_shape, "--min-shape", 1, channels) if min_shape else (1, channels, *half)
    high = parse_shape(max_shape, "--max-shape", max_batch, channels) if max_shape else (max_batch, channels, *opt[2:])
    profile = Profile(low, opt, high)
    check_profile(profile, channels, multiple)
    return profile


def check_profile(profile: Profile, channels: int, multiple: int) -> None:
    for flag, shape in zip(SHAPE_FLAGS, profile.shapes(), strict=True):
        if shape[1] != channels:
            raise ToolError(f"{flag}: the model takes {channels} input channels, got {format_shape(shape)}")
        if shape[2] % multiple or shape[3] % multiple:
            raise ToolError(f"{flag}: height and width must be multiples of {multiple} (the model's size multiple), "
                            f"got {format_shape(shape)}")
    for (low_flag, high_flag), (low, high) in zip(pairwise(SHAPE_FLAGS), pairwise(profile.shapes()), strict=True):
        if any(a > b for a, b in zip(low, high, strict=True)):
            raise ToolError(f"{low_flag} {format_shape(low)} exceeds {high_flag} {format_shape(high)}; "
                            "every dimension needs min <= opt <= max")


# cache key and manifest ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineSpec:
    """Everything that changes the engine TensorRT builds; the sha256 of it is the cache key."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile
    workspace_mib: int | None = None  # None = TensorRT's default (all device memory)
    dla_core: int | None = None
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    recipe: int = BUILD_RECIPE

    def components(self) -> dict:
        # through JSON so that tuples become lists: a manifest read back compares equal
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def key(self) -> str:
        return cache_key(self.components())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_manifest(spec: EngineSpec, info: ModelInfo, onnx_path: Path, engine_path: Path, engine: bytes,
                  build_seconds: float) -> dict:
    components = spec.components()
    return {"format": MANIFEST_FORMAT, "key": cache_key(components), "components": components,
            "model": info.to_props(), "onnx": str(onnx_path), "engine": Path(engine_path).name,
            "engine_bytes": len(engine), "engine_sha256": sha256_hex(engine), "build_seconds": round(build_seconds, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_manifest(path: str | Path, manifest: dict) -> Path:
    problem = manifest_problem(manifest)
    if problem:
        raise ValueError(f"refusing to write a damaged engine manifest: {problem}")
    return atomic_write_json(path, manifest)


def cached_manifest(engine_path: Path, spec: EngineSpec, log: Callable[[str], None] = print) -> dict | None:
    """The manifest of a cached engine built from ``spec``, or None (saying why) when it must be built."""
    path = manifest_path(engine_path)
    if not (engine_path.is_file() and path.is_file()):
        return None
    try:
        manifest = read_manifest(path)
    except ToolError as err:
        log(f"rebuilding: {err}")
        return None
    if manifest["key"] != spec.key():
        new = spec.components()
        changed = sorted(name for name in new.keys() | manifest["components"].keys()
                         if new.get(name) != manifest["components"].get(name))
        log(f"rebuilding {engine_path}: changed since it was built: {', '.join(changed)}")
        return None
    if engine_path.stat().st_size != manifest["engine_bytes"]:
        log(f"rebuilding {engine_path}: its size differs from its manifest's")
        return None
    return manifest


def build_or_reuse(engine_path: Path, spec: EngineSpec, info: ModelInfo, onnx_path: Path,
                   build: Callable[[], bytes], log: Callable[[str], None] = print) -> tuple[dict, bool]:
    """(manifest, reused): the cached engine when its key is ``spec``'s, else ``build()`` written to ``engine_path``.

    The engine is written before its manifest, both atomically, so a manifest always describes a complete engine.
    """
    engine_path = Path(engine_path)
    manifest = cached_manifest(engine_path, spec, log)
    if manifest is not None:
        return manifest, True
    start = time.perf_counter()
    engine = build()
    manifest = make_manifest(spec, info, onnx_path, engine_path, engine, time.perf_counter() - start)
    atomic_write_bytes(engine_path, engine)
    write_manifest(manifest_path(engine_path), manifest)
    return manifest, False


def check_precision(precision: str, info: ModelInfo, where: Path) -> None:
    if precision == "int8" and info.precision not in TRT_INT8_SOURCES:
        state = ("was quantized for onnxruntime (CPU), not TensorRT" if info.precision == "int8-ort-ptq"
                 else f"is {info.precision}, without Q/DQ nodes")
        raise ToolError(f"{where}: --precision int8 needs an explicitly quantized (Q/DQ) ONNX and this one {state}; "
                        "quantize it first with export/quantize_onnx.py --target tensorrt, "
                        "or export a QAT checkpoint with export/to_onnx.py")
    if precision == "fp16" and info.precision.startswith("int8"):
        raise ToolError(f"{where}: is an INT8 ONNX ({info.precision}); build it with --precision int8, "
                        "or build the FP32 ONNX with --precision fp16")


def check_precision_for_tensorrt(precision: str, info: ModelInfo, where: Path, tensorrt_version: str) -> None:
    """What the installed TensorRT version can build from this ONNX (after ``check_precision``).

    TensorRT 11.x has no FP16 builder flag (strong typing only): an FP16 engine needs an FP16 ONNX.
    """
    if tensorrt_major(tensorrt_version) >= 11 and precision == "fp16" and info.precision != "fp16":
        raise ToolError(f"{where}: is {info.precision}, and TensorRT {tensorrt_version} builds strongly typed networks "
                        "only (no FP16 builder flag since 11.0), so it would give an FP32 engine; convert it first: "
                        f"roadseg fp16 --model {where} (writes model_fp16.onnx behind a parity gate), "
                        "then build that file with --precision fp16")


def engine_info(info: ModelInfo, precision: str, onnx_sha256: str) -> ModelInfo:
    """The metadata the engine carries: an INT8 engine keeps its ONNX's int8-* precision (it says how)."""
    return info.with_changes(precision="fp16" if precision == "fp16" else info.precision, source=onnx_sha256)


# TensorRT and the GPU ------------------------------------------------------------------------------
def gpu_from_cuda_python(device: int = 0) -> tuple[Gpu | None, str]:
    """(gpu, why not) from NVIDIA's cuda-python runtime bindings: the identity the run time checks."""
    try:
        return gpu_identity(import_cudart(), device), ""
    except ToolError as err:
        return None, str(err)


def gpu_from_nvidia_smi(device: int = 0) -> Gpu | None:
    # Last resort, e.g. cuda-python made for a newer CUDA than the driver. Its numbering is PCI order. NVML
    # names a GPU as CUDA does; where it did not, the run time would refuse the engine, naming both.
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run([executable, "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"],
                                capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    name, _, capability = result.stdout.strip().rpartition(",")
    return Gpu(name.strip(), capability.strip(), device) if name.strip() and capability.strip() else None


def cuda_gpu(device: int = 0) -> Gpu:
    """The GPU TensorRT builds for (CUDA device 0 by default); a one-line ToolError without one."""
    gpu, reason = gpu_from_cuda_python(device)
    gpu = gpu or gpu_from_nvidia_smi(device)
    if gpu is None:
        raise ToolError(f"no CUDA GPU found ({reason}); a TensorRT engine is built on the GPU that runs it: "
                        f"{onnxruntime_hint()}")
    return gpu


def write_above_progress_bars(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def make_progress_monitor(trt):
    class BuildProgress(trt.IProgressMonitor):
        """One progress bar per build phase, indented under its parent phase.

        TensorRT calls this from its own threads, and an exception cannot cross back into it: hence the lock
        and the lookups that tolerate phases they do not know.
        """

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._bars: dict[str, tqdm] = {}
            self._depths: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                depth = self._depths.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depths[phase_name] = depth
                self._bars[phase_name] = tqdm(total=num_steps, desc="  " * depth + phase_name, leave=depth == 0,
                                              file=sys.stderr, dynamic_ncols=True)

        def step_complete(self, phase_name, step):
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return BuildProgress()


def load_timing_cache(config, path: Path, log: Callable[[str], None] = print):
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
    except RuntimeError:  # how the bindings may report a damaged blob
        cache = None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if data:
            log(f"loaded timing cache {path}")
        return
    log(f"ignoring timing cache {path}: TensorRT refused it (another GPU or TensorRT version, or damaged)")
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def check_network_input(network, where: Path, profile: Profile) -> None:
    inputs = [network.get_input(index) for index in range(network.num_inputs)]
    image = next((tensor for tensor in inputs if tensor.name == INPUT_NAME), None)
    if image is None:
        names = ", ".join(tensor.name for tensor in inputs)
        raise ToolError(f"{where}: has no input named {INPUT_NAME!r} (inputs: {names}); "
                        "export it with export/to_onnx.py")
    dims = tuple(image.shape)
    if len(dims) != 4:
        raise ToolError(f"{where}: input {INPUT_NAME!r} has shape {dims}, expected 4 dimensions (NCHW)")
    for fixed, low, high in zip(dims, profile.min, profile.max, strict=True):
        if fixed >= 0 and not low == high == fixed:
            raise ToolError(f"{where}: input {INPUT_NAME!r} has the fixed shape {dims}; give --min-shape, "
                            "--opt-shape and --max-shape equal to it, or export with dynamic axes")


@dataclass(frozen=True)
class BuildPlan:
    """How the installed TensorRT turns ``--precision`` into an engine (module docstring).

    ``network_flags`` goes to ``Builder.create_network``; ``builder_flags`` names the ``BuilderFlag`` members
    set for the precision (none on 11.x, where they no longer exist).
    """

    tensorrt_major: int
    strongly_typed: bool
    network_flags: int
    builder_flags: tuple[str, ...]

    def describe(self) -> str:
        if self.strongly_typed:
            return "strongly typed network (precision from the ONNX graph)"
        return f"weakly typed network, builder flags {' + '.join(self.builder_flags)}"


def build_plan(trt, precision: str) -> BuildPlan:
    """TensorRT 10.x: weakly typed network (flags 0) with BuilderFlag.FP16 (+ INT8 for a Q/DQ ONNX).
    TensorRT 11.x: NetworkDefinitionCreationFlag.STRONGLY_TYPED and no precision flag."""
    major = tensorrt_major(trt.__version__)
    if major == 10:
        return BuildPlan(major, False, 0, ("FP16", "INT8") if precision == "int8" else ("FP16",))
    creation_flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    strongly_typed = getattr(creation_flags, "STRONGLY_TYPED", None)
    # 11.x accepts the flag; should a later 11.x drop the member, strong typing is its only mode anyway
    return BuildPlan(major, True, 1 << int(strongly_typed) if strongly_typed is not None else 0, ())


def build_engine(trt, onnx_data: bytes, where: Path, spec: EngineSpec, timing_cache: Path | None,
                 verbose: bool = False) -> bytes:
    """The serialized engine for ``spec``; a ToolError with TensorRT's first error when it cannot be built.

    The network's typing and the precision flags follow ``build_plan`` (TensorRT 10.x or 11.x); everything
    else (profile, workspace, DLA, optimization level, timing cache, progress) is the same on both.
    """
    plan = build_plan(trt, spec.precision)
    logger = make_logger(trt, verbose, write_above_progress_bars)
    builder = trt.Builder(logger)
    network = builder.create_network(plan.network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_data):
        first = " ".join(parser.get_error(0).desc().split()) if parser.num_errors else logger.last_error
        more = f" (and {parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
        raise ToolError(f"{where}: TensorRT's ONNX parser failed: {first}{more}")
    check_network_input(network, where, spec.profile)

    config = builder.create_builder_config()
    for name in plan.builder_flags:  # 10.x only; on 11.x the precision is in the graph
        config.set_flag(getattr(trt.BuilderFlag, name))
    if spec.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    if spec.dla_core is not None:
        if spec.dla_core >= builder.num_DLA_cores:
            raise ToolError(f"--dla-core {spec.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU
    config.builder_optimization_level = spec.optimization_level
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *spec.profile.shapes())
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        load_timing_cache(config, timing_cache)
    monitor = make_progress_monitor(trt)  # referenced until the build ends, as TensorRT requires
    config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ToolError(f"TensorRT could not build the engine: {logger.last_error or 'see its log above'}")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


# command line ---------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Build a TensorRT engine from an ONNX model, or reuse the cached one.",
                                     add_help=add_help, prog="export/to_tensorrt.py")
    parser.add_argument("--model", type=Path, required=True, help="the .onnx (with roadseg metadata)")
    parser.add_argument("--precision", choices=PRECISIONS, required=True,
                        help="fp16 (TensorRT 11: from the model_fp16.onnx of export/to_fp16.py), or int8 from a "
                             "Q/DQ ONNX (explicit quantization)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="engine cache folder (default: the ONNX's folder); "
                                                "writes <onnx stem>.<key>.engine and .json")
    where.add_argument("--engine", type=Path, help="write the engine exactly here (manifest: same name, .json)")
    shape_defaults = {"--min-shape": "batch 1 at half the opt size, rounded up to the model's size multiple",
                      "--opt-shape": "batch 1 at the input size in the ONNX metadata",
                      "--max-shape": "batch --max-batch at the opt size"}
    for flag, default in shape_defaults.items():
        parser.add_argument(flag, metavar="NxCxHxW|HxW", help=f"profile shape of input 'image' (default: {default})")
    parser.add_argument("--max-batch", type=positive_int, default=1, help="batch of the default --max-shape")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file (default: per GPU, beside the engine)")
    parser.add_argument("--workspace-mib", type=positive_int, help="builder workspace limit (default: TensorRT's)")
    parser.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson), GPU fallback on")
    parser.add_argument("--opt-level", type=int, choices=range(6), default=DEFAULT_OPTIMIZATION_LEVEL,
                        help="builder optimization level: higher builds longer, may run faster")
    parser.add_argument("--verbose", action="store_true", help="also print TensorRT's info messages")
    return parser


def default_timing_cache(folder: Path, spec: EngineSpec) -> Path:
    device = re.sub(r"[^A-Za-z0-9.]+", "-", f"{spec.gpu_name}-sm{spec.compute_capability}-trt{spec.tensorrt_version}")
    return folder / f"timing.{device.strip('-')}.cache"


def main(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        raise ToolError(f"{args.model}: no such ONNX file")
    if args.dla_core is not None and args.dla_core < 0:
        raise ToolError(f"--dla-core: must be >= 0, got {args.dla_core}")
    info = read_onnx_info(args.model)
    check_precision(args.precision, info, args.model)
    if args.precision == "int8":  # fail here, in one line, rather than deep in a GPU build
        from roadseg.export.qdq_check import require_qdq

        require_qdq(args.model, allow_float_small_convs=info.precision == "int8-trt-ptq")
    profile = make_profile(info, args.min_shape, args.opt_shape, args.max_shape, args.max_batch)
    trt = import_tensorrt()
    check_precision_for_tensorrt(args.precision, info, args.model, trt.__version__)
    gpu = cuda_gpu()

    onnx_data = args.model.read_bytes()
    spec = EngineSpec(onnx_sha256=sha256_hex(onnx_data), **engine_target(trt.__version__, gpu),
                      precision=args.precision, profile=profile, workspace_mib=args.workspace_mib,
                      dla_core=args.dla_core, optimization_level=args.opt_level)
    engine_path = args.engine or (args.out or args.model.parent) / f"{args.model.stem}.{spec.key()[:16]}.engine"
    timing_cache = args.timing_cache or default_timing_cache(engine_path.parent, spec)
    typing = build_plan(trt, args.precision).describe()
    print(f"{args.model} -> {args.precision} engine for {gpu.name} (sm {gpu.compute_capability}), TensorRT "
          f"{trt.__version__} ({typing}), profile {format_profile(*profile.shapes())}")
    manifest, reused = build_or_reuse(
        engine_path, spec, engine_info(info, args.precision, spec.onnx_sha256), args.model,
        lambda: build_engine(trt, onnx_data, args.model, spec, timing_cache, args.verbose))
    size_mib = manifest["engine_bytes"] / 2**20
    if reused:
        print(f"reusing cached engine {engine_path} ({size_mib:.1f} MiB, key {manifest['key'][:16]}, "
              f"built {manifest['created']})")
    else:
        print(f"built {engine_path} in {manifest['build_seconds']:.1f} s ({size_mib:.1f} MiB); "
              f"manifest {manifest_path(engine_path)}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
