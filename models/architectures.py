"""The model-shape flags every script that creates a model shares, and building a model from them.

    --arch unet           the U-Net of the paper (--base-width 64 --depth 4 is the standard one)
    --arch mobile_unet    the latency-first U-Net (models/mobile_unet.py): --width-mult, --depth,
                          --head-stride, --act
    --arch lraspp_mobilenet_v3_large | deeplabv3_mobilenet_v3_large   torchvision peers (models/peers.py)

    add_model_arguments(parser.add_argument_group("model"))
    model = model_from_args(args)
"""

from __future__ import annotations

import argparse

from torch import nn

from roadseg.models.core.cli import ToolError
from roadseg.models.mobile_unet import ACTIVATIONS, HEAD_STRIDES, MobileUNet
from roadseg.models.peers import PEERS
from roadseg.models.unet import NORMS, UP_MODES, UNet

ARCH_CHOICES = (UNet.name, MobileUNet.name, *PEERS)
DEFAULT_DEPTH = {UNet.name: 4, MobileUNet.name: 3}


def add_model_arguments(group) -> None:
    group.add_argument("--arch", choices=ARCH_CHOICES, default=UNet.name,
                       help="unet: the paper's U-Net (default); mobile_unet: latency-first U-Net; "
                            "the others are torchvision peers, trained from scratch")
    group.add_argument("--base-width", type=int, default=64, help="unet: 64 = the standard U-Net")
    group.add_argument("--depth", type=int, default=None, help="encoder levels (default: unet 4, mobile_unet 3)")
    group.add_argument("--norm", choices=NORMS, default="bn")
    group.add_argument("--up", choices=UP_MODES, default="transpose", help="unet")
    group.add_argument("--separable", action="store_true", help="unet: depthwise-separable 3x3 convolutions")
    group.add_argument("--width-mult", type=float, default=1.0, help="mobile_unet: channel multiplier")
    group.add_argument("--head-stride", type=int, choices=HEAD_STRIDES, default=2,
                       help="mobile_unet: predict at 1/N resolution, then bilinear up-sampling (1: a thin "
                            "full-resolution branch and a last decoder step at full resolution)")
    group.add_argument("--act", choices=tuple(ACTIVATIONS), default="relu6", help="mobile_unet")


def model_from_args(args: argparse.Namespace) -> nn.Module:
    depth = args.depth if args.depth is not None else DEFAULT_DEPTH.get(args.arch)
    try:
        if args.arch == UNet.name:
            return UNet.from_base_width(args.base_width, depth, norm=args.norm, up=args.up, separable=args.separable)
        if args.arch == MobileUNet.name:
            if args.width_mult <= 0:
                raise ValueError(f"--width-mult {args.width_mult}: expected > 0")
            return MobileUNet.from_width_mult(args.width_mult, depth, args.head_stride, norm=args.norm, act=args.act)
        return PEERS[args.arch]()
    except ValueError as err:
        raise ToolError(f"--arch {args.arch}: {err}") from None
