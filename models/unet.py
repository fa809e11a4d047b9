"""The U-Net family (Ronneberger et al., 2015) for road segmentation.

The network reads like the paper: a contracting path of double 3x3 convolutions with 2x2 max
pooling, an expanding path that up-samples, concatenates the skip connection and applies another
double convolution, and a 1x1 classifier.

Every convolution's output width is an explicit constructor argument, so a network whose
channels were pruned unevenly rebuilds exactly from its checkpoint. ``UNet.arch()`` reads the
widths back from the live modules (not from the constructor arguments), so it stays true after
torch-pruning has edited the layers in place.

    from roadseg.models.unet import UNet
    model = UNet.from_base_width(base_width=64, depth=4)   # the standard 31,037,698-parameter U-Net
    rebuilt = UNet(**model.arch_kwargs())                  # same architecture, fresh weights
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("bn", "gn")
UP_MODES = ("transpose", "bilinear")
GN_MAX_GROUPS = 32


def standard_widths(base_width: int, depth: int) -> dict[str, list]:
    """Widths of the unpruned U-Net: the encoder doubles per level, the decoder mirrors it."""
    if base_width < 1 or depth < 1:
        raise ValueError(f"base_width and depth must be >= 1, got base_width={base_width}, depth={depth}")
    level = [base_width * 2**i for i in range(depth + 1)]
    return {
        "encoder_widths": [[w, w] for w in level],
        # Each up-sampling step halves the channels of the level below (the paper's "up-conv 2x2").
        "up_widths": [level[i] for i in reversed(range(depth))],
        "decoder_widths": [[level[i], level[i]] for i in reversed(range(depth))],
    }


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    # GroupNorm needs channels divisible by groups; derive groups from the width so that any
    # (pruned) width rebuilds deterministically.
    return nn.GroupNorm(math.gcd(channels, GN_MAX_GROUPS), channels)


class SeparableConv2d(nn.Sequential):
    """Depthwise 3x3 followed by pointwise 1x1 (MobileNet/Xception style)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )

    @property
    def out_channels(self) -> int:
        return self[1].out_channels


class ConvNormAct(nn.Sequential):
    """3x3 convolution (plain or depthwise-separable), normalisation, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, separable: bool):
        conv = (
            SeparableConv2d(in_channels, out_channels)
            if separable
            else nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        )
        super().__init__()
        self.conv = conv
        self.norm = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels


class DoubleConv(nn.Sequential):
    """(conv 3x3 => norm => ReLU) * 2, the building block of both paths."""

    def __init__(self, in_channels: int, widths: list[int], norm: str, separable: bool):
        mid, out = widths
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, mid, norm, separable)
        self.conv2 = ConvNormAct(mid, out, norm, separable)

    def widths(self) -> list[int]:
        return [self.conv1.out_channels, self.conv2.out_channels]


class Down(nn.Sequential):
    """Contracting step: 2x2 max pooling, then a double convolution."""

    def __init__(self, in_channels: int, widths: list[int], norm: str, separable: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = DoubleConv(in_channels, widths, norm, separable)


class Up(nn.Module):
    """Expanding step: up-sample x2 and change width, concatenate the skip, double convolution."""

    def __init__(self, in_channels: int, skip_channels: int, up_width: int, widths: list[int],
                 norm: str, separable: bool, mode: str):
        super().__init__()
        if mode == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, up_width, kernel_size=2, stride=2)
        else:
            # Bilinear resize has no weights; the 1x1 conv plays the paper's "up-conv" width change.
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, up_width, kernel_size=1),
            )
        self.block = DoubleConv(skip_channels + up_width, widths, norm, separable)

    @property
    def up_width(self) -> int:
        return self.up.out_channels if isinstance(self.up, nn.ConvTranspose2d) else self.up[1].out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The skip comes first, as in the paper's figure; order matters for pruning index maps.
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with explicit widths. Input H and W must be multiples of 2**depth."""

    name = "unet"

    def __init__(self, in_channels: int = 3, num_classes: int = 2, depth: int = 4, norm: str = "bn",
                 up: str = "transpose", separable: bool = False,
                 encoder_widths: list[list[int]] | None = None, up_widths: list[int] | None = None,
                 decoder_widths: list[list[int]] | None = None, base_width: int = 64):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if up not in UP_MODES:
            raise ValueError(f"up must be one of {UP_MODES}, got {up!r}")
        defaults = standard_widths(base_width, depth)
        encoder_widths = encoder_widths or defaults["encoder_widths"]
        up_widths = up_widths or defaults["up_widths"]
        decoder_widths = decoder_widths or defaults["decoder_widths"]
        if len(encoder_widths) != depth + 1 or len(up_widths) != depth or len(decoder_widths) != depth:
            raise ValueError(
                f"depth={depth} needs {depth + 1} encoder, {depth} up and {depth} decoder widths; got "
                f"{len(encoder_widths)}, {len(up_widths)}, {len(decoder_widths)}"
            )
        self.depth, self.norm, self.up_mode, self.separable = depth, norm, up, separable

        self.inc = DoubleConv(in_channels, encoder_widths[0], norm, separable)
        self.downs = nn.ModuleList(
            Down(encoder_widths[i - 1][-1], encoder_widths[i], norm, separable) for i in range(1, depth + 1)
        )
        ups, below = [], encoder_widths[depth][-1]
        for i in range(depth):
            skip = encoder_widths[depth - 1 - i][-1]
            ups.append(Up(below, skip, up_widths[i], decoder_widths[i], norm, separable, up))
            below = decoder_widths[i][-1]
        self.ups = nn.ModuleList(ups)
        self.outc = nn.Conv2d(below, num_classes, kernel_size=1)

    @classmethod
    def from_base_width(cls, base_width: int = 64, depth: int = 4, **kwargs) -> UNet:
        return cls(depth=depth, **standard_widths(base_width, depth), **kwargs)

    @property
    def in_channels(self) -> int:
        first = self.inc.conv1.conv
        return first[0].in_channels if isinstance(first, SeparableConv2d) else first.in_channels

    def arch_kwargs(self) -> dict:
        """Constructor arguments, with widths read from the live layers (true after pruning)."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.outc.out_channels,
            "depth": self.depth,
            "norm": self.norm,
            "up": self.up_mode,
            "separable": self.separable,
            "encoder_widths": [self.inc.widths()] + [down.block.widths() for down in self.downs],
            "up_widths": [up.up_width for up in self.ups],
            "decoder_widths": [up.block.widths() for up in self.ups],
        }

    def arch(self) -> dict:
        return {"name": self.name, **self.arch_kwargs()}

    def check_input_size(self, height: int, width: int) -> None:
        multiple = 2**self.depth
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise ValueError(
                f"input size {height}x{width} is not a multiple of {multiple} (2**depth, depth={self.depth}); "
                f"resize or crop the input, e.g. to {max(height // multiple, 1) * multiple}x"
                f"{max(width // multiple, 1) * multiple}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Python-side shape checks would be frozen into traced/exported graphs; only check eagerly.
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input_size(x.shape[-2], x.shape[-1])
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
