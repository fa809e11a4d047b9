"""Paired image/mask transforms, built from torchvision transforms v2.

Masks are ``tv_tensors.Mask`` so that v2 resizes them with nearest neighbour and pads them
with 255 (ignore); colour jitter and normalisation touch the image only. Evaluation resizes
the image to the model's input size and leaves the label at its own size: predictions are
resized back to it (see ``roadseg.train.evaluate``).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD
from roadseg.models.core.road_labels import IGNORE


def to_tv_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    return (tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            tv_tensors.Mask(torch.from_numpy(mask)))


AUGMENTATIONS = ("basic", "strong")


def haze(image: torch.Tensor) -> torch.Tensor:
    """Weather-like haze: blend toward a light grey, thicker toward the top (the far field), with a
    random density. Image only (float in [0, 1]); drawn from torch's RNG, so keyed like the rest."""
    density = 0.5 * torch.rand(())
    grey = 0.7 + 0.25 * torch.rand(())
    height = image.shape[-2]
    ramp = torch.linspace(1.0, 0.3, height, dtype=image.dtype).view(height, 1)
    alpha = density * ramp
    return image * (1 - alpha) + grey * alpha


def train_transform(size: tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0),
                    hflip: float = 0.5, jitter: float = 0.3, augment: str = "basic",
                    mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Scale jitter, crop, flip and colour jitter (``basic``); ``strong`` adds what a road unseen in
    training differs by: stronger colour and exposure, blur, grey frames, sensor noise and haze."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    strong = augment == "strong"
    if strong:
        jitter = max(jitter, 0.5)
    image_only = (tv_tensors.Image,)
    return v2.Compose([
        # Scale relative to the training size (so any native resolution works), then crop/pad.
        v2.ScaleJitter(target_size=tuple(size), scale_range=scale_range, antialias=True),
        v2.RandomCrop(tuple(size), pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}),
        v2.RandomHorizontalFlip(hflip),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 6, 0.5)),
        *([v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.3), v2.RandomGrayscale(0.05)]
          if strong else []),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        *([v2.RandomApply([v2.Lambda(haze, *image_only)], p=0.2),
           v2.RandomApply([v2.GaussianNoise(sigma=0.03, clip=True)], p=0.3)] if strong else []),
        v2.Normalize(mean, std),
    ])


class EvalTransform:
    """Resize the image to the model's input size and normalise it; the mask keeps its size."""

    def __init__(self, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.image_transform = v2.Compose([
            v2.Resize(tuple(size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ])

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask):
        return self.image_transform(image), mask.to(torch.int64)
