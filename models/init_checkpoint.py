"""Write an untrained (randomly initialised) checkpoint for a U-Net configuration.

Useful to time an architecture before training it, and as the smallest end-to-end check of
the chain (evaluate, export, deploy all take it as they take a trained one).

    python models/init_checkpoint.py --out runs/demo/init --base-width 16 --img-size 256 512
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from roadseg.models.architectures import add_model_arguments, model_from_args
from roadseg.models.checkpoint import make_checkpoint, save_checkpoint
from roadseg.models.complexity import count_params_and_macs
from roadseg.models.core.cli import ToolError, run
from roadseg.models.core.fileio import refuse_to_overwrite, require_output_folder
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write an untrained model checkpoint.", add_help=add_help,
                                     prog="models/init_checkpoint.py")
    parser.add_argument("--out", type=Path, required=True, help="output folder (writes init.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing init.pt")
    add_model_arguments(parser)
    parser.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=[256, 512])
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> int:
    require_output_folder(args.out)
    refuse_to_overwrite(args.out / "init.pt", args.overwrite)
    torch.manual_seed(args.seed)
    try:
        model = model_from_args(args)
        model.check_input_size(*args.img_size)
    except ValueError as err:
        raise ToolError(str(err)) from None
    stats = count_params_and_macs(model, tuple(args.img_size))
    meta = {"stage": "init", "parent_sha256": None, "dataset": None, "input_size": list(args.img_size),
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "road_label": 1,
            "metrics": {}, "complexity": stats}
    path = save_checkpoint(args.out / "init.pt", make_checkpoint(model, meta))
    print(f"wrote {path}: {stats['params']:,} parameters, {stats['gmacs']:.2f} GMACs at "
          f"{args.img_size[0]}x{args.img_size[1]}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
