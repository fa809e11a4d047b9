"""Labelled frames from a dataset folder, and the road confusion matrix of a model on them (no torch).

Frames are preprocessed exactly as deploy feeds a model (deploy.preprocess); predictions are
scored at the label's resolution, with the labels read through the dataset's official mapping
(train.dataset_layouts, train.road_labels: torch-free). Used by the parity gate and the benchmark.

    frames = load_labelled_frames("camvid", Path("../shared/data/camvid"), "val", None, info)
    cm = road_confusion(backend.infer, frames)      # 2x2; train.road_metrics.road_metrics(cm)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from roadseg.deploy.preprocess import logits_to_classes, preprocess
from roadseg.models.core.dataset_layouts import find_samples, read_rgb, read_road_mask
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.road_metrics import confusion_matrix


def load_labelled_frames(dataset: str, root: Path, split: str, count: int | None, info: ModelInfo) -> list:
    """(preprocessed (1, 3, H, W) batch, road mask {0, 1, 255} at the label's size) for the first
    ``count`` samples of a split (all when None)."""
    frames = []
    for sample in find_samples(dataset, root, split)[:count]:
        rgb = read_rgb(sample.image)
        frames.append((preprocess(rgb, info.input_size, info.mean, info.std),
                       read_road_mask(sample.label, dataset, rgb.shape[:2])))
    return frames


def road_confusion(infer: Callable[[np.ndarray], np.ndarray], frames: list) -> np.ndarray:
    cm = np.zeros((2, 2), np.int64)
    for batch, mask in frames:
        cm += confusion_matrix(logits_to_classes(infer(batch)[0], mask.shape), mask)
    return cm
