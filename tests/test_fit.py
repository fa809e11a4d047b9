"""train/fit.py: checkpoint contents, resume after SIGKILL, DDP equality, NaN stop, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import roadseg.train.engine
from roadseg.models.checkpoint import load_checkpoint, load_model
from roadseg.train.engine import NonFiniteLossError
from roadseg.train.fit import KILL_AFTER_STEP_ENV, get_args_parser, main
from tests.conftest import REPO_ROOT, assert_one_line_error, run_script

TINY = ("--base-width", "4", "--depth", "2", "--img-size", "32", "64", "--workers", "0",
        "--warmup-iters", "2", "--lr", "5e-3")


def fit_args(synthetic_root, out, *extra) -> list[str]:
    return ["--dataset", "synthetic", "--data-path", str(synthetic_root), "--out", str(out), *TINY, *map(str, extra)]


def run_fit(synthetic_root, out, *extra, env=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(REPO_ROOT / "train/fit.py"), *fit_args(synthetic_root, out, *extra)],
                          cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def state_dict(path):
    return load_checkpoint(path)["state_dict"]


def test_fit_writes_plain_checkpoints_logs_and_curves(synthetic_root, tmp_path):
    out = tmp_path / "run"
    result = run_fit(synthetic_root, out, "--epochs", 2, "--batch-size", 2)
    assert result.returncode == 0, result.stderr
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    state = last["train_state"]
    assert state["step"] == 6 and state["iters_per_epoch"] == 3  # 6 frames / batch 2, 2 epochs
    for key in ("optimizer", "scheduler", "scaler", "rng", "history", "best_iou"):
        assert key in state
    assert "train_state" not in best  # best.pt is for deployment, not resuming
    assert best["meta"]["stage"] == "train" and best["meta"]["input_size"] == [32, 64]
    assert best["meta"]["dataset"] == "synthetic" and best["meta"]["recipe"]["base_width"] == 4
    assert 0.0 <= best["meta"]["metrics"]["val"]["road_iou"] <= 1.0
    model, _ = load_model(out / "best.pt")
    assert model(torch.zeros(1, 3, 32, 64)).shape == (1, 2, 32, 64)

    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "train_report.json").read_text())
    assert report["best_val"]["road_iou"] == pytest.approx(state["best_iou"])
    assert report["complexity"]["params"] == sum(v.numel() for k, v in best["state_dict"].items()
                                                 if "running" not in k and "num_batches" not in k)


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_ends_with_identical_weights(synthetic_root, tmp_path):
    common = ("--epochs", 3, "--batch-size", 2, "--save-every", 2)
    straight = run_fit(synthetic_root, tmp_path / "straight", *common)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    # 3 iterations per epoch: last.pt is written at step 4 (save-every), the process dies after
    # step 5, in the middle of epoch 1, so the resumed run must redo step 5 from step 4's state.
    killed = run_fit(synthetic_root, out, *common, env={KILL_AFTER_STEP_ENV: "5"})
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint(out / "last.pt")["train_state"]["step"] == 4
    resumed = run_fit(synthetic_root, out, *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    expected, got = state_dict(tmp_path / "straight" / "last.pt"), state_dict(out / "last.pt")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [h["val"]["road_iou"] for h in history] == [h["val"]["road_iou"] for h in reference]


@pytest.mark.slow
def test_two_process_torchrun_equals_one_process_with_the_global_batch(synthetic_root, tmp_path):
    # GroupNorm: no per-process batch statistics, so the steps are mathematically identical.
    common = ("--epochs", 3, "--norm", "gn", "--eval-every", 3)
    single = run_fit(synthetic_root, tmp_path / "single", *common, "--batch-size", 4)
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(REPO_ROOT / "train/fit.py"),
                          *fit_args(synthetic_root, tmp_path / "ddp", *common, "--batch-size", 2)],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = state_dict(tmp_path / "single" / "last.pt"), state_dict(tmp_path / "ddp" / "last.pt")
    worst = max(float((one[k].float() - two[k].float()).abs().max()) for k in one)
    # Only the order of floating-point sums differs (gradient all-reduce); 3 AdamW steps.
    assert worst < 1e-5, worst
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["train_state"]["world_size"] == 2
    val_one = json.loads((tmp_path / "single" / "train_report.json").read_text())["final_val"]
    val_two = json.loads((tmp_path / "ddp" / "train_report.json").read_text())["final_val"]
    assert val_one["pixels"] == val_two["pixels"]  # every val pixel counted once across ranks
    assert val_one["road_iou"] == pytest.approx(val_two["road_iou"], abs=1e-3)


def test_nan_loss_stops_naming_the_iteration_and_keeps_last_good_checkpoint(synthetic_root, tmp_path,
                                                                            monkeypatch):
    calls = {"n": 0}
    original = roadseg.train.engine.cross_entropy_sum

    def poisoned_after_first_epoch(logits, target):
        calls["n"] += 1
        loss = original(logits, target)
        return loss * float("nan") if calls["n"] > 3 else loss

    monkeypatch.setattr(roadseg.train.engine, "cross_entropy_sum", poisoned_after_first_epoch)
    args = get_args_parser().parse_args(fit_args(synthetic_root, tmp_path, "--epochs", 3, "--batch-size", 2))
    with pytest.raises(NonFiniteLossError, match="iteration 3 \\(epoch 1\\)"):
        main(args)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["train_state"]["step"] == 3  # the end of epoch 0, before the loss diverged
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_bad_runs_are_one_line_errors(synthetic_root, tmp_path):
    out = tmp_path / "run"
    assert run_fit(synthetic_root, out, "--epochs", 1, "--batch-size", 2).returncode == 0
    again = run_fit(synthetic_root, out, "--epochs", 1, "--batch-size", 2)
    assert_one_line_error(again, "already holds a run", "--resume")
    other_arch = run_fit(synthetic_root, out, "--epochs", 1, "--batch-size", 2, "--resume", "--base-width", "8")
    assert_one_line_error(other_arch, "different architecture", "encoder_widths")
    nothing = run_fit(synthetic_root, tmp_path / "fresh", "--epochs", 1, "--resume")
    assert_one_line_error(nothing, "--resume", "last.pt")
    bad_size = run_fit(synthetic_root, tmp_path / "size", "--img-size", "30", "64")
    assert_one_line_error(bad_size, "--img-size", "not a multiple of 4")
    unknown = run_script("train/fit.py", "--dataset", "camvid", "--data-path", synthetic_root, "--out", tmp_path / "x")
    assert_one_line_error(unknown, "looks like the cityscapes layout")
