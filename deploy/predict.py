"""Road masks for still images: one single-channel PNG per input image, named after it, and on request
the overlay beside it. No torch: any .onnx/.engine file or a zoo name (``camvid-road``).

    roadseg predict --model camvid-road --source street.jpg --output road.png
    roadseg predict --model camvid-road-fast --source photos/ --output masks/ --overlay

Masks are 8-bit PNGs at the input image's own size: 255 = road, 0 = not road (``--mask-values 0-1``
writes 1 for road, the encoding ``roadseg eval --pred-dir --pred-labels binary`` reads). With
``--overlay`` the road overlay is written too, as ``<name>_overlay.png`` (or beside a single
``--output`` file). An existing output file is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from roadseg.deploy.backends import open_backend
from roadseg.deploy.overlay import render
from roadseg.deploy.preprocess import logits_to_classes, preprocess
from roadseg.models.core.cli import ToolError, non_negative_int, run, unit_interval
from roadseg.models.core.fileio import atomic_write_bytes
from roadseg.models.core.zoo import resolve_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_VALUES = {"0-255": 255, "0-1": 1}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Road masks (and overlays) for images.", add_help=add_help,
                                prog="deploy/predict.py")
    p.add_argument("--model", required=True, help="a zoo name (camvid-road, camvid-road-fast) or an .onnx/.engine file")
    p.add_argument("--source", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--output", type=Path, required=True,
                   help="a folder (one <name>.png per image), or a .png file when --source is one image")
    p.add_argument("--mask-values", choices=tuple(MASK_VALUES), default="0-255",
                   help="0-255: road = 255 (visible); 0-1: road = 1")
    p.add_argument("--overlay", action="store_true", help="also write the road overlay of each image")
    p.add_argument("--alpha", type=unit_interval, default=0.5, help="overlay opacity")
    p.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads (0 = the runtime's default)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def list_images(source: Path) -> list[Path]:
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise ToolError(f"--source {source}: expected an image ({', '.join(IMAGE_SUFFIXES)}) or a folder of them; "
                            "for a video use roadseg run")
        return [source]
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise ToolError(f"--source {source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return images
    raise ToolError(f"--source {source}: no such file or folder")


def output_paths(images: list[Path], output: Path, overlay: bool) -> list[tuple[Path, Path | None]]:
    """(mask path, overlay path or None) per image: <output>/<stem>.png, or the one --output file."""
    if output.suffix.lower() == ".png" and not output.is_dir():
        if len(images) != 1:
            raise ToolError(f"--output {output}: a single file takes a single --source image; "
                            f"give a folder for {len(images)} images")
        return [(output, output.with_name(output.stem + "_overlay.png") if overlay else None)]
    if output.exists() and not output.is_dir():
        raise ToolError(f"--output {output}: exists and is not a folder (a folder, or a .png for one image)")
    stems = [image.stem for image in images]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ToolError(f"--source: several images are named {repeated[0]}.* and would share one mask name")
    return [(output / f"{image.stem}.png", output / f"{image.stem}_overlay.png" if overlay else None)
            for image in images]


def refuse_overwrites(pairs: list[tuple[Path, Path | None]]) -> None:
    existing = [path for pair in pairs for path in pair if path is not None and path.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ToolError(f"--output: {existing[0]}{more} already exist; pass --overwrite to replace them")


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ToolError(f"{path}: OpenCV could not encode the image")
    atomic_write_bytes(path, encoded.tobytes())


def predict_mask(backend, bgr: np.ndarray) -> np.ndarray:
    """Class map {0, 1} at the image's own size."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    info = backend.info
    logits = backend.infer(preprocess(rgb, info.input_size, info.mean, info.std))[0]
    return logits_to_classes(logits, rgb.shape[:2])


def main(args: argparse.Namespace) -> int:
    images = list_images(args.source)
    pairs = output_paths(images, args.output, args.overlay)
    if not args.overwrite:
        refuse_overwrites(pairs)
    backend = open_backend(resolve_model(args.model), args.threads)
    road_value = MASK_VALUES[args.mask_values]
    road_pixels = total_pixels = 0
    for image_path, (mask_path, overlay_path) in zip(tqdm(images, desc="predict", unit="image", disable=None,
                                                          file=sys.stderr), pairs, strict=True):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ToolError(f"{image_path}: cannot be read as an image")
        classes = predict_mask(backend, bgr)
        write_png(mask_path, (classes * road_value).astype(np.uint8))
        if overlay_path is not None:
            write_png(overlay_path, render(bgr, classes, "blend", args.alpha))
        road_pixels += int(classes.sum())
        total_pixels += classes.size
    where = pairs[0][0] if len(pairs) == 1 else args.output
    print(f"{len(images)} mask(s) written to {where} (road = {road_value}); road covers "
          f"{100 * road_pixels / total_pixels:.1f}% of the pixels; model {backend.path}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
