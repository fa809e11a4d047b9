"""deploy/tensorrt_backend.py: the checks before an engine is deserialized (manifest, engine bytes, TensorRT version
and GPU, input profile) and the errors without TensorRT run on any machine, as does the check that the builder
(export/to_tensorrt.py) and this backend name the GPU alike (models/core/tensorrt_glue.py, with fakes for tensorrt and
cuda-python); one real engine runs where TensorRT and a CUDA GPU exist, its logits compared with onnxruntime's.

Also here: the options deploy/backends.py gives onnxruntime's TensorRT execution provider (engine and timing caches
on disk, FP16/INT8 by the file's precision), checked as a pure function and through the backend's constructor with
the session itself on CPU. The fakes (tensorrt 10.x and 11.x, cuda-python, the EP being "available") prove only our
plumbing, not how the real TensorRT, cuda-python or onnxruntime behave: that is export/gpu_check.py's job on a GPU.
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

import roadseg.deploy.tensorrt_backend as trt_backend
import roadseg.export.to_tensorrt as trt_export
from roadseg.deploy import backends as deploy_backends
from roadseg.deploy.backends import (
    OnnxRuntimeBackend,
    open_backend,
    ort_tensorrt_cache_root,
    provider_list,
    tensorrt_provider_options,
)
from roadseg.deploy.tensorrt_backend import TensorRTBackend, check_engine_compatible, check_input_shape
from roadseg.export.to_tensorrt import make_manifest, write_manifest
from roadseg.models.core.cli import ToolError
from roadseg.models.core.engine_manifest import cache_key, manifest_path, read_manifest
from roadseg.models.core.tensorrt_glue import Gpu, engine_target, gpu_identity
from tests.conftest import REPO_ROOT
from tests.test_tensorrt_build import (
    INFO,
    PROFILE,
    SPEC,
    FakeTensorRT,
    FakeTensorRT11,
    Severity,
    onnx_for_fp16_engine,
    tiny_onnx,
)

ENGINE_BYTES = b"a serialized engine, as far as these tests go"


def one_line_error(caught: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def engine(tmp_path):
    """An engine file (not a real one) with a sound manifest beside it, as export/to_tensorrt.py writes them."""
    path = tmp_path / "model.engine"
    path.write_bytes(ENGINE_BYTES)
    write_manifest(manifest_path(path), make_manifest(SPEC, INFO.with_changes(precision="fp16"),
                                                      tmp_path / "model.onnx", path, ENGINE_BYTES, 1.0))
    return path


# imports -------------------------------------------------------------------------------------------------
def imports_nothing_of(module: str, roots: set[str], packages: tuple[str, ...] = ()) -> None:
    """Importing ``module`` in a fresh interpreter loads no module under ``roots`` (top level) or ``packages``."""
    code = (f"import {module}, sys; "
            f"found = sorted({{n.split('.')[0] for n in sys.modules}} & {roots!r}) "
            f"+ sorted(n for n in sys.modules if n.startswith({packages!r})); "
            "assert not found, found")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_module_imports_without_tensorrt_cuda_torch_or_export():
    imports_nothing_of("roadseg.deploy.tensorrt_backend", {"torch", "tensorrt", "cuda"}, ("roadseg.export",))


def test_glue_imports_without_tensorrt_cuda_torch_or_any_stage():
    imports_nothing_of("roadseg.models.core.tensorrt_glue", {"torch", "tensorrt", "cuda"},
                       ("roadseg.train", "roadseg.compress", "roadseg.export", "roadseg.deploy"))


# TensorRT version and GPU -------------------------------------------------------------------------------------
MANIFEST = {"components": SPEC.components(), "onnx": "runs/demo/model.onnx"}  # TensorRT 10.9.0, NVIDIA Orin, sm 8.7


def test_same_tensorrt_and_gpu_is_compatible():
    assert check_engine_compatible(MANIFEST, "10.9.0", Gpu("NVIDIA Orin", "8.7")) is None


@pytest.mark.parametrize(("version", "gpu", "fragments"), [
    ("10.7.0", Gpu("NVIDIA Orin", "8.7"), ("TensorRT 10.9.0 for NVIDIA Orin (sm 8.7)", "has TensorRT 10.7.0 and")),
    ("10.9.0", Gpu("NVIDIA A100-SXM4-80GB", "8.0"), ("for NVIDIA Orin (sm 8.7)", "NVIDIA A100-SXM4-80GB (sm 8.0)")),
    ("10.9.0", Gpu("NVIDIA Orin", "8.9"), ("(sm 8.7)", "(sm 8.9)")),
])
def test_another_tensorrt_or_gpu_is_one_line_naming_both(version, gpu, fragments):
    with pytest.raises(ToolError) as caught:
        check_engine_compatible(MANIFEST, version, gpu, where="trt/model.engine")
    one_line_error(caught, "trt/model.engine: built with", *fragments,
                   "rebuild it with export/to_tensorrt.py --model runs/demo/model.onnx")


def test_a_manifest_without_the_build_machine_is_an_error():
    components = {k: v for k, v in SPEC.components().items() if k != "gpu_name"}
    with pytest.raises(ToolError) as caught:
        check_engine_compatible({"components": components}, "10.9.0", Gpu("NVIDIA Orin", "8.7"), where="m.engine")
    one_line_error(caught, "m.engine", "gpu_name")


# input profile ---------------------------------------------------------------------------------------------
def test_shapes_within_the_profile_pass():
    for shape in (PROFILE.min, PROFILE.opt, PROFILE.max, (2, 3, 48, 96)):
        check_input_shape(shape, PROFILE.shapes(), "m.engine")


@pytest.mark.parametrize("shape", [(3, 3, 64, 128), (1, 3, 64, 256), (1, 3, 16, 64), (1, 1, 64, 128), (3, 64, 128)])
def test_shapes_outside_the_profile_name_shape_and_profile(shape):
    with pytest.raises(ToolError) as caught:
        check_input_shape(shape, PROFILE.shapes(), "m.engine")
    one_line_error(caught, "m.engine", "x".join(map(str, shape)), "min 1x3x32x64, opt 1x3x64x128, max 2x3x64x128",
                   "export/to_tensorrt.py")


# manifest and engine file, checked before TensorRT is needed --------------------------------------------------
def test_missing_engine_is_one_line(tmp_path):
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(tmp_path / "absent.engine")
    one_line_error(caught, "absent.engine", "no such file")


def test_missing_manifest_is_one_line(engine):
    manifest_path(engine).unlink()
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine)
    one_line_error(caught, str(manifest_path(engine)), "no engine manifest", "input size", "export/to_tensorrt.py")


def test_missing_manifest_is_accepted_with_explicit_info(engine):
    manifest, info = trt_backend.load_manifest(engine, INFO)
    assert manifest is not None and info is INFO  # a manifest is still read (for the checks) when present
    manifest_path(engine).unlink()
    assert trt_backend.load_manifest(engine, INFO) == (None, INFO)


def test_manifest_gives_the_model_info(engine):
    manifest, info = trt_backend.load_manifest(engine)
    assert manifest["components"]["gpu_name"] == "NVIDIA Orin"
    assert (info.input_size, info.mean, info.precision) == ((64, 128), (0.5, 0.5, 0.5), "fp16")


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: json.dumps({**json.loads(text), "model": {}}), "roadseg-model/1"),
    (lambda text: text.replace('"gpu_name": "NVIDIA Orin"', '"gpu_name": "NVIDIA Thor"', 1), "key does not match"),
])
def test_damaged_manifest_is_one_line(engine, damage, fragment):
    path = manifest_path(engine)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine)
    one_line_error(caught, str(path), fragment)


def test_engine_that_is_not_the_manifests_is_one_line(engine):
    engine.write_bytes(ENGINE_BYTES + b"!")
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine)
    one_line_error(caught, str(engine), "does not match its manifest", "export/to_tensorrt.py")


# without TensorRT or cuda-python ------------------------------------------------------------------------------
def test_open_backend_of_an_engine_without_tensorrt_points_to_onnxruntime(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError, installed or not
    with pytest.raises(ToolError) as caught:
        open_backend(engine)
    one_line_error(caught, str(engine), "tensorrt package", "onnxruntime", str(engine.parent / "model.onnx"))


def test_other_suffixes_name_the_engine_among_those_accepted(tmp_path):
    with pytest.raises(ToolError) as caught:
        open_backend(tmp_path / "model.plan")
    one_line_error(caught, "model.plan", ".onnx", ".engine")


def test_without_cuda_python_the_error_says_how_to_install_it(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ToolError) as caught:
        trt_backend.import_cudart()
    one_line_error(caught, "cuda-python", "pip install cuda-python")


def test_cuda_errors_are_one_line_naming_the_call():
    try:
        cudart = trt_backend.import_cudart()
    except ToolError as err:
        pytest.skip(str(err))
    assert trt_backend.cuda_check(cudart, (cudart.cudaError_t.cudaSuccess, 1234), "cudaMalloc") == 1234
    assert trt_backend.cuda_check(cudart, (cudart.cudaError_t.cudaSuccess,), "cudaFree") is None
    with pytest.raises(trt_backend.CudaError) as caught:
        trt_backend.cuda_check(cudart, (cudart.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(64 bytes)")
    one_line_error(caught, "CUDA cudaMalloc(64 bytes) failed: cudaErrorMemoryAllocation")


def test_current_gpu_names_the_device_or_says_why_not():
    try:
        cudart = trt_backend.import_cudart()
    except ToolError as err:
        pytest.skip(str(err))
    try:
        gpu = trt_backend.current_gpu(cudart)
    except ToolError as caught:  # this machine: no GPU, or no driver for this cuda-python
        assert "\n" not in str(caught) and "no usable CUDA GPU (CUDA cudaGetDevice failed: cudaError" in str(caught)
        assert "onnxruntime" in str(caught)
    else:
        assert gpu.name and gpu.compute_capability.replace(".", "").isdigit()


# the builder and the run time name the GPU alike ------------------------------------------------------------------
class FakeCudart:
    """Just the part of cuda-python's runtime that naming the GPU uses: one device, ``name`` as cuda-python gives it
    (bytes of a C char array, NUL and leftovers included, or str)."""

    class cudaError_t(enum.IntEnum):  # noqa: N801 (cuda-python's name)
        cudaSuccess = 0

    def __init__(self, name: bytes | str, major: int = 8, minor: int = 7):
        self.props = SimpleNamespace(name=name, major=major, minor=minor)

    def cudaGetDevice(self):  # noqa: N802
        return self.cudaError_t.cudaSuccess, 0

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        assert device == 0
        return self.cudaError_t.cudaSuccess, self.props


def install_cudart(monkeypatch, layout: str, cudart: FakeCudart) -> None:
    """Make ``cudart`` what `import` finds in cuda-python's current layout (cuda.bindings.runtime) or its older one
    (cuda.cudart, without cuda.bindings), installed here or not."""
    cuda = ModuleType("cuda")
    if layout == "current":
        cuda.bindings = ModuleType("cuda.bindings")
        cuda.bindings.runtime = cudart
        modules = {"cuda": cuda, "cuda.bindings": cuda.bindings, "cuda.bindings.runtime": cudart}
    else:
        cuda.cudart = cudart
        modules = {"cuda": cuda, "cuda.bindings": None, "cuda.bindings.runtime": None, "cuda.cudart": cudart}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


class FakeTensorRTRuntime(FakeTensorRT):
    """FakeTensorRT (the builder's stand-in) with a Runtime that deserializes nothing: reaching it means the backend's
    compatibility check has passed."""

    def Runtime(self, logger):  # noqa: N802 (TensorRT's name)
        self.logger = logger
        return self

    def deserialize_cuda_engine(self, data):
        self.logger.log(Severity.ERROR, "fake TensorRT:\n deserializes nothing")
        return None


@pytest.mark.parametrize(("build_layout", "build_name", "run_layout", "run_name"), [
    ("current", b"NVIDIA Orin\0\x13\xff", "current", b"NVIDIA Orin\0"),
    ("older", b"NVIDIA Orin\0\0\0", "current", "NVIDIA Orin"),
    ("current", "NVIDIA Orin", "older", b"NVIDIA Orin\0\xfe"),
], ids=["current-layout", "older-to-current", "current-to-older"])
def test_the_gpu_the_builder_records_is_the_gpu_the_backend_accepts(tmp_path, monkeypatch, build_layout, build_name,
                                                                      run_layout, run_name):
    """The builder's manifest and the backend's check both take the GPU from tensorrt_glue.gpu_identity and the
    fields from engine_target: an engine built here is accepted here, and refused on another GPU, naming both.

    tensorrt and cuda-python are fakes (there is no GPU here): this proves only our own plumbing, from the builder's
    main() to the backend's constructor, not how the real TensorRT or cuda-python behave.
    """
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRTRuntime())
    onnx_path = tiny_onnx(tmp_path / "model.onnx")
    engine_path = tmp_path / "model.engine"
    install_cudart(monkeypatch, build_layout, FakeCudart(build_name))
    args = trt_export.get_args_parser().parse_args(["--model", str(onnx_path), "--precision", "fp16",
                                                    "--engine", str(engine_path)])
    assert trt_export.main(args) == 0
    components = read_manifest(manifest_path(engine_path))["components"]
    built_for = {key: components[key] for key in ("tensorrt_version", "gpu_name", "compute_capability")}
    assert built_for == engine_target("10.9.0", Gpu("NVIDIA Orin", "8.7"))

    install_cudart(monkeypatch, run_layout, FakeCudart(run_name))
    assert gpu_identity(trt_backend.import_cudart()) == Gpu("NVIDIA Orin", "8.7", 0)
    with pytest.raises(ToolError) as caught:  # accepted: it goes on to deserialize, which the fake cannot
        TensorRTBackend(engine_path)
    one_line_error(caught, f"{engine_path}: TensorRT cannot deserialize it: fake TensorRT: deserializes nothing")

    install_cudart(monkeypatch, run_layout, FakeCudart(b"NVIDIA Thor\0"))
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine_path)
    one_line_error(caught, f"{engine_path}: built with TensorRT 10.9.0 for NVIDIA Orin (sm 8.7); this machine has "
                           "TensorRT 10.9.0 and NVIDIA Thor (sm 8.7)", f"--model {onnx_path}")


# the run time on TensorRT 11.x ----------------------------------------------------------------------------------
class FakeTensorRT11Runtime(FakeTensorRT11):
    """FakeTensorRT11 with FakeTensorRTRuntime's Runtime: reaching deserialization means every earlier check passed."""

    Runtime = FakeTensorRTRuntime.Runtime
    deserialize_cuda_engine = FakeTensorRTRuntime.deserialize_cuda_engine


def test_an_engine_built_on_tensorrt_11_opens_on_tensorrt_11(tmp_path, monkeypatch):
    """The 11.x builder path (strongly typed, from an FP16 ONNX) through to the backend's checks, with fakes only."""
    trt = FakeTensorRT11Runtime()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    install_cudart(monkeypatch, "current", FakeCudart(b"NVIDIA Thor\0", 11, 0))
    onnx_path = tiny_onnx(tmp_path / "model_fp16.onnx", INFO.with_changes(precision="fp16"))
    engine_path = tmp_path / "model.engine"
    args = trt_export.get_args_parser().parse_args(["--model", str(onnx_path), "--precision", "fp16",
                                                    "--engine", str(engine_path)])
    assert trt_export.main(args) == 0 and trt.flags == set()
    assert read_manifest(manifest_path(engine_path))["components"]["tensorrt_version"] == "11.2.1"
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine_path)
    one_line_error(caught, "TensorRT cannot deserialize it: fake TensorRT: deserializes nothing")


def test_the_run_time_refuses_a_tensorrt_that_is_neither_10_nor_11(engine, monkeypatch):
    trt = FakeTensorRTRuntime()
    trt.__version__ = "12.0.0"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine)
    one_line_error(caught, str(engine), "TensorRT 12.0.0 is not a version roadseg supports", "10.x or 11.x")


# onnxruntime's TensorRT execution provider ------------------------------------------------------------------------
SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-ort-ptq"])
def test_ep_options_fp16_with_engine_and_timing_caches_on_disk(tmp_path, precision):
    options = tensorrt_provider_options(SHA_A, precision, tmp_path)
    assert options == {"trt_engine_cache_enable": "True",
                       "trt_engine_cache_path": str(tmp_path / "engines" / f"{SHA_A[:16]}-fp16"),
                       "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(tmp_path / "timing"),
                       "trt_fp16_enable": "True"}  # int8-ort-ptq: uint8 Q/DQ for the CPU, not TensorRT's INT8


@pytest.mark.parametrize("precision", ["int8-qat-qdq", "int8-trt-ptq"])
def test_ep_options_int8_for_tensorrt_qdq_files(tmp_path, precision):
    options = tensorrt_provider_options(SHA_A, precision, tmp_path, ort_version="1.32.0")
    assert options["trt_int8_enable"] == options["trt_fp16_enable"] == "True"
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines" / "onnxruntime-1.32.0" / f"{SHA_A[:16]}-int8")
    assert options["trt_timing_cache_path"] == str(tmp_path / "timing")


def test_a_new_tensorrt_gets_new_engine_folders(tmp_path):
    """The EP cannot load an engine built by another TensorRT and fails the run rather than rebuild it."""
    old, new = (tensorrt_provider_options(SHA_A, "fp16", tmp_path, ort_version="1.32.0", trt_version=version)
                for version in ("10.13.0", "11.1.0"))
    assert old["trt_engine_cache_path"] == str(tmp_path / "engines" / "onnxruntime-1.32.0_tensorrt-10.13.0"
                                               / f"{SHA_A[:16]}-fp16")
    assert new["trt_engine_cache_path"] != old["trt_engine_cache_path"]
    assert old["trt_timing_cache_path"] == str(tmp_path / "timing" / "tensorrt-10.13.0")  # timings are per version too
    assert new["trt_timing_cache_path"] != old["trt_timing_cache_path"]


class Dist:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


@pytest.mark.parametrize(("installed", "expected"), [
    ([("numpy", "2.4"), ("tensorrt", "10.13.0"), ("tensorrt_cu12_libs", "10.13.0.35")], "10.13.0.35"),
    ([("tensorrt", "10.3.0")], "10.3.0"),  # JetPack: apt's bindings, libraries from the system
    ([("numpy", "2.4"), ("onnxruntime-gpu", "1.32.0")], ""),
])
def test_the_tensorrt_version_is_read_from_the_installed_packages(installed, expected):
    from roadseg.deploy.backends import tensorrt_library_version

    assert tensorrt_library_version([Dist(name, version) for name, version in installed]) == expected


def test_each_model_and_mode_gets_its_own_engine_folder_and_all_share_the_timing_cache(tmp_path):
    paths = {tensorrt_provider_options(sha, precision, tmp_path)["trt_engine_cache_path"]
             for sha in (SHA_A, SHA_B) for precision in ("fp32", "int8-qat-qdq")}
    assert len(paths) == 4
    timing = {tensorrt_provider_options(sha, "fp32", tmp_path)["trt_timing_cache_path"] for sha in (SHA_A, SHA_B)}
    assert len(timing) == 1


def test_the_cache_root_follows_xdg_cache_home(tmp_path):
    assert ort_tensorrt_cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "roadseg" / "ort-trt"
    for environ in ({"HOME": str(tmp_path)}, {"HOME": str(tmp_path), "XDG_CACHE_HOME": "relative/cache"},
                    {"HOME": str(tmp_path), "XDG_CACHE_HOME": ""}):
        assert ort_tensorrt_cache_root(environ) == tmp_path / ".cache" / "roadseg" / "ort-trt"


def test_provider_list_gives_options_only_to_their_provider():
    options = {"TensorrtExecutionProvider": {"trt_fp16_enable": "True"}}
    assert provider_list(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], options) == [
        ("TensorrtExecutionProvider", {"trt_fp16_enable": "True"}), "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_list(["CPUExecutionProvider"], options) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("precision", "int8"), [("fp32", False), ("int8-qat-qdq", True)])
def test_the_backend_passes_the_options_when_the_tensorrt_ep_is_chosen(tmp_path, monkeypatch, precision, int8):
    """onnxruntime here has no TensorRT EP: it is made to look available, and the session that would get it is
    recorded and then created on the CPU. Checks the wiring only (metadata read first, folders made, options given)."""
    import onnxruntime as ort

    onnx_path = tiny_onnx(tmp_path / "model.onnx", INFO.with_changes(precision=precision))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    asked, real_session = [], deploy_backends.checked_onnx_session

    def recording_session(path, **kwargs):
        asked.append(kwargs.get("providers"))
        return real_session(path, **{**kwargs, "providers": ["CPUExecutionProvider"]})

    monkeypatch.setattr(deploy_backends, "checked_onnx_session", recording_session)
    backend = OnnxRuntimeBackend(onnx_path)
    name, options = asked[-1][0]
    assert name == "TensorrtExecutionProvider" and asked[-1][1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert asked[0] == ["CPUExecutionProvider"]  # the metadata probe
    root = tmp_path / "cache" / "roadseg" / "ort-trt"
    sha = trt_export.sha256_hex(onnx_path.read_bytes())
    assert options == tensorrt_provider_options(sha, precision, root, ort_version=ort.__version__,
                                                trt_version=deploy_backends.tensorrt_library_version())
    assert ("trt_int8_enable" in options) is int8
    assert Path(options["trt_engine_cache_path"]).is_dir() and Path(options["trt_timing_cache_path"]).is_dir()
    assert backend.info.precision == precision

    asked.clear()
    OnnxRuntimeBackend(onnx_path, info=INFO.with_changes(precision=precision))
    assert len(asked) == 1  # with the model's info given there is nothing to probe


def test_without_the_tensorrt_ep_no_options_are_passed(tmp_path, monkeypatch):
    onnx_path = tiny_onnx(tmp_path / "model.onnx")
    asked, real_session = [], deploy_backends.checked_onnx_session
    monkeypatch.setattr(deploy_backends, "checked_onnx_session",
                        lambda path, **kwargs: asked.append(kwargs["providers"]) or real_session(path, **kwargs))
    backend = OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"])
    assert asked == [["CPUExecutionProvider"]] and "tensorrt_ep" not in backend.describe()


# a real engine ------------------------------------------------------------------------------------------------
def test_real_fp16_engine_matches_onnxruntime(tmp_path):
    trt = pytest.importorskip("tensorrt", exc_type=ImportError)
    import onnxruntime as ort

    gpu, reason = trt_export.gpu_from_cuda_python()
    if gpu is None:
        pytest.skip(f"needs a CUDA GPU ({reason})")
    onnx_path = tiny_onnx(tmp_path / "model.onnx")
    engine_path = tmp_path / "model.fp16.engine"
    args = trt_export.get_args_parser().parse_args(["--model", str(onnx_for_fp16_engine(trt, onnx_path)),
                                                    "--precision", "fp16", "--engine", str(engine_path),
                                                    "--max-shape", "2x3x64x128"])
    assert trt_export.main(args) == 0

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    with open_backend(engine_path) as backend:
        assert isinstance(backend, TensorRTBackend)
        description = backend.describe()
        assert description["backend"] == "tensorrt" and description["precision"] == "fp16"
        assert description["tensorrt"] == trt.__version__ and description["gpu"] == gpu.name
        assert description["profile"] == {"min": "1x3x32x64", "opt": "1x3x64x128", "max": "2x3x64x128"}
        assert backend.info.input_size == (64, 128)
        # small, then larger (the buffers grow), then small again (they are reused)
        for shape in [(1, 3, 32, 64), (2, 3, 64, 128), (1, 3, 48, 96)]:
            batch = rng.standard_normal(shape, dtype=np.float32)
            logits = backend.infer(batch)
            expected = session.run(None, {"image": batch})[0]
            assert logits.dtype == np.float32 and logits.shape == expected.shape == (shape[0], 2, *shape[2:])
            np.testing.assert_allclose(logits, expected, atol=1e-2, rtol=1e-2)
        with pytest.raises(ToolError) as caught:
            backend.infer(np.zeros((3, 3, 64, 128), np.float32))
        one_line_error(caught, "3x3x64x128", "max 2x3x64x128")
    with pytest.raises(ToolError, match="closed"):
        backend.infer(np.zeros((1, 3, 64, 128), np.float32))

    # the same engine, its manifest claiming another TensorRT version: refused before deserializing
    manifest = json.loads(manifest_path(engine_path).read_text())
    manifest["components"]["tensorrt_version"] = "10.0.0-other"
    manifest["key"] = cache_key(manifest["components"])
    write_manifest(manifest_path(engine_path), manifest)
    with pytest.raises(ToolError) as caught:
        TensorRTBackend(engine_path)
    one_line_error(caught, "built with TensorRT 10.0.0-other", f"this machine has TensorRT {trt.__version__}")
