"""Road metrics from one confusion matrix (pure numpy; deploy imports this, never torch).

The matrix is 2x2 with rows = ground truth, columns = prediction (0 = not road, 1 = road);
ignored pixels (255) are never counted. It is accumulated over a whole split, as the Cityscapes
benchmark does, not averaged over images, so that road IoU equals the official evaluator's.

    cm = confusion_matrix(pred, target)              # np.int64 [2, 2]
    road_metrics(cm)                                 # {"road_iou": ..., "precision": ..., ...}
"""

from __future__ import annotations

import numpy as np

from roadseg.models.core.road_labels import IGNORE

NUM_CLASSES = 2
METRIC_NAMES = ("road_iou", "precision", "recall", "f1", "pixel_acc")


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int = NUM_CLASSES,
                     ignore_index: int = IGNORE) -> np.ndarray:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {target.shape}")
    valid = target != ignore_index
    index = num_classes * target[valid].astype(np.int64) + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def road_metrics(cm: np.ndarray) -> dict[str, float]:
    """Road IoU, precision, recall, F1 and pixel accuracy (fractions in [0, 1]; NaN when undefined)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp, fn, fp = cm[1, 1], cm[1, 0], cm[0, 1]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "road_iou": _ratio(tp, tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "pixel_acc": _ratio(np.trace(cm), cm.sum()),
        "pixels": int(cm.sum()),
    }


def format_table(rows: list[tuple[str, dict]], percent: bool = True) -> str:
    """A plain-text table with one row per (name, metrics) pair."""
    header = f"{'split':<18}" + "".join(f"{name:>11}" for name in METRIC_NAMES) + f"{'pixels':>13}"
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        scale = 100.0 if percent else 1.0
        cells = "".join(f"{metrics[key] * scale:>11.2f}" for key in METRIC_NAMES)
        lines.append(f"{name:<18}{cells}{metrics['pixels']:>13,}")
    return "\n".join(lines)
