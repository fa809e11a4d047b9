"""Segmentation losses: cross-entropy with ignore 255, optionally plus soft Dice on road.

Cross-entropy is summed over valid pixels and divided by a normaliser the caller passes: the
number of valid pixels in the *global* batch under DDP (times the world size, because DDP
averages gradients). That makes a multi-process step compute exactly the single-process
gradient, which plain per-rank means do not when ranks hold different numbers of ignored pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from roadseg.models.core.road_labels import IGNORE, ROAD


def cross_entropy_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")


def road_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the road class over the batch's valid pixels (per-rank under DDP)."""
    valid = target != IGNORE
    road_prob = logits.float().softmax(dim=1)[:, ROAD][valid]
    road_true = (target[valid] == ROAD).float()
    intersection = (road_prob * road_true).sum()
    return 1.0 - (2.0 * intersection + eps) / (road_prob.sum() + road_true.sum() + eps)
