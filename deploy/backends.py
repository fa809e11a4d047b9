"""Inference backends behind one small interface: load a model, infer a preprocessed batch, describe itself.

- ``OnnxRuntimeBackend`` (.onnx): execution providers picked in order of preference among those
  available: TensorRT, CUDA, CPU (or the ones asked for); CPU threads configurable. With onnxruntime's
  TensorRT execution provider it is the GPU path without an extra step (no ``roadseg engine``): the EP
  builds a TensorRT engine on the first run and keeps it, and its timing cache, on disk, so later runs
  load it (``tensorrt_provider_options``).
- ``TensorRTBackend`` (.engine, ``roadseg.deploy.tensorrt_backend``). Deploy never imports torch:
  a .pt checkpoint is exported first (``roadseg export``).

Input size, normalisation and labels come from the model's metadata (models.model_metadata),
never from re-typed flags; a model without it needs ``info`` given explicitly.

    backend = open_backend("runs/camvid/onnx/model_fp32.onnx", threads=2)
    logits = backend.infer(batch)            # (N, 3, H, W) float32 -> (N, C, H, W)
    backend.describe()                        # {"backend": "onnxruntime", "provider": ..., ...}
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from roadseg.deploy.latency import checked_onnx_session
from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import file_sha256
from roadseg.models.core.model_metadata import ModelInfo

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INPUT_NAME = "image"
TENSORRT_EP = "TensorrtExecutionProvider"
# ONNX precisions whose Q/DQ nodes TensorRT runs as INT8 (symmetric int8). int8-ort-ptq is onnxruntime's CPU format
# (uint8 activations with zero points), which TensorRT does not run as INT8.
TENSORRT_QDQ_PRECISIONS = ("int8-qat-qdq", "int8-trt-ptq")


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


def ort_tensorrt_cache_root(environ: dict | None = None) -> Path:
    """Where onnxruntime's TensorRT EP keeps roadseg's engines and timing cache: ``$XDG_CACHE_HOME/roadseg/ort-trt``
    (``~/.cache/roadseg/ort-trt`` when XDG_CACHE_HOME is unset or not absolute, as the XDG spec says)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path(environ.get("HOME") or Path.home()) / ".cache"
    return root / "roadseg" / "ort-trt"


def tensorrt_provider_options(model_sha256: str, precision: str, cache_root: str | os.PathLike | None = None,
                              ort_version: str = "", trt_version: str = "") -> dict[str, str]:
    """The options for onnxruntime's TensorrtExecutionProvider (a pure function; the names are the EP's own).

    Engine cache and timing cache on disk (``trt_engine_cache_enable``/``_path``, ``trt_timing_cache_enable``/
    ``_path``), so the first session builds the engine and later ones load it. The EP names a cached engine after
    the graph's structure, not its weights, so each model file (by sha256) and precision mode gets its own engine
    folder (``<root>/engines/[onnxruntime-<v>[_tensorrt-<v>]/]<sha16>-<mode>``): a retrained model under the same
    name is never served a stale engine, nor is a new TensorRT one built by another (the EP fails the run with
    "could not deserialize engine from cache" instead of rebuilding). The timing cache holds kernel timings only
    and is shared by all models of one TensorRT (``<root>/timing[/tensorrt-<v>]``). Precision: ``trt_fp16_enable``
    for FP32 and FP16 models; ``trt_int8_enable`` as well for Q/DQ files TensorRT runs as INT8 (int8-qat-qdq,
    int8-trt-ptq; explicit quantization, no calibration table).

    These flags are TensorRT 10.x's weak typing. With an onnxruntime built on TensorRT 11.x (strongly typed only)
    the precision comes from the graph: give it ``model_fp16.onnx`` (export/to_fp16.py) for FP16.
    """
    root = Path(cache_root) if cache_root is not None else ort_tensorrt_cache_root()
    int8 = precision in TENSORRT_QDQ_PRECISIONS
    engines = root / "engines"
    versions = [f"{runtime}-{version}" for runtime, version in (("onnxruntime", ort_version), ("tensorrt", trt_version))
                if version]
    if versions:
        engines = engines / "_".join(versions)
    timing = root / "timing" / f"tensorrt-{trt_version}" if trt_version else root / "timing"
    options = {"trt_engine_cache_enable": "True",
               "trt_engine_cache_path": str(engines / f"{model_sha256[:16]}-{'int8' if int8 else 'fp16'}"),
               "trt_timing_cache_enable": "True",
               "trt_timing_cache_path": str(timing),
               "trt_fp16_enable": "True"}
    if int8:
        options["trt_int8_enable"] = "True"
    return options


def tensorrt_library_version(distributions=None) -> str:
    """The version of the TensorRT that onnxruntime's EP will load, as far as the installed Python packages
    tell: the pip wheel that ships its libraries (``tensorrt-cu12-libs``, ``tensorrt-libs``...), else the
    ``tensorrt`` package (JetPack's apt bindings included), else '' (libraries found some other way)."""
    from importlib import metadata

    found = {}
    for dist in metadata.distributions() if distributions is None else distributions:
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("tensorrt"):
            found[name] = dist.version
    libs = sorted(name for name in found if name.endswith("-libs"))
    return found[libs[0]] if libs else found.get("tensorrt", "")


def provider_list(providers: list[str], options: dict[str, dict[str, str]]) -> list:
    """``providers`` as onnxruntime takes them: a name, or (name, options) where options are given for it."""
    return [(name, options[name]) if name in options else name for name in providers]


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
                 info: ModelInfo | None = None, spin: bool = True):
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self.path = Path(path)
        self.threads = threads
        providers = choose_providers(ort.get_available_providers(), providers)
        self.provider_options: dict[str, dict[str, str]] = {}
        if TENSORRT_EP in providers:
            # the EP's precision flags depend on the file's precision: read its metadata first (a CPU session)
            precision = (info or self._probe_info()).precision
            options = tensorrt_provider_options(file_sha256(self.path), precision, ort_version=ort.__version__,
                                                trt_version=tensorrt_library_version())
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                Path(options[key]).mkdir(parents=True, exist_ok=True)
            self.provider_options[TENSORRT_EP] = options
        self.session = checked_onnx_session(self.path, threads=threads, spin=spin,
                                            providers=provider_list(providers, self.provider_options))
        props = self.session.get_modelmeta().custom_metadata_map
        self.info = info or ModelInfo.from_props(props, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self._check_shapes()
        self._runtime_errors = (state.InvalidArgument, state.Fail, state.RuntimeException, state.NotImplemented)

    def _probe_info(self) -> ModelInfo:
        probe = checked_onnx_session(self.path, providers=["CPUExecutionProvider"])
        return ModelInfo.from_props(probe.get_modelmeta().custom_metadata_map, str(self.path))

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
        described = {**super().describe(), "provider": self.session.get_providers()[0],
                     "threads": self.threads or "onnxruntime default (one per physical core)"}
        if TENSORRT_EP in self.session.get_providers() and TENSORRT_EP in self.provider_options:
            options = self.provider_options[TENSORRT_EP]
            described["tensorrt_ep"] = {"engine_cache": options["trt_engine_cache_path"],
                                        "timing_cache": options["trt_timing_cache_path"],
                                        "fp16": options["trt_fp16_enable"] == "True",
                                        "int8": options.get("trt_int8_enable") == "True"}
        return described


# openvino-bf16: OpenVINO inferring in bfloat16 on CPUs with bf16 units (AMX, AVX512-BF16). A precision change
# like INT8, so never picked by auto: asked for, and its road IoU measured (roadseg bench).
BACKENDS = ("auto", "onnxruntime", "openvino", "openvino-bf16", "tensorrt")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_backend(path: Path, requested: str = "auto") -> tuple[str, str]:
    """(backend, why) for a model file. The ``auto`` rule: an .engine runs in TensorRT and an .xml in
    OpenVINO; an .onnx runs in onnxruntime when it has a GPU execution provider (TensorRT/CUDA);
    on a CPU with OpenVINO installed the answer is ``measure``: which CPU runtime is faster depends
    on the model and the CPU (OpenVINO ran our U-Nets 2.2x faster than onnxruntime on one 2-core x86
    CPU, while onnxruntime ran a small MobileUNet faster on another), so ``open_backend`` times both
    on this machine and keeps the faster; without OpenVINO, onnxruntime."""
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
    return "measure", "a CPU-only machine with both onnxruntime and OpenVINO"


@contextlib.contextmanager
def one_core_busy():
    """A thread that keeps one core busy with frame-sized array work while the block runs, as a
    pipeline's decode, render and encode threads do beside inference (numpy releases the GIL)."""
    stop = threading.Event()

    def work() -> None:
        frame = np.zeros((540, 960, 3), np.uint8)
        out = np.empty_like(frame)
        while not stop.is_set():
            np.add(frame, 1, out=out)

    thread = threading.Thread(target=work, name="busy-core", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def faster_of(candidates: list[Backend], warmup: int = 5, runs: int = 20, rounds: int = 2,
              beside_busy_core: bool = False) -> tuple[Backend, str]:
    """The candidate with the lowest median latency on a random batch at its input size, timed in
    interleaved rounds (so machine load hits all alike), and a line saying what was measured.

    ``beside_busy_core``: timed while another thread keeps one core busy, because that is how the run
    time's pipeline uses the model, and the ranking can flip: on 2 cores, alone, OpenVINO ran the fast
    zoo model in 1.33 ms against onnxruntime's 1.50, beside one busy core in 2.07 against 1.50, and
    end to end on the dashcam clip onnxruntime was the faster (deploy/results/pipeline_stages.md)."""
    import time

    batch = np.random.default_rng(0).standard_normal((1, 3, *candidates[0].info.input_size), dtype=np.float32)
    samples = {id(c): [] for c in candidates}
    with one_core_busy() if beside_busy_core else contextlib.nullcontext():
        for _ in range(rounds):
            for candidate in candidates:
                for _ in range(warmup):
                    candidate.infer(batch)
                for _ in range(runs):
                    start = time.perf_counter()
                    candidate.infer(batch)
                    samples[id(candidate)].append(time.perf_counter() - start)
    p50 = {id(c): 1000 * float(np.median(samples[id(c)])) for c in candidates}
    best = min(candidates, key=lambda c: p50[id(c)])
    figures = " vs ".join(f"{c.kind} {p50[id(c)]:.2f} ms" for c in candidates)
    where = ", beside one busy core as in the pipeline" if beside_busy_core else ""
    return best, f"measured here at startup (p50 of {rounds * runs} runs each{where}): {figures}"


def open_backend(path: str | os.PathLike, threads: int = 0, providers: list[str] | None = None,
                 backend: str = "auto", spin: bool = True, own_size_only: bool = True) -> Backend:
    """The model in ``backend`` (auto: see ``choose_backend``). ``spin=False`` when other threads need the
    cores between inferences (the run time's pipeline): onnxruntime's threads then sleep instead of
    busy-waiting, and ``auto`` times the runtimes beside a busy core (``faster_of``). ``own_size_only``:
    the caller feeds only (1, 3, H, W) batches at the model's own input size, so OpenVINO compiles the
    model static; False keeps the file's dynamic dimensions (a benchmark at other sizes)."""
    ov_batch = 1 if own_size_only else None
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
    if chosen == "measure":
        from roadseg.deploy.openvino_backend import OpenVinoBackend

        opened, why = faster_of([OnnxRuntimeBackend(path, threads, providers, spin=spin),
                                  OpenVinoBackend(path, threads, batch=ov_batch)], beside_busy_core=not spin)
    elif chosen in ("openvino", "openvino-bf16"):
        from roadseg.deploy.openvino_backend import OpenVinoBackend  # here: it imports this module

        opened = OpenVinoBackend(path, threads, batch=ov_batch,
                                 inference_precision="bf16" if chosen == "openvino-bf16" else "f32")
    elif chosen == "tensorrt":
        if path.suffix != ".engine":
            raise ToolError(f"--backend tensorrt: give a .engine (roadseg engine --model {path}), or use "
                            "--backend onnxruntime, whose TensorRT execution provider runs the .onnx")
        from roadseg.deploy.tensorrt_backend import TensorRTBackend

        opened = TensorRTBackend(path)
    else:
        if path.suffix != ".onnx":
            raise ToolError(f"--backend onnxruntime: {path} is not an .onnx file")
        opened = OnnxRuntimeBackend(path, threads, providers, spin=spin)
    opened.chosen_because = why
    return opened

