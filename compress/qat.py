"""INT8 quantization-aware training (QAT) of a trained or pruned checkpoint with NVIDIA ModelOpt.

Inserts fake quantizers (models.quantization: ModelOpt's INT8 placement, the explicit Q/DQ that
TensorRT builds from), calibrates their ranges on training images, then fine-tunes for a short
schedule at a low learning rate, optionally distilling from the float model. Runs on CPU.

    python compress/qat.py --ckpt runs/camvid/pruned/best.pt --dataset camvid \
        --data-path ../shared/data/camvid --epochs 3 --lr 1e-4 --distill kl --out runs/camvid/qat

Writes into ``--out``: ``best.pt`` / ``last.pt`` (stage "qat", with ModelOpt's state so any stage
restores the quantizers; ``export/to_onnx.py`` turns it into Q/DQ ONNX), ``metrics.jsonl`` and
``qat_report.json`` (val road IoU of the float model, right after calibration and after QAT).
A re-run with the same ``--out`` resumes an interrupted fine-tuning.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from roadseg.compress.fine_tuning import fine_tune_args
from roadseg.models.checkpoint import file_sha256, load_model, make_checkpoint, save_checkpoint
from roadseg.models.core.cli import ToolError, non_negative_int, positive_float, positive_int, run
from roadseg.models.core.fileio import atomic_write_json, require_output_folder
from roadseg.models.core.road_labels import DATASETS
from roadseg.models.core.road_metrics import road_metrics
from roadseg.models.quantization import QAT_CONFIG_NAME, quantize
from roadseg.train.distillation import make_distill_loss
from roadseg.train.evaluate import evaluate, select_device
from roadseg.train.fit import run_training
from roadseg.train.paired_transforms import EvalTransform
from roadseg.train.road_datasets import add_split_arguments, build_dataset, collate_keep_sizes, resolve_splits


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="INT8 quantization-aware training with NVIDIA ModelOpt.",
                                add_help=add_help, prog="compress/qat.py")
    p.add_argument("--ckpt", type=Path, required=True, help="float checkpoint (stage train or pruned)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dataset", choices=DATASETS, default="synthetic")
    p.add_argument("--data-path", type=Path, default=None)
    add_split_arguments(p)
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="calibration/training size (default: the checkpoint's input_size)")
    p.add_argument("--calib-images", type=positive_int, default=64, help="training images that calibrate the ranges")
    p.add_argument("--epochs", type=non_negative_int, default=3,
                   help="QAT epochs (a fraction of the float schedule; 0 = calibration only)")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="about a tenth of the float run's")
    p.add_argument("--distill", choices=("none", "kl"), default="kl",
                   help="add KL on softened logits toward the float model")
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--workers", type=non_negative_int, default=2)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", type=Path, default=None)
    return p


def check_args(args) -> None:
    resolve_splits(args)
    require_output_folder(args.out)
    if (args.out / "qat_report.json").exists():
        raise ToolError(f"--out {args.out}: already holds a finished QAT run; choose another --out")


def calibration_loop(args, device: torch.device):
    """ModelOpt's forward_loop: the model sees exactly ``--calib-images`` training images (no augmentation)."""
    dataset = build_dataset(args.dataset, args.data_path, args.train_split, EvalTransform(args.input_size))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        collate_fn=collate_keep_sizes, generator=torch.Generator().manual_seed(args.seed))
    count = min(args.calib_images, len(dataset))

    def forward_loop(model: torch.nn.Module) -> None:
        model.eval()
        seen = 0
        with torch.no_grad():
            for images, _ in loader:
                model(images[: count - seen].to(device))
                seen += min(len(images), count - seen)
                if seen >= count:
                    break

    return forward_loop, count


def val_road_metrics(model: torch.nn.Module, loader, device) -> dict:
    cm, _ = evaluate(model.to(device).eval(), loader, device)
    return road_metrics(cm)


def main(args: argparse.Namespace) -> int:
    check_args(args)
    device = select_device(args.device)
    float_model, ckpt = load_model(args.ckpt)
    meta = ckpt["meta"]
    if meta.get("stage") == "qat":
        raise ToolError(f"--ckpt {args.ckpt}: is already quantized (stage qat); give the float checkpoint")
    args.input_size = tuple(args.img_size or meta.get("input_size") or ())
    if len(args.input_size) != 2:
        raise ToolError(f"{args.ckpt}: meta has no input_size; pass --img-size H W")
    val_set = build_dataset(args.dataset, args.data_path, args.val_split, EvalTransform(args.input_size))
    val_loader = DataLoader(val_set, batch_size=args.batch_size, num_workers=args.workers,
                            collate_fn=collate_keep_sizes)

    report = {"ckpt": str(args.ckpt), "parent_sha256": file_sha256(args.ckpt), "quantization": QAT_CONFIG_NAME,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print("val road IoU of the float model ...", file=sys.stderr)
    report["float"] = val_road_metrics(float_model, val_loader, device)

    forward_loop, calib_count = calibration_loop(args, device)
    model = quantize(copy.deepcopy(float_model).to(device), forward_loop)
    report["calibrated"] = val_road_metrics(model, val_loader, device)
    print(f"calibrated on {calib_count} training images: road IoU {100 * report['float']['road_iou']:.2f} (float) "
          f"-> {100 * report['calibrated']['road_iou']:.2f} (int8 fake-quant, before QAT)", file=sys.stderr)

    qat_meta = {"stage": "qat", "parent_sha256": report["parent_sha256"],
                "quantization": {"method": "ModelOpt INT8 QAT", "config": QAT_CONFIG_NAME,
                                 "calibration_images": calib_count, "epochs": args.epochs, "lr": args.lr,
                                 "distill": args.distill}}
    if args.epochs > 0:
        loss_fn = (make_distill_loss(float_model.cpu(), "kl", args.distill_weight, args.temperature)
                   if args.distill == "kl" else None)
        run_training(fine_tune_args(args, args.out, args.epochs, meta.get("recipe")), model, loss_fn, qat_meta)
        model, _ = load_model(args.out / "best.pt")
    else:
        inherited = {k: meta[k] for k in ("dataset", "mean", "std", "road_label", "complexity") if k in meta}
        save_checkpoint(args.out / "best.pt", make_checkpoint(model.cpu(), {
            **inherited, **qat_meta, "input_size": list(args.input_size), "metrics": {"val": report["calibrated"]}}))
    report["qat"] = val_road_metrics(model, val_loader, device)
    report["road_iou_drop_points"] = {
        stage: 100 * (report["float"]["road_iou"] - report[stage]["road_iou"]) for stage in ("calibrated", "qat")}
    atomic_write_json(args.out / "qat_report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    print(f"{'model':<34}{'road IoU':>10}")
    for name, key in (("float", "float"), ("int8 calibrated (no training)", "calibrated"), ("int8 QAT", "qat")):
        print(f"{name:<34}{100 * report[key]['road_iou']:>10.2f}")
    print(f"QAT road IoU drop {report['road_iou_drop_points']['qat']:+.2f} points vs float; "
          f"checkpoint {args.out / 'best.pt'}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
