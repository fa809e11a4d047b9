"""Shared fixtures: the repository root, the real data in ../shared/data (skipped when absent)
and a tiny synthetic dataset generated once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:  # property tests: no per-example deadline, since a loaded 2-core CI machine stalls single examples
    from hypothesis import HealthCheck, settings
except ImportError:  # an install without the dev extra runs no property tests
    pass
else:
    settings.register_profile("roadseg", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("roadseg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives only on development machines)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def write_tiny_synthetic(root: Path) -> Path:
    """6 train + 4 val synthetic frames of 64x128 in the Cityscapes layout."""
    from roadseg.train.synthetic import write_dataset

    write_dataset(root, num_train=6, num_val=4, height=64, width=128, seed=3)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("synthetic"))


def run_script(script: str, *args: str, cwd: Path = REPO_ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the project's scripts the way a user does: ``python <dir>/<script>.py ...``."""
    env = dict(os.environ)
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def exported_onnx(root: Path, data_root: Path, size: tuple[int, int], base_width: int = 8) -> Path:
    """An untrained U-Net (depth 2) written by models/init_checkpoint.py into ``root`` and exported by
    export/to_onnx.py (parity gate on one image of ``data_root``); returns the .onnx path."""
    made = run_script("models/init_checkpoint.py", "--out", root, "--base-width", str(base_width), "--depth", "2",
                      "--img-size", *map(str, size))
    assert made.returncode == 0, made.stderr[-1500:]
    result = run_script("export/to_onnx.py", "--ckpt", root / "init.pt", "--dataset", "synthetic", "--data-path",
                        data_root, "--out", root, "--parity-images", "1")
    assert result.returncode == 0, result.stderr[-1500:]
    return root / "model_fp32.onnx"


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Failed with exactly one error line, the last on stderr (progress lines may precede it),
    containing every fragment, and no traceback."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
