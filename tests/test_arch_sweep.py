"""export/arch_sweep.py: variants timed in one run, trained runs matched to their variant by
architecture, and the trade-off table built from both."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error, run_script


def write_fit_run(folder, model, road_iou: float, seconds: float = 600.0):
    """What train/fit.py leaves in --out, as far as the sweep reads it. The recipe holds fit.py's
    default flags, as a pruned fine-tune's does: the sweep must match on best.pt's arch."""
    from roadseg.models.checkpoint import make_checkpoint, save_checkpoint

    folder.mkdir(parents=True)
    report = {"recipe": {"epochs": 30, "arch": "unet", "base_width": 64}, "best_val": {"road_iou": road_iou},
              "train_seconds_this_session": seconds}
    (folder / "train_report.json").write_text(json.dumps(report))
    save_checkpoint(folder / "best.pt", make_checkpoint(model, {"stage": "train"}))
    return folder


@pytest.mark.slow
def test_sweep_table_joins_trained_runs_by_architecture(tmp_path):
    from roadseg.models.mobile_unet import MobileUNet

    half = write_fit_run(tmp_path / "runs" / "a", MobileUNet.from_width_mult(0.5), 0.91)
    variants = ["lraspp_mobilenet_v3_large", "mobile_unet_x0.5", "mobile_unet_x1"]
    out = tmp_path / "sweep"
    result = run_script("export/arch_sweep.py", "--variants", *variants, "--sizes", "64x64", "--no-int8",
                        "--threads", "1", "--warmup", "0", "--runs", "2", "--rounds", "1", "--trained", half,
                        "--out", out, "--json", tmp_path / "sweep.json", timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    table = {r["variant"]: r for r in json.loads((tmp_path / "sweep.json").read_text())["tradeoff"]}
    assert list(table) == variants
    assert table["lraspp_mobilenet_v3_large"]["peer"] and table["lraspp_mobilenet_v3_large"]["speedup_vs_peer"] == 1
    x05, x1 = table["mobile_unet_x0.5"], table["mobile_unet_x1"]
    assert x05["trained"]["road_iou"] == 0.91 and x05["trained"]["train_min"] == 10 and x1["trained"] is None
    assert x05["params"] < x1["params"] and x05["gmacs"] < x1["gmacs"]
    assert x1["speedup_vs_peer"] == pytest.approx(table["lraspp_mobilenet_v3_large"]["fp32_ms_64x64"]
                                                  / x1["fp32_ms_64x64"])
    assert x05["int8_ms_64x64"] is None  # --no-int8
    markdown = (out / "tradeoff.md").read_text().splitlines()
    assert len(markdown) == 2 + len(variants) and "lraspp_mobilenet_v3_large (peer)" in markdown[2]
    assert "| 91.00 | 30 | 10.0 |" in markdown[3] and markdown[4].endswith("| - | - | - |")


@pytest.mark.slow
def test_sweep_rejects_runs_it_cannot_place(tmp_path):
    from roadseg.compress.prune import prune_once
    from roadseg.models.mobile_unet import MobileUNet

    pruned = prune_once(MobileUNet.from_width_mult(1.0), 0.3, "l2", "global", 8, (64, 64))
    other = write_fit_run(tmp_path / "pruned", pruned, 0.9)
    common = ("--variants", "mobile_unet_x1", "--sizes", "64x64", "--no-int8", "--out", tmp_path / "o")
    assert_one_line_error(run_script("export/arch_sweep.py", *common, "--trained", other), str(other),
                          "none of the --variants")
    assert_one_line_error(run_script("export/arch_sweep.py", *common, "--trained", tmp_path), str(tmp_path),
                          "train_report.json")
    (tmp_path / "unvalidated").mkdir()
    (tmp_path / "unvalidated" / "train_report.json").write_text(json.dumps({"best_val": None}))
    assert_one_line_error(run_script("export/arch_sweep.py", *common, "--trained", tmp_path / "unvalidated"),
                          "no validated epoch")
