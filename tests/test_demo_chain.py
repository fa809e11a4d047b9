"""make demo end to end at a tiny size (64x128, a few training iterations, a 12-frame synthetic set and
drive): every stage runs through the stage recorder, and the run ends in a report that lists them all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_report import Page, decode_png

TINY = {
    "DEMO_SIZE": "64 128",
    "DEMO_SYNTH": "--num 8 --num-val 4 --size 64 128",
    "DEMO_TRAIN": "--epochs 2 --warmup-iters 0",
    "DEMO_PRUNE": "--final-epochs 1 --runs 3 --warmup 1",
    "DEMO_QAT": "--epochs 1 --calib-images 4",
    "DEMO_BENCH": "--runs 3 --rounds 1 --warmup 1",
    "DEMO_DRIVE_SYNTH": "--num 12 --size 64 128",
}
CHAIN = ["train", "eval", "prune", "qat", "export-fp32", "export-qat", "quantize", "engine", "peer", "export-peer",
         "bench", "zoo-peer-32x64", "zoo-export-peer-32x64", "zoo-bench-32x64", "synth-drive", "deploy"]


def tiny_zoo(folder: Path, data: Path) -> Path:
    """A zoo of one tiny untrained model (32x64), published the way the real ones are."""
    from tests.conftest import exported_onnx, run_script

    onnx = exported_onnx(folder / "model", data, (32, 64))
    result = run_script("export/zoo_publish.py", "--name", "road-tiny", "--ckpt", folder / "model" / "init.pt",
                        "--onnx", onnx, "--data", "synthetic scenes (test)", "--zoo", folder / "zoo")
    assert result.returncode == 0, result.stderr[-1500:]
    return folder / "zoo"


@pytest.mark.slow
def test_tiny_demo_chain_ends_in_a_report(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    script = Path(sys.executable).with_name("roadseg")
    rs = str(script) if script.exists() else f"{sys.executable} -m roadseg.models.core.command"
    run = tmp_path / "run"
    from tests.conftest import write_tiny_synthetic

    zoo = tiny_zoo(tmp_path, write_tiny_synthetic(tmp_path / "zoo-data"))
    settings = {**TINY, "DEMO_RUN": str(run), "DEMO_DATA": str(tmp_path / "synthetic"),
                "DEMO_DRIVE": str(tmp_path / "drive"), "ZOO_MANIFEST": str(zoo / "manifest.json"),
                "PY": sys.executable, "RS": rs}
    # -o: the venv is already installed; the test must not reinstall it
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "demo",
                             *(f"{key}={value}" for key, value in settings.items())],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "ROADSEG_ZOO_DIR": str(zoo)})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert f"report: {run}/report.html" in result.stdout

    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert [s["name"] for s in stages if s["name"] != "synth"] == CHAIN
    by_name = {s["name"]: s for s in stages}
    for name in CHAIN:
        if name != "engine":
            assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["seconds"] is not None
    zoo_rows = json.loads((run / "zoo" / "bench-32x64" / "benchmark.json").read_text())["rows"]
    assert [Path(r["path"]).name for r in zoo_rows] == ["model_fp32.onnx", "road-tiny.onnx"]
    if by_name["engine"]["status"] != "ok":  # a machine without TensorRT: skipped, with its one-line reason
        assert by_name["engine"]["status"] == "skipped" and "error:" in by_name["engine"]["reason"]

    page = Page()
    page.feed((run / "report.html").read_text(encoding="utf-8"))
    assert len(page.images) >= 4  # curves, IoU vs latency, widths, overlay frames
    for src in page.images:
        decode_png(src)
    chain = {row["cells"][0] for row in page.rows if len(row["cells"]) == 16}
    assert {"train", "prune", "qat", "export-fp32", "export-qat", "quantize", "export-peer", "deploy"} <= chain
    assert "Synthetic data" in (run / "report.md").read_text()
