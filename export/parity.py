"""The parity gate: proof that an exported model computes what its reference computes.

Both models see the same preprocessed validation images (deploy.preprocess, so exactly what
deploy will feed them). Reported: the largest absolute logit difference, the share of pixels
whose class agrees, and the road IoU of each against the labels (at label resolution) with its
delta in points. The gate fails when agreement is below ``min_agreement`` percent or the
|IoU delta| exceeds ``max_iou_delta`` points.

    images = load_parity_images("camvid", "../shared/data/camvid", "val", 16, info)
    report = compare(torch_logits, onnx_logits, images)
    require_parity(report, min_agreement=99.9, max_iou_delta=0.1, what="model.onnx vs best.pt")
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from roadseg.deploy.labelled_frames import load_labelled_frames
from roadseg.deploy.preprocess import logits_to_classes
from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.road_metrics import confusion_matrix, road_metrics

Logits = Callable[[np.ndarray], np.ndarray]  # (1, 3, H, W) float32 -> (1, C, H, W) logits


class ParityError(ToolError):
    """An exported model that does not compute what its reference computes."""


def default_data_path(dataset: str, data_path: str | Path | None) -> Path:
    if data_path is not None:
        return Path(data_path)
    if dataset != "synthetic":
        raise ToolError(f"--dataset {dataset} needs --data-path (the folder holding the dataset)")
    from roadseg.train.road_datasets import DEFAULT_SYNTHETIC_PATH, ensure_synthetic

    return ensure_synthetic(DEFAULT_SYNTHETIC_PATH)


def load_parity_images(dataset: str, data_path, split: str, count: int, info: ModelInfo) -> list:
    """The first ``count`` images of a split: (preprocessed batch, road mask at the label's size)."""
    return load_labelled_frames(dataset, default_data_path(dataset, data_path), split, count, info)


def compare(reference: Logits, candidate: Logits, images: list) -> dict:
    max_diff, agree, pixels = 0.0, 0, 0
    cm_reference = np.zeros((2, 2), np.int64)
    cm_candidate = np.zeros((2, 2), np.int64)
    for batch, mask in images:
        ref, cand = reference(batch)[0].astype(np.float32), candidate(batch)[0].astype(np.float32)
        max_diff = max(max_diff, float(np.abs(ref - cand).max()))
        ref_classes, cand_classes = logits_to_classes(ref, mask.shape), logits_to_classes(cand, mask.shape)
        agree += int((ref_classes == cand_classes).sum())
        pixels += ref_classes.size
        cm_reference += confusion_matrix(ref_classes, mask)
        cm_candidate += confusion_matrix(cand_classes, mask)
    iou_reference = road_metrics(cm_reference)["road_iou"]
    iou_candidate = road_metrics(cm_candidate)["road_iou"]
    return {"images": len(images), "max_abs_logit_diff": max_diff, "agreement_percent": 100.0 * agree / max(pixels, 1),
            "road_iou_reference": iou_reference, "road_iou_candidate": iou_candidate,
            "road_iou_delta_points": 100.0 * (iou_candidate - iou_reference)}


def require_parity(report: dict, min_agreement: float, max_iou_delta: float, what: str) -> None:
    report["thresholds"] = {"min_agreement_percent": min_agreement, "max_abs_iou_delta_points": max_iou_delta}
    failures = []
    if report["agreement_percent"] < min_agreement:
        failures.append(f"class agreement {report['agreement_percent']:.3f}% < {min_agreement}%")
    if abs(report["road_iou_delta_points"]) > max_iou_delta:
        failures.append(f"|road IoU delta| {abs(report['road_iou_delta_points']):.3f} points > {max_iou_delta}")
    report["passed"] = not failures
    if failures:
        raise ParityError(f"parity gate failed for {what} on {report['images']} images: {'; '.join(failures)} "
                          f"(max |logit diff| {report['max_abs_logit_diff']:.3g})")


def gate(report: dict, parity: dict, args, what: str, failed_report: Path) -> None:
    """Print the parity summary and apply the gate (``args.min_agreement``, ``args.max_iou_delta``). On a
    failure the figures go to ``failed_report`` and ParityError is raised: an earlier good file and its
    report stay as they were, since the caller writes the new ones only after this returns."""
    print(summary_line(parity), file=sys.stderr)
    try:
        require_parity(parity, args.min_agreement, args.max_iou_delta, what)
    except ParityError:
        atomic_write_json(failed_report, report)
        raise


def summary_line(report: dict) -> str:
    return (f"parity on {report['images']} images: agreement {report['agreement_percent']:.3f}%, "
            f"road IoU {100 * report['road_iou_reference']:.2f} -> {100 * report['road_iou_candidate']:.2f} "
            f"({report['road_iou_delta_points']:+.3f} points), max |logit diff| {report['max_abs_logit_diff']:.3g}")
