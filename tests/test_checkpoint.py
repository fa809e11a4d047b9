from __future__ import annotations

import os
import pickle

import pytest
import torch

import roadseg.models.core.fileio
from roadseg.models.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    make_checkpoint,
    save_checkpoint,
)
from roadseg.models.core.fileio import atomic_write, atomic_write_bytes
from roadseg.models.unet import UNet
from tests.conftest import assert_one_line_error, run_script

META = {"stage": "train", "parent_sha256": None, "dataset": "synthetic", "input_size": [32, 64],
        "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "road_label": 1, "metrics": {"road_iou": 0.5}}


class NotPlainData:
    def __reduce__(self):  # what a malicious or careless checkpoint would smuggle in
        return (print, ("executed during load",))


@pytest.fixture
def uneven_model():
    torch.manual_seed(1)
    return UNet(depth=2, encoder_widths=[[3, 5], [7, 6], [9, 12]], up_widths=[10, 4],
                decoder_widths=[[8, 11], [6, 5]]).eval()


def test_saved_checkpoint_is_plain_data_and_rebuilds_identical_outputs(tmp_path, uneven_model):
    path = save_checkpoint(tmp_path / "best.pt", make_checkpoint(uneven_model, META))
    raw = torch.load(path, weights_only=True)  # the plain-data guarantee, without our loader
    assert raw["format"] == FORMAT and raw["version"] == VERSION
    assert raw["arch"]["encoder_widths"] == [[3, 5], [7, 6], [9, 12]]
    assert raw["meta"]["stage"] == "train" and raw["meta"]["versions"]["torch"] == torch.__version__
    model, ckpt = load_model(path)
    x = torch.randn(2, 3, 32, 64)
    assert torch.equal(model(x), uneven_model(x))


def test_weights_only_load_refuses_pickled_objects(tmp_path, uneven_model):
    ckpt = make_checkpoint(uneven_model, META)
    ckpt["meta"]["payload"] = NotPlainData()
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="pickled Python objects.*GLOBAL print"):
        load_checkpoint(path)
    with pytest.raises(TypeError, match="plain data only"):
        save_checkpoint(tmp_path / "refused.pt", ckpt)
    assert not (tmp_path / "refused.pt").exists()


def test_foreign_truncated_newer_and_missing_files_get_clear_errors(tmp_path, uneven_model):
    good = save_checkpoint(tmp_path / "good.pt", make_checkpoint(uneven_model, META))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"model": uneven_model.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match=f"not a {FORMAT} file"):
        load_checkpoint(foreign)

    newer = make_checkpoint(uneven_model, META)
    newer["version"] = VERSION + 1
    save_checkpoint(tmp_path / "newer.pt", newer)
    with pytest.raises(CheckpointError, match="newer than this code reads"):
        load_checkpoint(tmp_path / "newer.pt")

    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")

    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("hello")
    with pytest.raises(CheckpointError, match=str(not_torch)):
        load_checkpoint(not_torch)


def test_atomic_write_keeps_old_file_when_write_fails(tmp_path, uneven_model, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", make_checkpoint(uneven_model, META))
    before = path.read_bytes()

    def fail_midway(file):
        file.write(b"partial data")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail_midway)

    def failing_fsync(fd):
        raise OSError("I/O error at fsync")

    monkeypatch.setattr(roadseg.models.core.fileio.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync"):
        save_checkpoint(path, make_checkpoint(UNet.from_base_width(4, depth=2), META))
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left behind
    load_checkpoint(path)


def test_atomic_write_replaces_content(tmp_path):
    path = atomic_write_bytes(tmp_path / "sub" / "file.bin", b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["file.bin"]


@pytest.mark.slow
def test_cli_reports_bad_checkpoint_in_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as file:
        pickle.dump({"not": "ours"}, file)
    result = run_script("train/evaluate.py", "--ckpt", bad, "--dataset", "synthetic", "--data-path", tmp_path)
    assert_one_line_error(result, str(bad), "not a roadseg-checkpoint file")
