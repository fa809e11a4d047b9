"""Torchvision segmenters a user wanting a fast CPU model would pick instead of ours, wrapped so
that they train, checkpoint, export and benchmark through the same code as our models.

They are built without pretrained weights: the ImageNet backbones are downloaded from the
internet, which this project's machines cannot reach; trained from scratch they compare with our
models under the same recipe and budget.

    from roadseg.models.peers import PEERS
    model = PEERS["lraspp_mobilenet_v3_large"](num_classes=2)   # returns logits, not a dict
"""

from __future__ import annotations

import torch
from torch import nn


class TorchvisionPeer(nn.Module):
    """A torchvision segmentation model returning the logits tensor (its dict's "out")."""

    name = ""
    builder = ""

    def __init__(self, in_channels: int = 3, num_classes: int = 2):
        super().__init__()
        if in_channels != 3:
            raise ValueError(f"{self.name} takes 3 input channels, got {in_channels}")
        from torchvision.models import segmentation

        # aux_loss off: a deployable single-output network (the aux head only helps training).
        kwargs = {"aux_loss": False} if "deeplab" in self.name else {}
        self.net = getattr(segmentation, self.builder)(weights=None, weights_backbone=None,
                                                      num_classes=num_classes, **kwargs)
        self.in_channels, self.num_classes = in_channels, num_classes

    def arch(self) -> dict:
        return {"name": self.name, "in_channels": self.in_channels, "num_classes": self.num_classes}

    def check_input_size(self, height: int, width: int) -> None:
        if height < 32 or width < 32:
            raise ValueError(f"input size {height}x{width}: {self.name} needs at least 32x32")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


class LRASPPMobileNetV3Large(TorchvisionPeer):
    name = builder = "lraspp_mobilenet_v3_large"


class DeepLabV3MobileNetV3Large(TorchvisionPeer):
    name = builder = "deeplabv3_mobilenet_v3_large"


PEERS: dict[str, type[TorchvisionPeer]] = {cls.name: cls for cls in (LRASPPMobileNetV3Large,
                                                                      DeepLabV3MobileNetV3Large)}
