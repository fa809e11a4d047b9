"""Internal benchmark: the speed of architecture variants (untrained) and torchvision peers, FP32 and
onnxruntime INT8, at several input sizes, all in one interleaved run (deploy/benchmark.py's timing).

Each variant is built from flags (models/architectures.py), exported to ONNX and, for the INT8
column, quantized with onnxruntime's static PTQ calibrated on synthetic frames (latency does not
depend on what the ranges are). Needs torch (it builds the models); deploy/run.py never does.

    python deploy/arch_sweep.py --sizes 352x480 512x1024 --threads 2 --out runs/arch_sweep

Writes ``--out/benchmark.{md,json,png}`` and the ONNX files it timed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from deploy.benchmark import parse_size, run_benchmark
from models.cli import run

# name -> train/fit.py model flags
VARIANTS = {
    "unet_b64 (standard)": "--arch unet --base-width 64",
    "unet_b16": "--arch unet --base-width 16",
    "unet_b8": "--arch unet --base-width 8",
    "unet_b16_separable": "--arch unet --base-width 16 --separable",
    "unet_b16_bilinear": "--arch unet --base-width 16 --up bilinear",
    "mobile_unet_x0.5": "--arch mobile_unet --width-mult 0.5",
    "mobile_unet_x1": "--arch mobile_unet --width-mult 1.0",
    "mobile_unet_x1.5": "--arch mobile_unet --width-mult 1.5",
    "mobile_unet_x2": "--arch mobile_unet --width-mult 2.0",
    "mobile_unet_x1_relu": "--arch mobile_unet --width-mult 1.0 --act relu",
    "mobile_unet_x1_head4": "--arch mobile_unet --width-mult 1.0 --head-stride 4",
    "mobile_unet_x1_head1": "--arch mobile_unet --width-mult 1.0 --head-stride 1",
    "mobile_unet_x1_depth4": "--arch mobile_unet --width-mult 1.0 --depth 4",
    "lraspp_mobilenet_v3_large (peer)": "--arch lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large (peer)": "--arch deeplabv3_mobilenet_v3_large",
}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Speed of architecture variants and peers, FP32 and INT8.",
                                add_help=add_help, prog="deploy/arch_sweep.py")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS))
    p.add_argument("--sizes", nargs="+", default=["352x480", "512x1024"], metavar="HxW")
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None)
    return p


def export_variant(name: str, flags: str, size: tuple[int, int], out: Path, int8: bool, calibration) -> list[Path]:
    import torch

    from export.onnx_export import build_onnx
    from export.quantize_onnx import choose_reduce_range, quantize_for_onnxruntime
    from models.architectures import add_model_arguments, model_from_args
    from models.complexity import count_params_and_macs
    from models.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, write_onnx_info

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    torch.manual_seed(0)
    model = model_from_args(parser.parse_args(shlex.split(flags))).eval()
    meta = {"stage": "init", "input_size": list(size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "complexity": count_params_and_macs(model, size)}
    info = ModelInfo(arch=model.arch(), meta=meta)
    stem = name.split(" ")[0]
    fp32 = out / f"{stem}.onnx"
    fp32.write_bytes(build_onnx(model, info).SerializeToString())
    if not int8:
        return [fp32]
    with tempfile.TemporaryDirectory(prefix="roadseg-sweep-") as workdir:
        proto = quantize_for_onnxruntime(fp32, calibration, "minmax", choose_reduce_range("auto"), Path(workdir))
    write_onnx_info(proto, info.with_changes(precision="int8-ort-ptq"))
    quantized = out / f"{stem}.int8.onnx"
    quantized.write_bytes(proto.SerializeToString())
    return [fp32, quantized]


def main(args: argparse.Namespace) -> int:
    from deploy.backends import open_backend
    from deploy.labelled_frames import load_labelled_frames
    from export.parity import default_data_path
    from models.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo

    sizes = [parse_size(s) for s in args.sizes]
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = None
    if not args.no_int8:
        info = ModelInfo(arch={}, meta={"input_size": list(sizes[0]), "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
        calibration = [b for b, _ in load_labelled_frames("synthetic", default_data_path("synthetic", None), "train",
                                                          8, info)]
    paths = []
    for name in args.variants:
        print(f"exporting {name} ...", file=sys.stderr)
        paths += export_variant(name, VARIANTS[name], sizes[0], args.out, not args.no_int8, calibration)
    args.dataset, args.data_path, args.split, args.eval_images = None, None, "val", None  # speed only: untrained
    backends = [open_backend(path, args.threads) for path in paths]
    return run_benchmark(args, sizes, backends, peers=set())


if __name__ == "__main__":
    run(main, get_args_parser())
