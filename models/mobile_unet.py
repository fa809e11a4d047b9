"""MobileUNet: a U-Net built for CPU and edge latency rather than for the paper's exact form.

Where the time of a plain U-Net goes on a CPU: the full- and half-resolution double 3x3
convolutions (memory-bound, a few channels over many pixels). This variant keeps the U shape
(encoder, skip concatenations, decoder) and changes what is expensive:

- a stride-2 3x3 stem: nothing runs at full resolution;
- MobileNetV2 inverted-residual encoder blocks (1x1 expand, 3x3 depthwise, 1x1 project, residual
  when shapes allow), the first block of each level with stride 2;
- a light decoder: bilinear x2, concatenate the skip, one depthwise-separable 3x3 per level;
- the 1x1 classifier at 1/``head_stride`` resolution (2 or 4), bilinearly up-sampled to the input;
  or ``head_stride`` 1: a thin full-resolution branch (one 3x3 conv of ``full_res_width``
  channels, which the stem then strides from) feeds a last decoder step at full resolution, for
  sharp road edges at little cost ("few channels at full resolution");
- ReLU6 by default (bounded activations quantize to int8 well), or ReLU.

Every width is an explicit argument and ``arch()`` reads them back from the live layers, so a
network pruned by torch-pruning rebuilds exactly from its checkpoint (like models.unet.UNet).

    from roadseg.models.mobile_unet import MobileUNet
    model = MobileUNet.from_width_mult(1.0, depth=3)      # input H, W multiples of 2**(depth + 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.models.unet import NORMS, make_norm

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}
HEAD_STRIDES = (1, 2, 4)
FULL_RES_WIDTH = 8
# Per encoder level (1/4, 1/8, 1/16, 1/32 of the input): (expansion, output width, blocks).
LEVELS = ((3, 24, 2), (4, 32, 2), (4, 64, 2), (4, 96, 2))
STEM_WIDTH = 16
DECODER_WIDTHS = (64, 32, 24, 16, 8)  # from the deepest level up to full resolution


def _scaled(width: float) -> int:
    return max(8, int(round(width / 8)) * 8)  # multiples of 8: what int8 kernels and pruning want


def default_config(width_mult: float = 1.0, depth: int = 3, head_stride: int = 2) -> dict:
    if not 1 <= depth <= len(LEVELS):
        raise ValueError(f"depth must be 1-{len(LEVELS)}, got {depth}")
    stem = _scaled(STEM_WIDTH * width_mult)
    blocks, width = [], stem
    for expansion, out, repeats in LEVELS[:depth]:
        out = _scaled(out * width_mult)
        level = []
        for index in range(repeats):
            hidden = width * expansion
            level.append({"hidden": hidden, "out": out, "stride": 2 if index == 0 else 1, "expand": True,
                          "residual": index > 0})
            width = out
        blocks.append(level)
    decoder = [_scaled(w * width_mult) for w in DECODER_WIDTHS[len(DECODER_WIDTHS) - 1 - depth:]]
    config = {"stem_width": stem, "encoder_blocks": blocks, "head_stride": head_stride,
              "decoder_widths": decoder[: decoder_steps(depth, head_stride)]}
    if head_stride == 1:
        config["full_res_width"] = FULL_RES_WIDTH  # not scaled: full-resolution channels are the costly ones
    return config


def decoder_steps(depth: int, head_stride: int) -> int:
    """Up-sampling steps from the deepest level (1/2**(depth+1)) to the head's resolution."""
    return depth + 1 - head_stride.bit_length() + 1


class ConvNormAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int, norm: str,
                 act: str | None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.norm = make_norm(norm, out_channels)
        if act:
            self.act = ACTIVATIONS[act](inplace=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (stride 1 or 2) -> 1x1 linear projection."""

    def __init__(self, in_channels: int, hidden: int, out: int, stride: int, expand: bool, residual: bool,
                 norm: str, act: str):
        super().__init__()
        if residual and (stride != 1 or in_channels != out):
            raise ValueError(f"a residual block needs stride 1 and equal widths, got {in_channels}->{out}, "
                             f"stride {stride}")
        if not expand and hidden != in_channels:
            raise ValueError(f"a block without expansion has hidden = in ({in_channels}), got {hidden}")
        self.stride, self.residual = stride, residual
        self.expand = ConvNormAct(in_channels, hidden, 1, 1, 1, norm, act) if expand else None
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride, hidden, norm, act)
        self.project = ConvNormAct(hidden, out, 1, 1, 1, norm, None)

    def spec(self) -> dict:
        return {"hidden": self.depthwise.conv.out_channels, "out": self.project.conv.out_channels,
                "stride": self.stride, "expand": self.expand is not None, "residual": self.residual}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x) if self.expand is not None else x))
        return x + y if self.residual else y


class DecoderStep(nn.Module):
    """Bilinear x2, concatenate the skip (first, as in UNet), one depthwise-separable 3x3."""

    def __init__(self, below: int, skip: int, out: int, norm: str, act: str):
        super().__init__()
        self.depthwise = ConvNormAct(skip + below, skip + below, 3, 1, skip + below, norm, act)
        self.pointwise = ConvNormAct(skip + below, out, 1, 1, 1, norm, act)

    @property
    def out_channels(self) -> int:
        return self.pointwise.conv.out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.pointwise(self.depthwise(torch.cat([skip, x], dim=1)))


class MobileUNet(nn.Module):
    name = "mobile_unet"

    def __init__(self, in_channels: int = 3, num_classes: int = 2, norm: str = "bn", act: str = "relu6",
                 stem_width: int | None = None, encoder_blocks: list[list[dict]] | None = None,
                 decoder_widths: list[int] | None = None, head_stride: int = 2, full_res_width: int | None = None):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {tuple(ACTIVATIONS)}, got {act!r}")
        if head_stride not in HEAD_STRIDES:
            raise ValueError(f"head_stride must be one of {HEAD_STRIDES}, got {head_stride}")
        defaults = default_config(head_stride=head_stride)
        stem_width = stem_width or defaults["stem_width"]
        encoder_blocks = encoder_blocks or defaults["encoder_blocks"]
        depth = len(encoder_blocks)
        decoder_widths = decoder_widths or default_config(depth=depth, head_stride=head_stride)["decoder_widths"]
        if len(decoder_widths) != decoder_steps(depth, head_stride):
            raise ValueError(f"{depth} encoder levels with head_stride {head_stride} need "
                             f"{decoder_steps(depth, head_stride)} decoder widths, got {len(decoder_widths)}")
        self.norm_kind, self.act_kind, self.head_stride = norm, act, head_stride
        skips = []
        if head_stride == 1:
            full_res_width = full_res_width or FULL_RES_WIDTH
            self.full_res = ConvNormAct(in_channels, full_res_width, 3, 1, 1, norm, act)
            skips.append(full_res_width)
            in_channels = full_res_width
        else:
            self.full_res = None
        self.stem = ConvNormAct(in_channels, stem_width, 3, 2, 1, norm, act)
        levels, width = [], stem_width
        skips.append(stem_width)
        for level in encoder_blocks:
            blocks = []
            for b in level:
                blocks.append(InvertedResidual(width, b["hidden"], b["out"], b["stride"], b["expand"], b["residual"],
                                               norm, act))
                width = b["out"]
            levels.append(nn.Sequential(*blocks))
            skips.append(width)
        self.encoder = nn.ModuleList(levels)
        steps, below = [], width
        for i, out in enumerate(decoder_widths):
            steps.append(DecoderStep(below, skips[-2 - i], out, norm, act))
            below = out
        self.decoder = nn.ModuleList(steps)
        self.outc = nn.Conv2d(below, num_classes, 1)  # named as in UNet: pruning and distillation find it

    @classmethod
    def from_width_mult(cls, width_mult: float = 1.0, depth: int = 3, head_stride: int = 2, **kwargs) -> MobileUNet:
        return cls(**default_config(width_mult, depth, head_stride), **kwargs)

    @property
    def in_channels(self) -> int:
        return (self.full_res or self.stem).conv.in_channels

    @property
    def depth(self) -> int:
        return len(self.encoder)

    def arch_kwargs(self) -> dict:
        return {"in_channels": self.in_channels, "num_classes": self.outc.out_channels, "norm": self.norm_kind,
                "act": self.act_kind, "stem_width": self.stem.conv.out_channels,
                "encoder_blocks": [[block.spec() for block in level] for level in self.encoder],
                "decoder_widths": [step.out_channels for step in self.decoder], "head_stride": self.head_stride,
                "full_res_width": self.full_res.conv.out_channels if self.full_res is not None else None}

    def arch(self) -> dict:
        # "depth" is what models.model_metadata reads for the size multiple: 2**(levels + 1)
        return {"name": self.name, **self.arch_kwargs()}

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.depth + 1)

    def check_input_size(self, height: int, width: int) -> None:
        multiple = self.size_multiple
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise ValueError(f"input size {height}x{width} is not a multiple of {multiple} (2**(levels + 1)); "
                             f"resize or crop the input, e.g. to {max(height // multiple, 1) * multiple}x"
                             f"{max(width // multiple, 1) * multiple}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input_size(x.shape[-2], x.shape[-1])
        size = x.shape[-2:]
        skips = [self.full_res(x)] if self.full_res is not None else []
        skips.append(self.stem(skips[-1] if skips else x))
        for level in self.encoder:
            skips.append(level(skips[-1]))
        x = skips.pop()
        for step in self.decoder:
            x = step(x, skips.pop())
        logits = self.outc(x)
        return logits if self.head_stride == 1 else F.interpolate(logits, size=size, mode="bilinear",
                                                                  align_corners=False)
