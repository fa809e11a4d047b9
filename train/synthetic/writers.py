"""Writing frames to disk: the Cityscapes file layout, argument checks, PNG encoding and the drive video.

``write_dataset`` writes train/val frames with their label ids; ``write_drive`` writes one drive as
``drive.mp4`` plus its frames and labels as a Cityscapes sequence. Every file goes through the
project's atomic writers (``roadseg.models.core.fileio``), so an interrupted run never leaves a
truncated PNG or video behind.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from roadseg.models.core.fileio import atomic_path, atomic_write_bytes
from roadseg.train.synthetic.render import DRIVE_SPEED, render_drive, render_frame

CITY = "synth"
SEQUENCE_FRAME = "000019"  # Cityscapes annotates frame 19 of each snippet; keep its file naming
MIN_SIZE = 32
MAX_SIZE = 8192
# A drive is written as one Cityscapes sequence in split "val" (the dataset reader knows only
# train/val/test) under the city "drive".
DRIVE_SPLIT = "val"
DRIVE_CITY = "drive"
DRIVE_VIDEO = "drive.mp4"
MAX_DRIVE_FRAMES = 999_999  # six digits of frame number in the file names


class VideoWriterError(RuntimeError):
    """OpenCV cannot write the drive video (typically a build without an MPEG-4 encoder)."""


def frame_paths(root: str | Path, split: str, idx: int) -> tuple[Path, Path]:
    return _cityscapes_paths(root, split, CITY, f"{CITY}_{idx:06d}_{SEQUENCE_FRAME}")


def drive_frame_paths(root: str | Path, idx: int) -> tuple[Path, Path]:
    # One Cityscapes sequence (000000) whose frame number is the video frame, so names sort in video order.
    return _cityscapes_paths(root, DRIVE_SPLIT, DRIVE_CITY, f"{DRIVE_CITY}_000000_{idx:06d}")


def _cityscapes_paths(root: str | Path, split: str, city: str, stem: str) -> tuple[Path, Path]:
    root = Path(root)
    return (root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"{path}: cv2.imencode failed to encode a PNG")
    atomic_write_bytes(path, buf.tobytes())


def check_args(num_train: int, num_val: int, height: int, width: int, seed: int) -> str | None:
    """Return a one-line complaint naming the offending option, or None when everything is valid."""
    if num_train < 1:
        return f"--num {num_train}: expected >= 1"
    if num_val < 0:
        return f"--num-val {num_val}: expected >= 0"
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        return f"--size {height} {width}: expected H and W both between {MIN_SIZE} and {MAX_SIZE}"
    if seed < 0:
        return f"--seed {seed}: expected >= 0"
    return None


def check_drive_args(num_frames: int, height: int, width: int, seed: int, fps: float) -> str | None:
    """Like ``check_args``, for ``--drive``."""
    problem = check_args(num_frames, 0, height, width, seed)
    if problem:
        return problem
    if num_frames > MAX_DRIVE_FRAMES:
        return f"--num {num_frames}: expected <= {MAX_DRIVE_FRAMES} with --drive"
    if height % 2 or width % 2:  # the MPEG-4 encoder would silently crop the video by a pixel
        return f"--size {height} {width}: expected H and W both even with --drive"
    if not (math.isfinite(fps) and fps > 0):
        return f"--fps {fps}: expected a number > 0"
    return None


def write_dataset(out_dir: str | Path, num_train: int, num_val: int, height: int, width: int,
                  seed: int = 0) -> dict:
    """Render and atomically write all frames; returns the root, per-split counts and the written paths."""
    problem = check_args(num_train, num_val, height, width, seed)
    if problem:
        raise ValueError(problem)
    root = Path(out_dir)
    result = {"root": str(root), "counts": {}, "images": {}, "labels": {}}
    for split, count in (("train", num_train), ("val", num_val)):
        images, labels = [], []
        for idx in tqdm(range(count), desc=f"synth {split}", unit="frame"):
            rgb, label = render_frame(seed, split, idx, height, width)
            image_path, label_path = frame_paths(root, split, idx)
            _write_png(image_path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            _write_png(label_path, label)
            images.append(str(image_path))
            labels.append(str(label_path))
        result["counts"][split] = count
        result["images"][split] = images
        result["labels"][split] = labels
    return result


def write_drive(out: str | Path, num_frames: int, height: int, width: int, seed: int, fps: float = 15.0,
                speed: float = DRIVE_SPEED) -> dict:
    """Render a drive (``render_drive``) and write it as ``out/drive.mp4`` and, frame by frame with labels, in
    the Cityscapes layout as split ``val``, city ``drive`` (``drive_frame_paths``; name order = video order).

    Give it its own ``out``: next to a synthetic dataset, its frames would join that dataset's val split."""
    problem = check_drive_args(num_frames, height, width, seed, fps)
    if problem:
        raise ValueError(problem)
    root = Path(out)
    video = root / DRIVE_VIDEO
    images, labels = [], []
    with atomic_path(video) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        try:
            if not writer.isOpened():
                raise VideoWriterError(
                    f"{video}: cv2.VideoWriter cannot write 'mp4v' video at {width}x{height} (WxH), {fps:g} fps; "
                    f"this OpenCV build ({cv2.__version__}) may lack an MPEG-4 encoder")
            frames = render_drive(seed, num_frames, height, width, speed)
            for idx, (rgb, label) in enumerate(tqdm(frames, total=num_frames, desc="synth drive", unit="frame")):
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                image_path, label_path = drive_frame_paths(root, idx)
                _write_png(image_path, bgr)
                _write_png(label_path, label)
                writer.write(bgr)
                images.append(str(image_path))
                labels.append(str(label_path))
        finally:
            # Released before atomic_path renames the file: the encoder finishes the container on release.
            writer.release()
    return {"root": str(root), "video": str(video), "frames": num_frames, "size": [height, width], "fps": fps,
            "speed": speed, "seed": seed, "split": DRIVE_SPLIT, "city": DRIVE_CITY, "images": images,
            "labels": labels}
