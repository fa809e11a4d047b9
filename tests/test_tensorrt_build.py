"""export/to_tensorrt.py: argument checks, default profile, cache key, manifests and the engine cache run on any
machine (TensorRT and the GPU are replaced where needed); one real FP16 build runs where both exist.

The builder has one path per TensorRT major version (10.x: weakly typed network plus precision builder flags;
11.x: strongly typed network, precision from the ONNX graph). Two distinct fakes model the two Python APIs:
``FakeTensorRT`` (10.x) has ``BuilderFlag.FP16``/``INT8``, ``FakeTensorRT11`` does not, so a 10-style call on the
11 path fails here as it would on the real 11.x. The fakes prove only our plumbing (which flags and creation flags
each path passes, and what it refuses), not the real TensorRT API; that needs the real build tests at the end of
this file, on a GPU machine (or export/gpu_check.py).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from types import SimpleNamespace

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import roadseg.export.to_tensorrt as trt_export
from roadseg.export.to_tensorrt import (
    EngineSpec,
    Gpu,
    Profile,
    ToolError,
    build_or_reuse,
    check_precision,
    get_args_parser,
    make_profile,
    manifest_path,
    read_manifest,
    write_manifest,
)
from roadseg.models.core.model_metadata import ModelInfo, write_onnx_info
from tests.conftest import REPO_ROOT, assert_one_line_error, run_script

ARCH = {"name": "unet", "in_channels": 3, "num_classes": 2, "depth": 2}  # size multiple 4
META = {"stage": "train", "input_size": [64, 128], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
INFO = ModelInfo(arch=ARCH, meta=META)
PROFILE = Profile(min=(1, 3, 32, 64), opt=(1, 3, 64, 128), max=(2, 3, 64, 128))
SPEC = EngineSpec(onnx_sha256="ab" * 32, tensorrt_version="10.9.0", gpu_name="NVIDIA Orin",
                  compute_capability="8.7", precision="fp16", profile=PROFILE)


def tiny_onnx(path, info: ModelInfo = INFO):
    """A 1x1 convolution 3 -> 2 channels from "image" [N,3,H,W] (all dynamic) to "logits", with roadseg metadata."""
    import numpy as np

    weight = numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3, 1, 1), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        initializer=[weight])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # readable by every onnxruntime / TensorRT parser of the last years
    write_onnx_info(proto, info)
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def fp32_onnx(tmp_path):
    return tiny_onnx(tmp_path / "model.onnx")


def onnx_for_fp16_engine(trt, fp32_path):
    """What --precision fp16 builds from with this TensorRT: the FP32 file on 10.x (BuilderFlag.FP16), its FP16
    conversion (export/to_fp16.py's converter, ModelOpt AutoCast) on 11.x, where strong typing takes the precision
    from the graph. For the real-build tests, on a GPU machine."""
    import numpy as np

    from roadseg.export.to_fp16 import convert_to_fp16

    if trt_export.tensorrt_major(trt.__version__) == 10:
        return fp32_path
    info = trt_export.read_onnx_info(fp32_path)
    proto, _ = convert_to_fp16(fp32_path, [np.zeros((1, 3, *info.input_size), np.float32)])
    write_onnx_info(proto, info.with_changes(precision="fp16"))
    fp16_path = fp32_path.with_name(fp32_path.stem + "_fp16.onnx")
    onnx.save(proto, str(fp16_path))
    return fp16_path


# argument checks --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_missing_onnx_is_one_line_error(tmp_path):
    result = run_script("export/to_tensorrt.py", "--model", tmp_path / "absent.onnx", "--precision", "fp16")
    assert_one_line_error(result, "absent.onnx", "no such ONNX file")


@pytest.mark.slow
def test_bad_shape_string_is_one_line_error(fp32_onnx):
    result = run_script("export/to_tensorrt.py", "--model", fp32_onnx, "--precision", "fp16", "--min-shape", "32by64")
    assert_one_line_error(result, "--min-shape", "NxCxHxW or HxW", "32by64")


@pytest.mark.slow
def test_int8_on_fp32_onnx_says_to_quantize_first(fp32_onnx):
    result = run_script("export/to_tensorrt.py", "--model", fp32_onnx, "--precision", "int8")
    assert_one_line_error(result, "model.onnx", "export/quantize_onnx.py --target tensorrt", "QAT")


@pytest.mark.parametrize(("flags", "fragments"), [
    ({"opt_shape": "66x128"}, ("--opt-shape", "multiples of 4", "1x3x66x128")),
    ({"max_shape": "64x130"}, ("--max-shape", "multiples of 4")),
    ({"min_shape": "1x1x32x64"}, ("--min-shape", "3 input channels")),
    ({"min_shape": "128x128"}, ("--min-shape 1x3x128x128 exceeds --opt-shape 1x3x64x128",)),
    ({"max_shape": "32x256"}, ("--opt-shape 1x3x64x128 exceeds --max-shape 1x3x32x256",)),
    ({"opt_shape": "2x3x64x128"}, ("exceeds --max-shape 1x3x64x128",)),  # the default max has --max-batch 1
    ({"opt_shape": "0x64"}, ("--opt-shape", "positive integers")),
    ({"opt_shape": "64x128x3"}, ("--opt-shape", "NxCxHxW or HxW")),
])
def test_bad_profiles_name_the_flag(flags, fragments):
    with pytest.raises(ToolError) as caught:
        make_profile(INFO, **flags)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_precision_must_match_the_onnx(tmp_path):
    for source in ("int8-qat-qdq", "int8-trt-ptq"):
        check_precision("int8", INFO.with_changes(precision=source), tmp_path / "m.onnx")  # accepted
    with pytest.raises(ToolError, match="quantized for onnxruntime"):
        check_precision("int8", INFO.with_changes(precision="int8-ort-ptq"), tmp_path / "m.onnx")
    with pytest.raises(ToolError, match="build it with --precision int8"):
        check_precision("fp16", INFO.with_changes(precision="int8-qat-qdq"), tmp_path / "m.onnx")


# default profile ----------------------------------------------------------------------------------------
def test_default_profile_comes_from_the_onnx_metadata(fp32_onnx):
    info = trt_export.read_onnx_info(fp32_onnx)
    assert make_profile(info) == Profile(min=(1, 3, 32, 64), opt=(1, 3, 64, 128), max=(1, 3, 64, 128))
    assert make_profile(info, max_batch=4).max == (4, 3, 64, 128)


def test_default_min_is_half_the_opt_size_rounded_up_to_the_size_multiple():
    info = INFO.with_changes(arch={**ARCH, "depth": 3}, meta={**META, "input_size": [72, 120]})  # multiple 8
    assert make_profile(info).min == (1, 3, 40, 64)  # 36 -> 40, 60 -> 64
    assert make_profile(info, opt_shape="16x16").min == (1, 3, 8, 8)
    assert make_profile(info, opt_shape="8x8").min == (1, 3, 8, 8)  # never below one multiple


def test_hw_shapes_take_the_flag_batch_and_full_shapes_are_kept():
    profile = make_profile(INFO, min_shape="16x32", max_shape="3x3x128x256", max_batch=2)
    assert profile == Profile(min=(1, 3, 16, 32), opt=(1, 3, 64, 128), max=(3, 3, 128, 256))
    assert make_profile(INFO, max_shape="128x256", max_batch=2).max == (2, 3, 128, 256)


# cache key and manifest -------------------------------------------------------------------------------------
def test_same_inputs_give_the_same_key():
    assert SPEC.key() == dataclasses.replace(SPEC).key() == EngineSpec(**vars(SPEC)).key()
    assert len(SPEC.key()) == 64


@pytest.mark.parametrize(("field", "value"), [
    ("onnx_sha256", "cd" * 32), ("tensorrt_version", "10.9.1"), ("gpu_name", "NVIDIA GeForce RTX 4090"),
    ("compute_capability", "8.9"), ("precision", "int8"),
    ("profile", dataclasses.replace(PROFILE, max=(4, 3, 64, 128))),
    ("profile", dataclasses.replace(PROFILE, min=PROFILE.opt)),
    ("workspace_mib", 1024), ("dla_core", 0), ("optimization_level", 5), ("recipe", 2),
])
def test_changing_any_one_component_changes_the_key(field, value):
    assert dataclasses.replace(SPEC, **{field: value}).key() != SPEC.key()


def make_test_manifest(tmp_path, spec: EngineSpec = SPEC) -> dict:
    engine = tmp_path / "model.engine"
    return trt_export.make_manifest(spec, INFO.with_changes(precision="fp16"), tmp_path / "model.onnx", engine,
                                    b"engine", 1.25)


def test_manifest_round_trip(tmp_path):
    manifest = make_test_manifest(tmp_path)
    write_manifest(tmp_path / "model.json", manifest)
    assert read_manifest(tmp_path / "model.json") == manifest
    assert manifest["key"] == SPEC.key() and manifest["components"]["profile"]["max"] == [2, 3, 64, 128]
    assert ModelInfo.from_props(manifest["model"]).input_size == (64, 128)  # what deploy needs, without flags


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: text.replace('"precision": "fp16"', '"precision": "int8"', 1), "key does not match"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "engine_bytes"}), "lacks engine_bytes"),
    (lambda text: json.dumps({**json.loads(text), "model": {}}), "roadseg-model/1"),
    (lambda text: "[]", "format is not"),
])
def test_damaged_manifest_is_an_error_naming_the_file(tmp_path, damage, fragment):
    path = tmp_path / "model.json"
    write_manifest(path, make_test_manifest(tmp_path))
    path.write_text(damage(path.read_text()))
    with pytest.raises(ToolError) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_write_manifest_refuses_an_inconsistent_one(tmp_path):
    manifest = {**make_test_manifest(tmp_path), "key": "0" * 64}
    with pytest.raises(ValueError, match="key does not match"):
        write_manifest(tmp_path / "model.json", manifest)
    assert not (tmp_path / "model.json").exists()


# engine cache -------------------------------------------------------------------------------------------
class FakeBuild:
    def __init__(self, engine: bytes = b"serialized engine"):
        self.engine, self.calls = engine, 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.engine


def test_absent_engine_is_built_once_then_reused(tmp_path):
    engine_path, build, log = tmp_path / "cache" / "model.engine", FakeBuild(), []
    manifest, reused = build_or_reuse(engine_path, SPEC, INFO, tmp_path / "model.onnx", build, log.append)
    assert (reused, build.calls) == (False, 1)
    assert sorted(p.name for p in engine_path.parent.iterdir()) == ["model.engine", "model.json"]  # no temp files
    assert engine_path.read_bytes() == build.engine and read_manifest(manifest_path(engine_path)) == manifest
    assert manifest["engine_bytes"] == len(build.engine)

    again, reused = build_or_reuse(engine_path, SPEC, INFO, tmp_path / "model.onnx", build, log.append)
    assert (reused, build.calls, again) == (True, 1, manifest)


def test_changed_key_truncated_engine_or_damaged_manifest_rebuild(tmp_path):
    engine_path, build, log = tmp_path / "model.engine", FakeBuild(), []
    build_or_reuse(engine_path, SPEC, INFO, tmp_path / "model.onnx", build, log.append)

    changed = dataclasses.replace(SPEC, precision="int8", workspace_mib=512)
    manifest, reused = build_or_reuse(engine_path, changed, INFO, tmp_path / "model.onnx", build, log.append)
    assert (reused, build.calls, manifest["key"]) == (False, 2, changed.key())
    assert "precision, workspace_mib" in log[-1]

    engine_path.write_bytes(b"short")
    assert build_or_reuse(engine_path, changed, INFO, tmp_path / "model.onnx", build, log.append)[1] is False
    manifest_path(engine_path).write_text("{")
    assert build_or_reuse(engine_path, changed, INFO, tmp_path / "model.onnx", build, log.append)[1] is False
    assert build.calls == 4 and "not valid JSON" in log[-1]
    assert read_manifest(manifest_path(engine_path))["key"] == changed.key()


def test_failed_build_leaves_the_cache_untouched(tmp_path):
    def failing_build():
        raise ToolError("TensorRT could not build the engine: out of memory")

    with pytest.raises(ToolError, match="out of memory"):
        build_or_reuse(tmp_path / "model.engine", SPEC, INFO, tmp_path / "model.onnx", failing_build, print)
    assert list(tmp_path.iterdir()) == []


def test_main_names_the_engine_by_key_and_reuses_it(fp32_onnx, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_build_engine(trt, onnx_data, where, spec, timing_cache, verbose):
        calls.append((spec, timing_cache))
        return b"engine for " + spec.precision.encode()

    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr(trt_export, "cuda_gpu", lambda: Gpu("NVIDIA Orin", "8.7"))
    monkeypatch.setattr(trt_export, "build_engine", fake_build_engine)
    args = get_args_parser().parse_args(["--model", str(fp32_onnx), "--precision", "fp16",
                                         "--out", str(tmp_path / "trt")])
    assert trt_export.main(args) == 0
    assert trt_export.main(args) == 0
    assert "reusing cached engine" in capsys.readouterr().out and len(calls) == 1

    spec, timing_cache = calls[0]
    engine = tmp_path / "trt" / f"model.{spec.key()[:16]}.engine"
    manifest = read_manifest(manifest_path(engine))
    assert engine.read_bytes() == b"engine for fp16" and manifest["components"] == spec.components()
    assert timing_cache == tmp_path / "trt" / "timing.NVIDIA-Orin-sm8.7-trt10.9.0.cache"
    engine_info = ModelInfo.from_props(manifest["model"])
    assert engine_info.precision == "fp16" and engine_info.source == spec.onnx_sha256
    assert spec.onnx_sha256 == trt_export.sha256_hex(fp32_onnx.read_bytes())
    assert spec.profile == Profile(min=(1, 3, 32, 64), opt=(1, 3, 64, 128), max=(1, 3, 64, 128))


# build_engine against stand-ins for the TensorRT 10.x and 11.x Python APIs ------------------------------------
class Severity(enum.IntEnum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class CreationFlag(enum.IntEnum):  # NetworkDefinitionCreationFlag as the fakes spell it (values are the fakes' own)
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class FakeTensorRT:
    """Just the part of the TensorRT 10.x Python API that build_engine uses, recording what it is told.

    10.x has the weak-typing precision flags (BuilderFlag.FP16, BuilderFlag.INT8) and offers STRONGLY_TYPED as an
    opt-in creation flag. A stand-in: it proves our plumbing, not TensorRT's behaviour.
    """

    __version__ = "10.9.0"
    BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    NetworkDefinitionCreationFlag = CreationFlag
    MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    DeviceType = SimpleNamespace(DLA="DLA")

    class ILogger:
        Severity = Severity

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    def __init__(self, parser_errors=(), input_shape=(-1, 3, -1, -1), num_dla_cores=2, refuse_timing_cache=False):
        self.parser_errors, self.num_DLA_cores = list(parser_errors), num_dla_cores
        self.refuse_timing_cache = refuse_timing_cache  # as TensorRT does with another GPU's cache
        self.input = SimpleNamespace(name="image", shape=input_shape)
        self.flags, self.pools, self.shapes = set(), {}, {}
        self.network_flags = None
        self.timing_cache = b""

    def Builder(self, logger):  # noqa: N802 (TensorRT's name)
        return self

    def create_network(self, flags):
        self.network_flags = flags
        return SimpleNamespace(num_inputs=1, get_input=lambda index: self.input)

    def OnnxParser(self, network, logger):  # noqa: N802
        errors = [SimpleNamespace(desc=lambda text=text: text) for text in self.parser_errors]
        return SimpleNamespace(parse=lambda data: not errors, num_errors=len(errors), get_error=errors.__getitem__)

    def create_builder_config(self):
        return self

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def create_optimization_profile(self):
        return SimpleNamespace(set_shape=lambda name, *shapes: self.shapes.update({name: shapes}))

    def add_optimization_profile(self, profile):
        pass

    def create_timing_cache(self, data):
        return SimpleNamespace(data=bytes(data), serialize=lambda: bytes(data) + b"+tuned")

    def set_timing_cache(self, cache, ignore_mismatch):
        if self.refuse_timing_cache and cache.data:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache

    def build_serialized_network(self, network, config):
        self.progress_monitor.phase_start("Building engine", None, 2)
        self.progress_monitor.phase_start("Tactic search", "Building engine", 1)
        assert self.progress_monitor.step_complete("Tactic search", 0)
        self.progress_monitor.phase_finish("Tactic search")
        self.progress_monitor.step_complete("Building engine", 1)
        self.progress_monitor.phase_finish("Building engine")
        return b"ENGINE"


def test_build_engine_sets_precision_workspace_dla_profile_and_timing_cache(tmp_path):
    trt, cache = FakeTensorRT(), tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    spec = dataclasses.replace(SPEC, precision="int8", workspace_mib=256, dla_core=1, optimization_level=4)
    assert trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", spec, cache) == b"ENGINE"
    assert trt.flags == {"FP16", "INT8", "GPU_FALLBACK"} and trt.pools == {"WORKSPACE": 256 << 20}
    assert trt.network_flags == 0  # TensorRT 10.x: weakly typed, the flags choose the precision
    assert (trt.default_device_type, trt.DLA_core, trt.builder_optimization_level) == ("DLA", 1, 4)
    assert trt.shapes == {"image": PROFILE.shapes()}
    assert cache.read_bytes() == b"old+tuned"  # loaded, then saved back with what this build measured

    trt = FakeTensorRT()
    trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", SPEC, tmp_path / "new.cache")
    assert trt.flags == {"FP16"} and trt.pools == {} and not hasattr(trt, "DLA_core")
    assert (tmp_path / "new.cache").read_bytes() == b"+tuned"


def test_a_refused_timing_cache_is_replaced_not_fatal(tmp_path, capsys):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"another GPU's")
    trt = FakeTensorRT(refuse_timing_cache=True)
    assert trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", SPEC, cache) == b"ENGINE"
    assert "ignoring timing cache" in capsys.readouterr().out and cache.read_bytes() == b"+tuned"


class FakeTensorRT11(FakeTensorRT):
    """The same stand-in as FakeTensorRT, for the TensorRT 11.x Python API: weak typing is gone, so BuilderFlag has no
    FP16, INT8 (nor any other precision member); a code path that touches them raises AttributeError, as the real
    11.x would. Every network is strongly typed (STRONGLY_TYPED is still accepted). It proves our plumbing only."""

    __version__ = "11.2.1"
    BuilderFlag = SimpleNamespace(GPU_FALLBACK="GPU_FALLBACK")


def test_the_two_fakes_differ_where_the_two_apis_differ():
    assert hasattr(FakeTensorRT.BuilderFlag, "FP16") and hasattr(FakeTensorRT.BuilderFlag, "INT8")
    assert not hasattr(FakeTensorRT11.BuilderFlag, "FP16") and not hasattr(FakeTensorRT11.BuilderFlag, "INT8")


@pytest.mark.parametrize(("precision", "flags"), [("fp16", {"FP16"}), ("int8", {"FP16", "INT8"})])
def test_tensorrt_10_builds_a_weakly_typed_network_with_precision_flags(tmp_path, precision, flags):
    trt = FakeTensorRT()
    spec = dataclasses.replace(SPEC, precision=precision)
    assert trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", spec, None) == b"ENGINE"
    assert trt.network_flags == 0 and trt.flags == flags
    plan = trt_export.build_plan(trt, precision)
    assert (plan.tensorrt_major, plan.strongly_typed) == (10, False) and "builder flags" in plan.describe()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_11_builds_a_strongly_typed_network_without_precision_flags(tmp_path, precision):
    trt = FakeTensorRT11()
    spec = dataclasses.replace(SPEC, tensorrt_version="11.2.1", precision=precision)
    assert trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", spec, tmp_path / "timing.cache") == b"ENGINE"
    assert trt.network_flags == 1 << int(CreationFlag.STRONGLY_TYPED) and trt.flags == set()
    assert trt.shapes == {"image": PROFILE.shapes()} and (tmp_path / "timing.cache").exists()  # the rest as on 10.x
    plan = trt_export.build_plan(trt, precision)
    assert (plan.tensorrt_major, plan.strongly_typed, plan.builder_flags) == (11, True, ())


def test_tensorrt_11_keeps_dla_and_its_gpu_fallback(tmp_path):
    trt = FakeTensorRT11()
    trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", dataclasses.replace(SPEC, dla_core=0), None)
    assert trt.flags == {"GPU_FALLBACK"} and (trt.default_device_type, trt.DLA_core) == ("DLA", 0)


def test_a_weak_typing_call_on_the_11_fake_fails(tmp_path, monkeypatch):
    """Guards the fake itself: were build_engine to set a 10.x precision flag on 11.x, this is how it would fail."""
    monkeypatch.setattr(trt_export, "build_plan", lambda trt, precision: trt_export.BuildPlan(11, False, 0, ("FP16",)))
    with pytest.raises(AttributeError, match="FP16"):
        trt_export.build_engine(FakeTensorRT11(), b"onnx", tmp_path / "m.onnx", SPEC, None)


def test_tensorrt_11_without_the_creation_flag_member_still_builds_strongly_typed(tmp_path):
    trt = FakeTensorRT11()
    trt.NetworkDefinitionCreationFlag = SimpleNamespace()  # should a later 11.x drop it: strong typing is the only mode
    trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", SPEC, None)
    assert trt.network_flags == 0 and trt.flags == set()


@pytest.mark.parametrize(("version", "fragment"), [
    ("12.0.1", "TensorRT 12.0.1 is not a version roadseg supports (it speaks TensorRT 10.x or 11.x)"),
    ("9.2.0", "TensorRT 9.2.0 is too old"),
    ("banana", "TensorRT banana is not a version roadseg supports"),
])
def test_a_tensorrt_that_is_neither_10_nor_11_is_one_line(tmp_path, fp32_onnx, monkeypatch, version, fragment):
    trt = FakeTensorRT()
    trt.__version__ = version
    with pytest.raises(ToolError) as caught:
        trt_export.build_plan(trt, "fp16")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)

    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: SimpleNamespace(__version__=version))
    monkeypatch.setattr(trt_export, "cuda_gpu", lambda: Gpu("NVIDIA Orin", "8.7"))
    args = get_args_parser().parse_args(["--model", str(fp32_onnx), "--precision", "fp16", "--out", str(tmp_path)])
    with pytest.raises(ToolError, match=fragment.split(" is ")[0]):
        trt_export.main(args)
    assert not list(tmp_path.glob("*.engine"))


def test_tensorrt_11_refuses_fp16_from_an_fp32_onnx_and_says_how_to_convert(tmp_path):
    where = tmp_path / "model_fp32.onnx"
    with pytest.raises(ToolError) as caught:
        trt_export.check_precision_for_tensorrt("fp16", INFO, where, "11.2.1")
    message = str(caught.value)
    assert "\n" not in message and "strongly typed" in message and f"roadseg fp16 --model {where}" in message
    # accepted: an FP16 ONNX on 11.x, a Q/DQ ONNX for int8 on 11.x, and anything 10.x could build before
    trt_export.check_precision_for_tensorrt("fp16", INFO.with_changes(precision="fp16"), where, "11.2.1")
    trt_export.check_precision_for_tensorrt("int8", INFO.with_changes(precision="int8-qat-qdq"), where, "11.2.1")
    trt_export.check_precision_for_tensorrt("fp16", INFO, where, "10.9.0")
    trt_export.check_precision_for_tensorrt("fp16", INFO.with_changes(precision="fp16"), where, "10.9.0")


@pytest.mark.parametrize(("fake", "onnx_precision", "network_flags", "flags"), [
    (FakeTensorRT, "fp32", 0, {"FP16"}),
    (FakeTensorRT, "fp16", 0, {"FP16"}),
    (FakeTensorRT11, "fp16", 1 << int(CreationFlag.STRONGLY_TYPED), set()),
], ids=["10.x-from-fp32", "10.x-from-fp16", "11.x-from-fp16"])
def test_main_builds_fp16_on_each_version(tmp_path, monkeypatch, fake, onnx_precision, network_flags, flags):
    """From main() to build_engine with the fake tensorrt module in place of the real one (import_tensorrt, the version
    check and build_plan all see it); the GPU is a stand-in too."""
    trt = fake()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_export, "cuda_gpu", lambda: Gpu("NVIDIA Orin", "8.7"))
    onnx_path = tiny_onnx(tmp_path / f"model_{onnx_precision}.onnx", INFO.with_changes(precision=onnx_precision))
    args = get_args_parser().parse_args(["--model", str(onnx_path), "--precision", "fp16", "--out", str(tmp_path)])
    assert trt_export.main(args) == 0
    assert (trt.network_flags, trt.flags) == (network_flags, flags)
    engine = next(tmp_path.glob("*.engine"))
    components = read_manifest(manifest_path(engine))["components"]
    assert (components["tensorrt_version"], components["precision"]) == (fake.__version__, "fp16")


def test_main_on_tensorrt_11_refuses_fp16_from_fp32_before_touching_the_gpu(fp32_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT11())

    def no_gpu_needed():
        raise AssertionError("the refusal comes first")

    monkeypatch.setattr(trt_export, "cuda_gpu", no_gpu_needed)
    args = get_args_parser().parse_args(["--model", str(fp32_onnx), "--precision", "fp16", "--out", str(tmp_path)])
    with pytest.raises(ToolError, match="roadseg fp16"):
        trt_export.main(args)


@pytest.mark.parametrize(("trt", "spec", "fragment"), [
    (FakeTensorRT(parser_errors=["In node 0 (Conv): INVALID_NODE:\nbad weights", "second"]), SPEC,
     "m.onnx: TensorRT's ONNX parser failed: In node 0 (Conv): INVALID_NODE: bad weights (and 1 more)"),
    (FakeTensorRT(num_dla_cores=0), dataclasses.replace(SPEC, dla_core=0), "--dla-core 0: this device has 0 DLA"),
    (FakeTensorRT(input_shape=(1, 3, 64, 128)), SPEC, "has the fixed shape (1, 3, 64, 128)"),
])
def test_build_engine_errors_are_one_line(tmp_path, trt, spec, fragment):
    with pytest.raises(ToolError) as caught:
        trt_export.build_engine(trt, b"onnx", tmp_path / "m.onnx", spec, tmp_path / "timing.cache")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "timing.cache").exists()


# without TensorRT or a GPU ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_module_imports_without_torch_or_tensorrt():
    code = ("import roadseg.export.to_tensorrt, sys; "
            "assert not {'torch', 'tensorrt'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_without_tensorrt_the_cli_points_to_onnxruntime(fp32_onnx):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    result = run_script("export/to_tensorrt.py", "--model", fp32_onnx, "--precision", "fp16")
    assert_one_line_error(result, "tensorrt", "onnxruntime", "deploy/run.py")
    assert not list(fp32_onnx.parent.glob("*.engine"))


def test_without_a_gpu_the_error_points_to_onnxruntime(monkeypatch):
    monkeypatch.setattr(trt_export, "gpu_from_cuda_python", lambda device: (None, "cudaErrorNoDevice"))
    monkeypatch.setattr(trt_export, "gpu_from_nvidia_smi", lambda device: None)
    with pytest.raises(ToolError, match=r"no CUDA GPU found \(cudaErrorNoDevice\).*onnxruntime"):
        trt_export.cuda_gpu()


# a real build ---------------------------------------------------------------------------------------------
def test_real_fp16_build_deserializes_and_writes_its_manifest(fp32_onnx, tmp_path):
    trt = pytest.importorskip("tensorrt", exc_type=ImportError)
    gpu, reason = trt_export.gpu_from_cuda_python()
    if gpu is None:
        pytest.skip(f"needs a CUDA GPU ({reason})")
    engine_path = tmp_path / "model.fp16.engine"
    args = get_args_parser().parse_args(["--model", str(onnx_for_fp16_engine(trt, fp32_onnx)), "--precision", "fp16",
                                         "--engine", str(engine_path)])
    assert trt_export.main(args) == 0
    manifest = read_manifest(manifest_path(engine_path))
    assert manifest["components"]["gpu_name"] == gpu.name and manifest["engine_bytes"] == engine_path.stat().st_size
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
    assert engine is not None
    assert {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)} == {"image", "logits"}
    assert list(tmp_path.glob("timing.*.cache"))
