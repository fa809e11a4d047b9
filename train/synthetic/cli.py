"""``roadseg synth``: write a synthetic road dataset, or with ``--drive`` one drive video with its labelled frames.

    roadseg synth --out DIR --num N --size H W --seed S [--num-val M]
    roadseg synth --drive --out DIR --num N --size H W --seed S [--fps F]

``python train/synthetic/cli.py`` and ``python -m roadseg.train.synthetic.cli`` take the same arguments.
Every argument is checked before anything is rendered or written, and a bad one is refused with one
line naming it (``ToolError``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from roadseg.models.core.cli import ToolError, run
from roadseg.train.synthetic.writers import (
    DRIVE_CITY,
    DRIVE_SPLIT,
    DRIVE_VIDEO,
    VideoWriterError,
    check_args,
    check_drive_args,
    write_dataset,
    write_drive,
)

DEFAULT_FPS = 15.0


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roadseg synth", add_help=add_help,
        description="Write synthetic road scenes in the Cityscapes layout (leftImg8bit + gtFine labelIds), "
                    "or with --drive one drive: a video and its frames with labels.")
    parser.add_argument("--out", required=True, help="dataset root to write into")
    parser.add_argument("--num", type=int, default=64,
                        help="number of train frames, or of video frames with --drive")
    parser.add_argument("--num-val", type=int, default=None,
                        help="number of val frames (when not given: max(1, NUM // 4))")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"),
                        help="frame height and width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")
    parser.add_argument("--drive", action="store_true",
                        help=f"write one drive instead: OUT/{DRIVE_VIDEO} and its frames with labels as "
                             f"OUT/{{leftImg8bit,gtFine}}/{DRIVE_SPLIT}/{DRIVE_CITY}/")
    parser.add_argument("--fps", type=float, default=None,
                        help=f"frame rate of the --drive video (when not given: {DEFAULT_FPS:g})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset or drive already in --out (its old frames are removed first, so "
                             "old and new frames never mix)")
    return parser


GENERATED = ("leftImg8bit", "gtFine", "drive.mp4")


def _clear_or_refuse(out: Path, overwrite: bool) -> None:
    """An --out that already holds generated frames is refused, or with --overwrite emptied of them."""
    present = [name for name in GENERATED if (out / name).exists()]
    if present and not overwrite:
        raise ToolError(f"--out {out}: already holds a synthetic set ({', '.join(present)}); pass --overwrite "
                        "to replace it or choose another --out")
    for name in present:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()


def _check_out(out: Path) -> None:
    # The nearest existing folder on the way decides: a file there would fail deep inside mkdir.
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ToolError(f"--out {out}: expected a folder, but {folder} is a file")
            return


def main(args: argparse.Namespace) -> int:
    height, width = args.size
    out = Path(args.out)
    if args.drive:
        if args.num_val is not None:
            raise ToolError(f"--num-val {args.num_val}: not used with --drive (a drive has no val split)")
        fps = DEFAULT_FPS if args.fps is None else args.fps
        problem = check_drive_args(args.num, height, width, args.seed, fps)
    else:
        if args.fps is not None:
            raise ToolError(f"--fps {args.fps:g}: only used with --drive")
        num_val = max(1, args.num // 4) if args.num_val is None else args.num_val
        problem = check_args(args.num, num_val, height, width, args.seed)
    if problem:
        raise ToolError(problem)
    _check_out(out)
    _clear_or_refuse(out, args.overwrite)
    try:
        if args.drive:
            result = write_drive(out, args.num, height, width, args.seed, fps)
        else:
            result = write_dataset(out, args.num, num_val, height, width, args.seed)
    except VideoWriterError as err:
        raise ToolError(str(err)) from None
    except OSError as err:
        # A read-only folder or a full disk is the user's to fix: say where, without a traceback.
        raise ToolError(f"--out {out}: cannot write {err.filename or 'there'}: {err.strerror or err}") from None
    if args.drive:
        print(f"wrote a {result['frames']}-frame drive ({height}x{width}, {fps:g} fps) to {result['video']} "
              f"and {Path(result['root']) / '{leftImg8bit,gtFine}' / DRIVE_SPLIT / DRIVE_CITY}")
    else:
        counts = result["counts"]
        print(f"wrote {counts['train']} train + {counts['val']} val frames ({height}x{width}) to {result['root']}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
