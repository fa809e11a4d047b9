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
         "bench", "zoo-bench", "synth-drive", "deploy"]


@pytest.mark.slow
def test_tiny_demo_chain_ends_in_a_report(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    script = Path(sys.executable).with_name("roadseg")
    rs = str(script) if script.exists() else f"{sys.executable} -m roadseg.models.core.command"
    run = tmp_path / "run"
    settings = {**TINY, "DEMO_RUN": str(run), "DEMO_DATA": str(tmp_path / "synthetic"),
                "DEMO_DRIVE": str(tmp_path / "drive"), "ZOO_MANIFEST": str(tmp_path / "no-zoo.json"),
                "PY": sys.executable, "RS": rs}
    # -o: the venv is already installed; the test must not reinstall it
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "demo",
                             *(f"{key}={value}" for key, value in settings.items())],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert f"report: {run}/report.html" in result.stdout

    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert [s["name"] for s in stages if s["name"] != "synth"] == CHAIN
    by_name = {s["name"]: s for s in stages}
    for name in CHAIN:
        if name not in ("engine", "zoo-bench"):
            assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["seconds"] is not None
    assert by_name["zoo-bench"]["status"] == "skipped" and "no-zoo.json" in by_name["zoo-bench"]["reason"]
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
