"""Internal benchmark: the speed of architecture variants (untrained) and torchvision peers, FP32 and
onnxruntime INT8, at several input sizes, all in one interleaved run (deploy/benchmark.py's timing).

Each variant is built from flags (models/architectures.py), exported to ONNX and, for the INT8
column, quantized with onnxruntime's static PTQ calibrated on synthetic frames (latency does not
depend on what the ranges are). Needs torch (it builds the models); deploy/run.py never does.

    python export/arch_sweep.py --sizes 352x480 512x1024 --threads 2 --out runs/arch_sweep

    python export/arch_sweep.py --trained runs/camvid/full runs/camvid/arch/* --out runs/arch_sweep

``--trained`` takes train/fit.py output folders: each is matched to the variant whose model it
trained (by the architecture in its best.pt) and its best val road IoU, epochs and training time
(its last session, if it was resumed) join that variant's row of the trade-off table.

Writes ``--out/benchmark.{md,json,png}`` (every timed file), ``--out/tradeoff.md`` (a row per variant:
params, GMACs, FP32 and INT8 p50 at each size, speed against the first peer, trained road IoU) and
the ONNX files it timed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from roadseg.deploy.benchmark import PEER_NAMES, run_benchmark
from roadseg.models.core.cli import ToolError, image_size, run
from roadseg.models.core.fileio import atomic_write, atomic_write_json

# name -> train/fit.py model flags
VARIANTS = {
    "unet_b64": "--arch unet --base-width 64",  # the standard U-Net
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
    "lraspp_mobilenet_v3_large": "--arch lraspp_mobilenet_v3_large",  # peers (deploy.benchmark.PEER_NAMES)
    "deeplabv3_mobilenet_v3_large": "--arch deeplabv3_mobilenet_v3_large",
}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Speed of architecture variants and peers, FP32 and INT8.",
                                add_help=add_help, prog="export/arch_sweep.py")
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS))
    p.add_argument("--sizes", nargs="+", type=image_size, default=[(352, 480), (512, 1024)], metavar="HxW")
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--trained", type=Path, nargs="+", default=[],
                   help="train/fit.py --out folders; each one's best val road IoU joins its variant's row")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None)
    return p


def model_from_flags(flags: list[str]):
    """A model from train/fit.py model flags."""
    from roadseg.models.architectures import add_model_arguments, model_from_args

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return model_from_args(parser.parse_args(flags))


def match_trained_runs(folders: list[Path], variant_archs: dict[str, dict]) -> dict[str, dict]:
    """variant name -> {"road_iou", "epochs", "train_min", "run"} for each fit.py folder, matched by the
    architecture its best.pt holds (not by its recipe: a pruned fine-tune records fit.py's default flags)."""
    from roadseg.models.checkpoint import build_model, load_checkpoint

    matched = {}
    for folder in folders:
        try:
            report = json.loads((folder / "train_report.json").read_text())
        except (OSError, ValueError):
            raise ToolError(f"--trained {folder}: expected a train/fit.py --out folder with a train_report.json") \
                from None
        best = report.get("best_val") if isinstance(report, dict) else None
        if not isinstance(best, dict) or "road_iou" not in best:
            raise ToolError(f"--trained {folder}: train_report.json has no validated epoch (best_val)")
        # rebuilt, so that an older checkpoint (written before a key with a default was added) compares
        arch = build_model(load_checkpoint(folder / "best.pt")["arch"]).arch()  # errors name the file
        name = next((n for n, a in variant_archs.items() if a == arch), None)
        if name is None:
            raise ToolError(f"--trained {folder}: its model ({arch.get('name')}, widths included) is none of the "
                            "--variants")
        if name in matched:
            raise ToolError(f"--trained {folder}: a second run of {name} (the first: {matched[name]['run']})")
        seconds = report.get("train_seconds_this_session")
        matched[name] = {"road_iou": best["road_iou"], "epochs": (report.get("recipe") or {}).get("epochs"),
                         "run": str(folder), "train_min": seconds / 60 if seconds else None}
    return matched


def tradeoff_rows(rows: list[dict], variants: list[str], sizes: list[tuple[int, int]], trained: dict) -> list[dict]:
    """A row per variant from the benchmark's rows (files named <variant>.onnx / <variant>.int8.onnx): p50
    per precision and size, and the speed-up of FP32 at the first size against the first peer there."""

    def variant(row: dict) -> str:
        return Path(row["path"]).name.removesuffix(".onnx")

    p50 = {(variant(r), tuple(r["size"])): r["p50_ms"] for r in rows}
    first = {variant(r): r for r in rows if tuple(r["size"]) == sizes[0]}
    peer = next((v for v in variants if v in PEER_NAMES), None)
    table = []
    for name in variants:
        row = {"variant": name, "peer": name in PEER_NAMES, "flags": VARIANTS[name],
               "params": first[name]["params"], "gmacs": first[name]["gmacs"], "size_gmacs": list(sizes[0])}
        for size in sizes:
            key = f"{size[0]}x{size[1]}"
            row[f"fp32_ms_{key}"] = p50[(name, size)]
            row[f"int8_ms_{key}"] = p50.get((f"{name}.int8", size))
        row["speedup_vs_peer"] = p50[(peer, sizes[0])] / p50[(name, sizes[0])] if peer else None
        row["trained"] = trained.get(name)
        table.append(row)
    return table


def tradeoff_markdown(table: list[dict], sizes: list[tuple[int, int]]) -> str:
    def ms(value):
        return f"{value:.2f}" if value is not None else "-"

    keys = [f"{h}x{w}" for h, w in sizes]
    gmacs_at = "x".join(str(v) for v in table[0]["size_gmacs"]) if table else ""
    peer = next((r["variant"] for r in table if r["peer"]), None)
    header = (["variant", "params", f"GMACs {gmacs_at}"] + [f"FP32 ms {k}" for k in keys]
              + [f"INT8 ms {k}" for k in keys] + [f"vs {peer} FP32 {keys[0]}" if peer else "vs peer",
                                                  "val road IoU", "epochs", "train min"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        run_ = r["trained"] or {}
        cells = ([r["variant"] + (" (peer)" if r["peer"] else ""), f"{r['params']:,}", f"{r['gmacs']:.3f}"]
                 + [ms(r[f"fp32_ms_{k}"]) for k in keys] + [ms(r[f"int8_ms_{k}"]) for k in keys]
                 + [f"x{r['speedup_vs_peer']:.2f}" if r["speedup_vs_peer"] else "-",
                    f"{100 * run_['road_iou']:.2f}" if run_ else "-", str(run_.get("epochs") or "-"),
                    f"{run_['train_min']:.1f}" if run_.get("train_min") else "-"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def export_variant(name: str, flags: str, size: tuple[int, int], out: Path, int8: bool, calibration) -> list[Path]:
    import torch

    from roadseg.export.onnx_export import build_onnx
    from roadseg.export.quantize_onnx import choose_reduce_range, quantize_for_onnxruntime
    from roadseg.models.complexity import count_params_and_macs
    from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, write_onnx_info

    torch.manual_seed(0)
    model = model_from_flags(shlex.split(flags)).eval()
    meta = {"stage": "init", "input_size": list(size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "complexity": count_params_and_macs(model, size)}
    info = ModelInfo(arch=model.arch(), meta=meta)
    stem = name
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
    from roadseg.deploy.backends import open_backend
    from roadseg.deploy.labelled_frames import load_labelled_frames
    from roadseg.export.parity import default_data_path
    from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo

    sizes = list(dict.fromkeys(args.sizes))
    variants = list(dict.fromkeys(args.variants))
    trained = {}
    if args.trained:
        archs = {name: model_from_flags(shlex.split(VARIANTS[name])).arch() for name in variants}
        trained = match_trained_runs(args.trained, archs)
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = None
    if not args.no_int8:
        info = ModelInfo(arch={}, meta={"input_size": list(sizes[0]), "mean": IMAGENET_MEAN, "std": IMAGENET_STD})
        calibration = [b for b, _ in load_labelled_frames("synthetic", default_data_path("synthetic", None), "train",
                                                          8, info)]
    paths = []
    for name in variants:
        print(f"exporting {name} ...", file=sys.stderr)
        paths += export_variant(name, VARIANTS[name], sizes[0], args.out, not args.no_int8, calibration)
    args.dataset, args.data_path, args.split, args.eval_images = None, None, "val", None  # speed only: untrained
    # exported at sizes[0]: OpenVINO compiles static where that is the only size timed
    backends = [open_backend(path, args.threads, own_size_only=len(sizes) == 1) for path in paths]
    json_path, args.json = args.json, None  # --json gets the trade-off table and the benchmark together
    benchmark = run_benchmark(args, sizes, backends)
    table = tradeoff_rows(benchmark["rows"], variants, sizes, trained)
    markdown = tradeoff_markdown(table, sizes)
    print("\n" + markdown)
    atomic_write(args.out / "tradeoff.md", lambda f: f.write((markdown + "\n").encode()))
    if json_path:
        atomic_write_json(json_path, {"tradeoff": table, "benchmark": benchmark})
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
