"""deploy/: backends, the benchmark table, and the rule that run-time modules never import torch."""

from __future__ import annotations

import json

import pytest

from roadseg.deploy.backends import choose_providers, open_backend
from roadseg.models.core.cli import ToolError
from tests.conftest import REPO_ROOT, assert_one_line_error, exported_onnx, run_script

SIZE = (32, 64)


def test_provider_preference():
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert choose_providers(available) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]
    assert choose_providers(available, ["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]
    with pytest.raises(ToolError, match="CUDAExecutionProvider not available"):
        choose_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


@pytest.fixture(scope="module")
def two_models(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for name, width in (("small", 8), ("wide", 16)):
        exported_onnx(root / name, synthetic_root, SIZE, base_width=width)
    return root


@pytest.mark.slow
def test_onnx_backend_agrees_with_its_checkpoint_and_refuses_a_checkpoint(two_models):
    import numpy as np
    import torch

    from roadseg.models.checkpoint import load_model

    onnx_backend = open_backend(two_models / "small" / "model_fp32.onnx", threads=1, backend="onnxruntime")
    model, _ = load_model(two_models / "small" / "init.pt")
    batch = np.random.default_rng(0).standard_normal((1, 3, *SIZE), dtype=np.float32)
    with torch.inference_mode():
        np.testing.assert_allclose(onnx_backend.infer(batch), model(torch.from_numpy(batch)).numpy(), atol=1e-4)
    assert onnx_backend.info.input_size == SIZE
    assert onnx_backend.describe()["provider"] == "CPUExecutionProvider"
    with pytest.raises(ToolError, match="export it first"):
        open_backend(two_models / "small" / "init.pt")


@pytest.mark.slow
def test_benchmark_table_json_and_plot(two_models, synthetic_root, tmp_path):
    small, wide = two_models / "small" / "model_fp32.onnx", two_models / "wide" / "model_fp32.onnx"
    result = run_script("deploy/benchmark.py", "--model", small, wide, "--sizes", "32x64", "64x64",
                        "--dataset", "synthetic", "--data-path", synthetic_root, "--threads", "1", "--warmup", "1",
                        "--runs", "3", "--rounds", "2", "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-1500:]
    again = run_script("deploy/benchmark.py", "--model", small, "--sizes", "32x64", "--out", tmp_path)
    assert_one_line_error(again, "benchmark.json", "--overwrite")  # refused before any timing
    report = json.loads((tmp_path / "benchmark.json").read_text())
    rows = report["rows"]
    names = ["small/model_fp32"] * 2 + ["wide/model_fp32"] * 2  # same stem: named by folder
    assert [(r["name"], r["size"]) for r in rows] == list(zip(names, [[32, 64], [64, 64]] * 2, strict=True))
    assert all(r["pareto"] in (True, False) for r in rows)  # all scored; the rule: test_pareto_front_and_row_names
    # ratios are against the first model at the same size
    assert rows[0]["speedup"] == rows[1]["speedup"] == 1.0 and rows[0]["iou_delta_points"] == 0.0
    assert rows[3]["speedup"] == pytest.approx(rows[1]["p50_ms"] / rows[3]["p50_ms"])
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["fps"] == pytest.approx(1000 / r["p50_ms"])
        assert 0 <= r["road_iou"] <= 1 and r["threads"] == 1
    # the wider model has about 4x the MACs; at twice the pixels, twice again
    assert rows[2]["gmacs"] > 3 * rows[0]["gmacs"] and rows[1]["gmacs"] == pytest.approx(2 * rows[0]["gmacs"])
    assert rows[2]["params"] > rows[0]["params"]
    table = (tmp_path / "benchmark.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and "speed-up" in table[0] and table[0].endswith("| Pareto |")
    assert (tmp_path / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    assert report["runs_per_round"] == 3 and report["rounds"] == 2 and report["cpu"]


def test_pareto_front_and_row_names():
    from pathlib import Path

    from roadseg.deploy.benchmark import mark_pareto_front, row_names

    def row(name, ms, iou, size=(352, 480)):
        return {"name": name, "p50_ms": ms, "road_iou": iou, "size": list(size)}

    rows = [row("peer", 24.0, 0.941), row("full", 105.0, 0.963), row("pruned", 15.7, 0.953),
            row("slow_and_worse", 30.0, 0.940), row("tie_slower", 24.0, 0.953), row("untrained", 5.0, None),
            row("other_size", 90.0, 0.90, (512, 1024))]
    mark_pareto_front(rows)
    assert {r["name"]: r["pareto"] for r in rows} == {
        "peer": False, "full": True, "pruned": True, "slow_and_worse": False, "tie_slower": False,
        "untrained": None, "other_size": True}
    assert row_names([Path("a/model_fp32.onnx"), Path("b/model_fp32.onnx"), Path("b/int8.onnx")]) == [
        "a/model_fp32", "b/model_fp32", "int8"]
    assert row_names([Path("a/x/m.onnx"), Path("b/x/m.onnx")]) == ["a/x/m.onnx", "b/x/m.onnx"]


@pytest.mark.slow
def test_benchmark_errors(two_models, tmp_path):
    small = two_models / "small" / "model_fp32.onnx"
    assert_one_line_error(run_script("deploy/benchmark.py", "--model", small, "--sizes", "30x64"),
                          "--sizes 30x64", "multiples of 4")
    assert_one_line_error(run_script("deploy/benchmark.py", "--model", small, "--sizes", "big"), "expected HxW")
    assert_one_line_error(run_script("deploy/benchmark.py", "--model", tmp_path / "none.onnx"), "none.onnx",
                          "no such file")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert_one_line_error(run_script("deploy/benchmark.py", "--model", tmp_path / "junk.onnx"), "junk.onnx",
                          "cannot load")


def test_deploy_install_pulls_no_torch():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["deploy"]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in runtime}
    assert {"onnxruntime", "opencv-python", "numpy"} <= names
    assert not names & {"torch", "torchvision", "torch-pruning", "nvidia-modelopt", "onnx", "onnxslim"}


@pytest.mark.slow
def test_benchmark_times_torchvision_peers_in_the_same_run(two_models, synthetic_root, tmp_path):
    from roadseg.deploy.benchmark import PEER_NAMES
    from roadseg.models.peers import PEERS

    assert sorted(PEER_NAMES) == sorted(PEERS)
    made = run_script("models/init_checkpoint.py", "--arch", "lraspp_mobilenet_v3_large", "--img-size", "64", "96",
                      "--out", tmp_path / "peer")
    assert made.returncode == 0, made.stderr[-1500:]
    exported = run_script("export/to_onnx.py", "--ckpt", tmp_path / "peer" / "init.pt", "--dataset", "synthetic",
                          "--data-path", synthetic_root, "--out", tmp_path / "peer", "--parity-images", "1")
    assert exported.returncode == 0, exported.stderr[-1500:]
    result = run_script("deploy/benchmark.py", "--model", tmp_path / "peer" / "model_fp32.onnx",
                        two_models / "small" / "model_fp32.onnx", "--sizes", "64x96", "--dataset", "synthetic",
                        "--data-path", synthetic_root, "--threads", "1", "--warmup", "1", "--runs", "2",
                        "--rounds", "1", "--json", tmp_path / "b.json", timeout=240)
    assert result.returncode == 0, result.stderr[-1500:]
    peer, ours = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert peer["name"] == "peer/model_fp32 (untrained peer)" and peer["road_iou"] is None
    assert peer["gmacs"] > ours["gmacs"] and peer["params"] > 10 * ours["params"]
    assert ours["road_iou"] is not None and ours["speedup"] == pytest.approx(peer["p50_ms"] / ours["p50_ms"])
