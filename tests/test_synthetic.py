"""Tests for train/synthetic/ (roadseg synth): determinism, Cityscapes layout, official label ids, variety, CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, name2label

from roadseg.models.core.cli import ToolError
from roadseg.models.core.dataset_layouts import find_samples, read_road_mask
from roadseg.train.synthetic import (
    drive_frame_paths,
    frame_paths,
    render_drive,
    render_frame,
    write_dataset,
    write_drive,
)
from roadseg.train.synthetic.cli import get_args_parser, main
from tests.conftest import assert_one_line_error, run_script

H, W = 64, 128
ROAD = name2label["road"].id
IGNORED_IDS = {label.id for label in id2label.values() if label.ignoreInEval}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_label(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _labels(seed: int, count: int) -> list[np.ndarray]:
    return [render_frame(seed, "train", idx, H, W)[1] for idx in range(count)]


def test_same_seed_gives_byte_identical_files(tmp_path):
    write_dataset(tmp_path / "a", 3, 2, H, W, seed=7)
    write_dataset(tmp_path / "b", 3, 2, H, W, seed=7)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 10
    assert a == b


def test_different_seed_gives_different_images(tmp_path):
    write_dataset(tmp_path / "a", 3, 1, H, W, seed=0)
    write_dataset(tmp_path / "b", 3, 1, H, W, seed=1)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    images = [name for name in a if name.endswith("_leftImg8bit.png")]
    assert len(images) == 4
    assert all(a[name] != b[name] for name in images)


def test_frame_does_not_depend_on_num(tmp_path):
    write_dataset(tmp_path / "three", 3, 1, H, W, seed=3)
    write_dataset(tmp_path / "five", 5, 1, H, W, seed=3)
    three, five = _files(tmp_path / "three"), _files(tmp_path / "five")
    assert len(three) == 8 and len(five) == 12
    assert all(five[name] == data for name, data in three.items())


def test_layout_names_counts_and_formats(tmp_path):
    result = write_dataset(tmp_path, 3, 2, H, W, seed=0)
    expected = set()
    for split, count in (("train", 3), ("val", 2)):
        for idx in range(count):
            stem = f"synth_{idx:06d}_000019"
            expected.add(f"leftImg8bit/{split}/synth/{stem}_leftImg8bit.png")
            expected.add(f"gtFine/{split}/synth/{stem}_gtFine_labelIds.png")
    assert set(_files(tmp_path)) == expected
    assert result["counts"] == {"train": 3, "val": 2}
    assert [Path(p) for p in result["images"]["val"]] == [frame_paths(tmp_path, "val", i)[0] for i in (0, 1)]
    train_labels = [frame_paths(tmp_path, "train", i)[1] for i in range(3)]
    assert [Path(p) for p in result["labels"]["train"]] == train_labels

    image_path, label_path = frame_paths(tmp_path, "val", 1)
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    label = _read_label(label_path)
    assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    assert label.dtype == np.uint8 and label.shape == (H, W)
    # The files hold exactly what the renderer produced, in RGB order once decoded.
    rgb, ids = render_frame(0, "val", 1, H, W)
    assert np.array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), rgb)
    assert np.array_equal(label, ids)


def test_label_ids_are_official_cityscapes_ids(tmp_path):
    write_dataset(tmp_path, 12, 0, H, W, seed=0)
    labels = [_read_label(frame_paths(tmp_path, "train", idx)[1]) for idx in range(12)]
    valid = {label_id for label_id in id2label if 0 <= label_id <= 255}
    for label in labels:
        assert set(np.unique(label).tolist()) <= valid
        assert (label == ROAD).any()
    ignored = [np.isin(label, list(IGNORED_IDS)).sum() for label in labels]
    assert sum(count > 0 for count in ignored) >= 2, ignored


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_road_is_not_just_the_bottom_half(seed):
    labels = _labels(seed, 8)
    road = [label == ROAD for label in labels]
    bottom_fraction = [mask[H // 2:].mean() for mask in road]
    # Over 40 seeds the spread was never below 0.16 and the column spread never below 5 px.
    assert max(bottom_fraction) - min(bottom_fraction) > 0.08, bottom_fraction
    row = int(H * 0.75)
    centres = [np.nonzero(mask[row])[0].mean() for mask in road if mask[row].any()]
    assert len(centres) >= 4
    assert np.std(centres) > 2.5, centres
    # Some bottom-half pixels are something else, and no frame is a fixed bottom-half mask.
    assert any(fraction < 0.9 for fraction in bottom_fraction)
    # Hills and curves: where the road ends (its highest row, and the columns there) moves between frames.
    # Over 60 seeds these spreads were never below 7 rows and 38 columns.
    tops = [int(np.nonzero(mask.any(axis=1))[0].min()) for mask in road]
    ends = [np.nonzero(mask[top:top + 3].any(axis=0))[0].mean() for mask, top in zip(road, tops, strict=True)]
    assert max(tops) - min(tops) >= 4, tops
    assert max(ends) - min(ends) > 16, ends


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_script("train/synthetic/cli.py", *args)


def test_cli_writes_dataset(tmp_path):
    out = tmp_path / "synth"
    proc = _run_cli("--out", str(out), "--num", "2", "--size", "48", "96", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    files = _files(out)
    assert len([name for name in files if name.startswith("leftImg8bit/train/")]) == 2
    assert len([name for name in files if name.startswith("leftImg8bit/val/")]) == 1  # max(1, 2 // 4)
    assert len([name for name in files if name.startswith("gtFine/")]) == 3
    assert _read_label(frame_paths(out, "train", 1)[1]).shape == (48, 96)
    last_line = proc.stdout.strip().splitlines()[-1]
    assert "2 train" in last_line and str(out) in last_line
    # a second set into the same folder: refused, then with --overwrite the old frames are gone, not mixed in
    assert_one_line_error(_run_cli("--out", str(out), "--num", "1", "--size", "48", "96"), "already holds",
                          "--overwrite")
    proc = _run_cli("--out", str(out), "--num", "1", "--size", "48", "96", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert len([name for name in _files(out) if name.startswith("leftImg8bit/train/")]) == 1


def test_cli_bad_size_is_a_one_line_error(tmp_path):
    proc = _run_cli("--out", str(tmp_path / "out"), "--size", "10", "10")
    assert_one_line_error(proc, "--size 10 10", "between 32 and 8192")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_out_that_is_a_file(tmp_path):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    proc = _run_cli("--out", str(out), "--num", "1", "--size", "32", "32")
    assert_one_line_error(proc, "roadseg synth: error: --out", "expected a folder")
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize(
    "args, kwargs, flag",
    [
        (["--size", "64", "20"], {"width": 20}, "--size"),
        (["--num", "0"], {"num_train": 0}, "--num 0"),
        (["--num", "4", "--num-val", "-1"], {"num_val": -1}, "--num-val"),
        (["--seed", "-3"], {"seed": -3}, "--seed"),
    ],
)
def test_bad_arguments_name_the_option(tmp_path, args, kwargs, flag):
    # In-process: a subprocess per case would dominate the suite's run time; the subprocess test above
    # checks that such a ToolError reaches stderr as one line.
    out = tmp_path / "out"
    with pytest.raises(ToolError) as exc:
        main(get_args_parser().parse_args(["--out", str(out), *args]))
    message = str(exc.value)
    assert flag in message and "\n" not in message
    good = {"num_train": 1, "num_val": 0, "height": 64, "width": 64, "seed": 0}
    with pytest.raises(ValueError, match=flag):
        write_dataset(out, **{**good, **kwargs})
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# Drives: one world seen from a camera moving along the road, as a video plus labelled frames.
# --------------------------------------------------------------------------------------------------

DRIVE_FRAMES = 12
DRIVE_SEED = 4


def _read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("drive")
    return root, write_drive(root, DRIVE_FRAMES, H, W, seed=DRIVE_SEED, fps=10.0)


def test_drive_video_holds_every_frame_in_order(drive):
    root, result = drive
    assert result["video"] == str(root / "drive.mp4")
    assert (result["frames"], result["size"], result["fps"]) == (DRIVE_FRAMES, [H, W], 10.0)
    assert sorted(p.name for p in root.iterdir()) == ["drive.mp4", "gtFine", "leftImg8bit"]  # no temp file left
    frames = _read_video(root / "drive.mp4")
    assert len(frames) == DRIVE_FRAMES
    assert all(frame.shape == (H, W, 3) for frame in frames)
    # The video is lossy, but each of its frames is nearest to the PNG frame of the same index.
    pngs = [cv2.imread(path).astype(np.float32) for path in result["images"]]
    for idx, frame in enumerate(frames):
        errors = [np.abs(frame - png).mean() for png in pngs]
        assert int(np.argmin(errors)) == idx, errors


def test_drive_frames_are_a_cityscapes_val_split_in_video_order(drive):
    root, result = drive
    samples = find_samples("cityscapes", root, "val")
    expected = [drive_frame_paths(root, idx) for idx in range(DRIVE_FRAMES)]
    assert [(s.image, s.label) for s in samples] == expected
    assert [str(s.image) for s in samples] == result["images"]
    assert [str(s.label) for s in samples] == result["labels"]
    assert [s.frame_id for s in samples] == [f"drive_000000_{idx:06d}" for idx in range(DRIVE_FRAMES)]
    assert samples[0].image == root / "leftImg8bit/val/drive/drive_000000_000000_leftImg8bit.png"
    assert samples[0].label == root / "gtFine/val/drive/drive_000000_000000_gtFine_labelIds.png"
    # The files hold exactly the rendered drive, and the road is in view all along it.
    for sample, (rgb, ids) in zip(samples, render_drive(DRIVE_SEED, DRIVE_FRAMES, H, W), strict=True):
        image = cv2.imread(str(sample.image), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), rgb)
        assert np.array_equal(_read_label(sample.label), ids)
        assert (read_road_mask(sample.label, "cityscapes", (H, W)) == 1).mean() > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drive_is_temporally_coherent(seed):
    frames = list(render_drive(seed, 8, H, W))
    rgb = [frame.astype(np.float32) for frame, _ in frames]
    labels = [ids for _, ids in frames]
    consecutive = np.mean([np.abs(a - b).mean() for a, b in zip(rgb[:-1], rgb[1:], strict=True)])
    scenes = [render_frame(seed, "val", idx, H, W)[0].astype(np.float32) for idx in range(4)]
    independent = np.mean([np.abs(a - b).mean() for a, b in zip(scenes[:-1], scenes[1:], strict=True)])
    # Over seeds 0-5 consecutive drive frames differed 7-14x less than independent scenes (64x128).
    assert consecutive < 0.5 * independent, (consecutive, independent)
    assert all((a == b).mean() > 0.8 for a, b in zip(labels[:-1], labels[1:], strict=True))
    # ...and it is not a still: the camera moves, so labels change along the drive.
    assert (labels[0] != labels[-1]).mean() > 0.005


def test_drive_is_deterministic_per_seed():
    first = list(render_drive(6, 3, H, W))
    again = list(render_drive(6, 3, H, W))
    other = next(render_drive(7, 3, H, W))
    for (rgb_a, ids_a), (rgb_b, ids_b) in zip(first, again, strict=True):
        assert np.array_equal(rgb_a, rgb_b) and np.array_equal(ids_a, ids_b)
    assert not np.array_equal(first[0][1], other[1])


def test_drive_reports_a_video_writer_that_does_not_open(tmp_path, monkeypatch):
    class ClosedWriter:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", ClosedWriter)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="mp4v"):
        write_drive(out, 2, H, W, seed=0)
    assert list(out.iterdir()) == []  # the temporary video is removed, no frame was written


def test_cli_writes_a_drive(tmp_path, capsys):
    out = tmp_path / "drive"
    args = ["--drive", "--out", str(out), "--num", "3", "--size", "48", "96", "--seed", "2", "--fps", "5"]
    assert main(get_args_parser().parse_args(args)) == 0
    assert len(_read_video(out / "drive.mp4")) == 3
    assert _read_label(drive_frame_paths(out, 2)[1]).shape == (48, 96)
    assert not (out / "leftImg8bit" / "train").exists()
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "3-frame drive" in last_line and str(out / "drive.mp4") in last_line


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--drive", "--num-val", "2"], "--num-val"),
        (["--drive", "--fps", "0"], "--fps"),
        (["--fps", "5"], "--fps"),
        (["--drive", "--size", "64", "127"], "--size"),
        (["--drive", "--num", "0"], "--num"),
    ],
)
def test_bad_drive_arguments_name_the_option(tmp_path, args, flag):
    out = tmp_path / "out"
    with pytest.raises(ToolError) as exc:
        main(get_args_parser().parse_args(["--out", str(out), *args]))
    message = str(exc.value)
    assert flag in message and "\n" not in message
    with pytest.raises(ValueError, match="--fps"):
        write_drive(out, 2, H, W, seed=0, fps=float("nan"))
    assert not out.exists()
