"""The OpenVINO backend: same logits as onnxruntime on our exports (FP32 stays f32), metadata read
from the .onnx and from a saved IR, one-line errors, and the ``auto`` rule that picks a backend."""

from __future__ import annotations

import numpy as np
import pytest

from roadseg.deploy import backends
from roadseg.deploy.backends import choose_backend, open_backend
from roadseg.models.core.cli import ToolError
from tests.conftest import exported_onnx

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install '.[openvino]')")
SIZE = (32, 64)


@pytest.fixture(scope="module")
def tiny_onnx(synthetic_root, tmp_path_factory):
    return exported_onnx(tmp_path_factory.mktemp("ov"), synthetic_root, SIZE)


@pytest.mark.slow
def test_openvino_agrees_with_onnxruntime_and_reads_our_metadata(tiny_onnx, tmp_path):
    reference = open_backend(tiny_onnx, threads=1, backend="onnxruntime")
    vino = open_backend(tiny_onnx, threads=1, backend="openvino")
    batch = np.random.default_rng(0).standard_normal((1, 3, *SIZE), dtype=np.float32)
    np.testing.assert_allclose(vino.infer(batch), reference.infer(batch), atol=1e-4)
    assert vino.info == reference.info and vino.describe()["inference_precision"] == "f32"
    # an IR saved from it keeps the metadata (rt_info) and reads back through the .xml
    ov.save_model(ov.Core().read_model(str(tiny_onnx)), str(tmp_path / "model.xml"))
    from_ir = open_backend(tmp_path / "model.xml", threads=1)
    assert from_ir.kind == "openvino" and from_ir.info.input_size == SIZE
    np.testing.assert_allclose(from_ir.infer(batch), reference.infer(batch), atol=1e-4)
    # compiled static at the model's own size: another shape is a one-line error, not an OpenVINO trace
    assert vino.describe()["input_shape"] == [1, 3, *SIZE]
    with pytest.raises(ToolError, match=r"compiled for a \(1, 3, 32, 64\) batch, given \(2, 3, 32, 64\)"):
        vino.infer(np.concatenate([batch, batch]))
    # a benchmark at other sizes opens it dynamic
    dynamic = open_backend(tiny_onnx, threads=1, backend="openvino", own_size_only=False)
    assert dynamic.input_shape == (None, 3, None, None)
    np.testing.assert_allclose(dynamic.infer(np.concatenate([batch, batch]))[1], reference.infer(batch)[0], atol=1e-4)
    assert dynamic.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 2, 64, 64)


def test_auto_rule(monkeypatch, tmp_path):
    import onnxruntime as ort

    model = tmp_path / "m.onnx"
    assert choose_backend(tmp_path / "m.engine")[0] == "tensorrt"
    assert choose_backend(tmp_path / "m.xml")[0] == "openvino"
    assert choose_backend(model, "onnxruntime") == ("onnxruntime", "--backend onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_backend(model) == ("onnxruntime", "onnxruntime has CUDAExecutionProvider")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    backend, why = choose_backend(model)
    assert backend == "measure" and "CPU" in why
    with pytest.raises(ToolError, match="--backend gpu"):
        open_backend(model, backend="gpu")
    assert "openvino" in backends.BACKENDS


class FakeBackend:
    def __init__(self, kind, seconds):
        self.kind, self.seconds = kind, seconds
        self.info = type("Info", (), {"input_size": (8, 8)})()

    def infer(self, batch):
        import time

        time.sleep(self.seconds)
        return batch


def test_auto_keeps_the_faster_runtime_as_measured():
    from roadseg.deploy.backends import faster_of

    slow, fast = FakeBackend("openvino", 0.004), FakeBackend("onnxruntime", 0.0005)
    best, why = faster_of([slow, fast], warmup=1, runs=3, rounds=2)
    assert best is fast and why.startswith("measured here") and "openvino" in why and "onnxruntime" in why


class LoadSensitiveBackend(FakeBackend):
    """Fast alone, slow while the measurement's busy-core thread runs: a tiny model in a thread pool that
    waits for a second core."""

    def infer(self, batch):
        import threading
        import time

        busy = any(thread.name == "busy-core" for thread in threading.enumerate())
        time.sleep(0.02 if busy else 0.0005)
        return batch


def test_the_run_time_picks_its_runtime_as_the_pipeline_will_use_it_beside_a_busy_core(monkeypatch, tmp_path):
    import threading

    from roadseg.deploy import backends
    from roadseg.deploy.backends import faster_of

    sensitive, steady = LoadSensitiveBackend("openvino", 0), FakeBackend("onnxruntime", 0.005)
    assert faster_of([sensitive, steady], warmup=1, runs=3, rounds=2)[0] is sensitive
    best, why = faster_of([sensitive, steady], warmup=1, runs=3, rounds=2, beside_busy_core=True)
    assert best is steady and "beside one busy core" in why
    assert not any(thread.name == "busy-core" for thread in threading.enumerate())  # stopped afterwards

    asked = []  # open_backend: the pipeline (no spinning) measures under load, a benchmark alone
    monkeypatch.setattr(backends, "choose_backend", lambda path, requested: ("measure", ""))
    monkeypatch.setattr(backends, "OnnxRuntimeBackend", lambda *args, **kwargs: steady)
    monkeypatch.setattr("roadseg.deploy.openvino_backend.OpenVinoBackend", lambda *args, **kwargs: sensitive)
    monkeypatch.setattr(backends, "faster_of", lambda c, **kw: (asked.append(kw), (c[0], "why"))[1])
    model = tmp_path / "m.onnx"
    open_backend(model, spin=False)
    open_backend(model, spin=True)
    assert asked == [{"beside_busy_core": True}, {"beside_busy_core": False}]


def test_openvino_errors_are_one_line(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ToolError, match="OpenVINO cannot load it") as err:
        open_backend(tmp_path / "junk.onnx", backend="openvino")
    assert "\n" not in str(err.value)
    (tmp_path / "empty.xml").write_bytes(b"")
    with pytest.raises(ToolError, match="empty"):
        open_backend(tmp_path / "empty.xml")


@pytest.mark.slow
def test_quantize_for_openvino_writes_an_ir_with_our_metadata(tiny_onnx, synthetic_root, tmp_path):
    import json

    from tests.conftest import assert_one_line_error, run_script

    pytest.importorskip("nncf", reason="the openvino-int8 extra is not installed")
    argv = ["--model", tiny_onnx, "--target", "openvino", "--dataset", "synthetic", "--data-path", synthetic_root,
            "--out", tmp_path, "--calib-images", "4", "--parity-images", "2", "--min-agreement", "0",
            "--max-iou-delta", "100", "--runs", "2", "--rounds", "1", "--threads", "1"]
    # an untrained model's logits sit near zero, so INT8 flips classes: the gate is opened here (tested elsewhere)
    result = run_script("export/quantize_onnx.py", *argv, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    backend = open_backend(tmp_path / "model_int8_ov.xml", threads=1)
    assert backend.kind == "openvino" and backend.info.precision == "int8-ov-ptq" and backend.info.input_size == SIZE
    report = json.loads((tmp_path / "model_int8_ov_report.json").read_text())
    assert report["parity"]["images"] == 2 and report["latency"]["int8"]["p50_ms"] > 0
    assert report["quantization"]["max_drop_points"] == 100
    assert_one_line_error(run_script("export/quantize_onnx.py", *argv), "model_int8_ov.xml", "--overwrite")


def test_bench_times_an_ir_only_in_openvino_and_counts_its_weights(tmp_path):
    from roadseg.deploy.benchmark import model_bytes, runs_in

    (tmp_path / "m.xml").write_bytes(b"x" * 10)
    (tmp_path / "m.bin").write_bytes(b"w" * 90)
    assert model_bytes(tmp_path / "m.xml") == 100
    assert runs_in(tmp_path / "m.xml", "openvino") and not runs_in(tmp_path / "m.xml", "onnxruntime")
    assert runs_in(tmp_path / "m.onnx", "onnxruntime") and runs_in(tmp_path / "m.onnx", "openvino")
    assert runs_in(tmp_path / "m.engine", "tensorrt") and not runs_in(tmp_path / "m.engine", "openvino")
    # bf16 is a way to run an FP32 file; an INT8 IR is timed as it is, once
    assert runs_in(tmp_path / "m.onnx", "openvino-bf16") and not runs_in(tmp_path / "m.xml", "openvino-bf16")


@pytest.mark.slow
def test_openvino_bf16_is_asked_for_named_and_close_to_f32(tiny_onnx, monkeypatch):
    """bf16 where the CPU has bf16 units: its own backend name and precision, logits near f32; on a CPU
    without them (faked here when this one has them) a one-line refusal, not a silent f32 run."""
    reference = open_backend(tiny_onnx, threads=1, backend="openvino")
    batch = np.random.default_rng(0).standard_normal((1, 3, *SIZE), dtype=np.float32)
    from roadseg.deploy.openvino_backend import has_bf16_units

    if has_bf16_units(ov.Core()):
        bf16 = open_backend(tiny_onnx, threads=1, backend="openvino-bf16")
        assert bf16.kind == "openvino-bf16" and bf16.describe()["precision"] == "fp32 as bf16"
        assert bf16.describe()["inference_precision"] == "bf16" and reference.describe()["precision"] == "fp32"
        low, full = bf16.infer(batch), reference.infer(batch)
        assert not np.array_equal(low, full)  # it did run in bf16 (f32 would be bit-identical here)
        np.testing.assert_allclose(low, full, atol=0.05 * float(np.abs(full).max()) + 1e-3)
        monkeypatch.setattr(ov.Core, "get_property", lambda self, device, key: ["FP32", "INT8"])
    with pytest.raises(ToolError, match="no bf16 units") as err:
        open_backend(tiny_onnx, threads=1, backend="openvino-bf16")
    assert "\n" not in str(err.value)


def test_each_model_in_its_fastest_runtime_is_what_speed_ups_compare():
    """A peer that is fastest in OpenVINO is compared in OpenVINO, whatever runtime ours prefers."""
    from roadseg.deploy.benchmark import best_backend_rows, best_table

    def row(path, backend, ms):
        return {"path": path, "name": f"{path} [{backend}]", "size": [64, 128], "backend": backend, "p50_ms": ms,
                "road_iou": None}

    rows = [row("peer.onnx", "onnxruntime", 20.0), row("peer.onnx", "openvino", 10.0),
            row("ours.onnx", "onnxruntime", 4.0), row("ours.onnx", "openvino", 5.0)]
    best = {b["path"]: b for b in best_backend_rows(rows)}
    assert best["peer.onnx"]["backend"] == "openvino" and best["ours.onnx"]["backend"] == "onnxruntime"
    assert best["ours.onnx"]["speedup_vs_first_best"] == 2.5  # 10 ms / 4 ms, not 20 / 4
    assert best["peer.onnx"]["backends_timed"] == {"onnxruntime": 20.0, "openvino": 10.0}
    assert "| ours.onnx | 64x128 | onnxruntime | 4.00 | x2.50 |" in best_table(list(best.values()))
