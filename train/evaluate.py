"""Road-segmentation evaluation: a checkpoint on a dataset split, or a folder of predicted masks.

Road IoU, precision, recall, F1 and pixel accuracy come from one confusion matrix accumulated
over the whole split (as the Cityscapes benchmark does); road IoU equals the official
``cityscapesscripts`` evaluator's road-class IoU on the same predictions. Predictions are made
at the model's input size and resized (bilinear on logits) back to each label's size.

    python train/evaluate.py --ckpt runs/demo/full/best.pt --dataset synthetic --split val
    python train/evaluate.py --pred-dir preds/ --pred-labels dataset \
        --dataset cityscapes --data-path /data/cityscapes --split val --json val.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from roadseg.models.checkpoint import load_model
from roadseg.models.core.cli import ToolError, positive_int, run
from roadseg.models.core.dataset_layouts import DatasetError, read_label_ids
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, refuse_to_overwrite
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD
from roadseg.models.core.road_labels import DATASETS, IGNORE, prediction_lut
from roadseg.models.core.road_metrics import confusion_matrix, format_table, road_metrics
from roadseg.train.paired_transforms import EvalTransform
from roadseg.train.road_datasets import RoadDataset, build_dataset, collate_keep_sizes


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ToolError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


def confusion_matrix_torch(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    valid = target != IGNORE
    index = num_classes * target[valid] + pred[valid]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def logits_to_prediction(logits: torch.Tensor, label_hw: tuple[int, int]) -> torch.Tensor:
    """Class map at the label's size: bilinear resize of the logits, then argmax."""
    if logits.shape[-2:] != label_hw:
        logits = F.interpolate(logits.float(), size=label_hw, mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, *, per_image: bool = False,
             on_prediction=None, progress: bool = True, amp_dtype: torch.dtype | None = None):
    """Return (confusion matrix np.int64 [2, 2], per-image confusion matrices or None).

    ``on_prediction(index, pred uint8 HxW)`` is called per image in loader order (to save masks).
    Under torch.distributed the matrix is summed over all processes.
    """
    model.eval()
    total = torch.zeros(2, 2, dtype=torch.int64, device=device)
    per_image_cms, index = ([] if per_image else None), 0
    for images, masks in tqdm(loader, desc="evaluate", disable=None if progress else True, leave=False):
        images = images.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        if isinstance(masks, torch.Tensor):  # one label size: resize the batch at once
            preds = logits_to_prediction(logits, tuple(masks.shape[-2:]))
        else:  # labels of different sizes: resize each prediction to its own label
            preds = [logits_to_prediction(logit[None], tuple(mask.shape[-2:]))[0]
                     for logit, mask in zip(logits, masks, strict=True)]
        for pred, mask in zip(preds, masks, strict=True):  # per image either way
            cm = confusion_matrix_torch(pred, mask.to(device, non_blocking=True))
            total += cm
            if per_image:
                per_image_cms.append(cm.cpu().numpy())
            if on_prediction is not None:
                on_prediction(index, pred.to(torch.uint8).cpu().numpy())
            index += 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    return total.cpu().numpy(), per_image_cms


def evaluate_prediction_folder(dataset: RoadDataset, pred_dir: Path, encoding: str,
                               progress: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Confusion matrices of predicted mask PNGs against a split's labels (matched by frame id)."""
    if not pred_dir.is_dir():
        raise DatasetError(f"--pred-dir {pred_dir}: no such folder")
    pngs = sorted(pred_dir.rglob("*.png"))
    lut = prediction_lut(dataset.dataset, encoding)
    total, per_image = np.zeros((2, 2), dtype=np.int64), []
    for sample in tqdm(dataset.samples, desc="evaluate", disable=None if progress else True, leave=False):
        matches = [path for path in pngs if sample.frame_id in path.name]
        if len(matches) != 1:
            what = "no prediction" if not matches else f"{len(matches)} predictions ({matches[0].name}, ...)"
            raise DatasetError(f"--pred-dir {pred_dir}: {what} for frame {sample.frame_id}; expected one "
                               f"PNG whose name contains it")
        pred_ids = read_label_ids(matches[0])
        target = dataset.load_mask(sample)
        if pred_ids.shape != target.shape:
            raise DatasetError(f"{matches[0]}: prediction is {pred_ids.shape[0]}x{pred_ids.shape[1]}, its label "
                               f"{sample.label} is {target.shape[0]}x{target.shape[1]}; they must match")
        cm = confusion_matrix(lut[pred_ids], target)
        total += cm
        per_image.append(cm)
    return total, per_image


def report(args, cm: np.ndarray, per_image_cms, frame_ids, extra: dict) -> dict:
    metrics = road_metrics(cm)
    result = {
        "dataset": args.dataset, "split": args.split,
        "data_path": str(args.data_path) if args.data_path else None,
        **extra,
        "metrics": metrics,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_layout": "rows = ground truth, columns = prediction; 0 = not road, 1 = road",
    }
    if per_image_cms is not None:
        result["per_image"] = [{"frame_id": frame_id, **road_metrics(item)}
                               for frame_id, item in zip(frame_ids, per_image_cms, strict=True)]
    return result


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate road segmentation on a dataset split.",
                                     add_help=add_help, prog="train/evaluate.py")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="checkpoint to evaluate")
    source.add_argument("--pred-dir", type=Path, help="folder of predicted mask PNGs (matched by frame id)")
    parser.add_argument("--pred-labels", choices=("binary", "dataset"), default="binary",
                        help="prediction PNG values: binary (1 = road) or the dataset's own ids "
                             "(Cityscapes label ids: road = 7; CamVid: road = 3)")
    parser.add_argument("--dataset", choices=DATASETS, default="synthetic")
    parser.add_argument("--data-path", type=Path, default=None,
                        help="dataset folder (default for synthetic: data/synthetic, generated if missing)")
    parser.add_argument("--split", default="val",
                        help="split name or expression, e.g. train+val:drive=0006R0 (a held-out drive)")
    parser.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="model input size (default: the checkpoint's meta input_size)")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--per-image", action="store_true", help="also report metrics per image")
    parser.add_argument("--save-pred", type=Path, default=None,
                        help="write predicted masks here as <frame_id>_pred.png (1 = road)")
    parser.add_argument("--json", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.json is not None:
        refuse_to_overwrite(args.json, args.overwrite)
    if args.pred_dir is not None:
        dataset = build_dataset(args.dataset, args.data_path, args.split)
        cm, per_image_cms = evaluate_prediction_folder(dataset, args.pred_dir, args.pred_labels)
        extra = {"predictions": str(args.pred_dir), "pred_labels": args.pred_labels}
    else:
        device = select_device(args.device)
        model, ckpt = load_model(args.ckpt)
        meta = ckpt["meta"]
        size = tuple(args.img_size or meta.get("input_size") or ())
        if len(size) != 2:
            raise ToolError(f"{args.ckpt}: meta has no input_size; pass --img-size H W")
        try:
            model.check_input_size(*size)
        except ValueError as err:
            raise ToolError(f"--img-size: {err}") from None
        transform = EvalTransform(size, meta.get("mean", IMAGENET_MEAN), meta.get("std", IMAGENET_STD))
        dataset = build_dataset(args.dataset, args.data_path, args.split, transform)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers,
                            pin_memory=device.type == "cuda", collate_fn=collate_keep_sizes)
        on_prediction = None
        if args.save_pred is not None:
            def on_prediction(index, pred):
                ok, png = cv2.imencode(".png", pred)
                atomic_write_bytes(args.save_pred / f"{dataset.samples[index].frame_id}_pred.png", png.tobytes())
        cm, per_image_cms = evaluate(model.to(device), loader, device, per_image=args.per_image,
                                     on_prediction=on_prediction)
        extra = {"ckpt": str(args.ckpt), "stage": meta.get("stage"), "input_size": list(size),
                 "device": str(device)}
    frame_ids = [sample.frame_id for sample in dataset.samples]
    result = report(args, cm, per_image_cms if args.per_image else None, frame_ids, extra)
    print(format_table([(f"{args.dataset}/{args.split}", result["metrics"])]))
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
