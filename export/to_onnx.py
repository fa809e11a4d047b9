"""Export a checkpoint (stage train, pruned or qat) to ONNX, behind an always-on parity gate.

The ONNX has dynamic batch, height and width, opset >= 17, is simplified with onnxslim and
carries the checkpoint's arch and meta in ``metadata_props`` (models.model_metadata), so deploy
needs no size or normalisation flags. A QAT checkpoint becomes an INT8 file with explicit
Q/DQ (what TensorRT builds INT8 engines from), checked by export/qdq_check.py's rules.

Parity gate: onnxruntime runs the file and PyTorch runs the checkpoint on ``--parity-images``
validation images; the export fails (non-zero exit, no .onnx written) when the class agreement is
below ``--min-agreement`` percent or the road IoU moves by more than ``--max-iou-delta`` points.

    python export/to_onnx.py --ckpt runs/camvid/pruned/best.pt --dataset camvid \
        --data-path ../shared/data/camvid --out runs/camvid/onnx

Writes ``--out/model_fp32.onnx`` (or ``model_int8_qat.onnx`` from a QAT checkpoint) and
``--out/model_fp32_report.json`` (the parity figures, thresholds, opset, sizes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from roadseg.deploy.latency import onnx_session
from roadseg.export.onnx_export import DEFAULT_OPSET, INPUT_NAME, build_onnx
from roadseg.export.parity import compare, gate, load_parity_images
from roadseg.models.checkpoint import file_sha256, load_model
from roadseg.models.core.cli import ToolError, non_negative_float, positive_int, run
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, refuse_to_overwrite, require_output_folder
from roadseg.models.core.model_metadata import from_checkpoint
from roadseg.models.core.road_labels import DATASETS

STEMS = {"fp32": "model_fp32", "int8-qat-qdq": "model_int8_qat"}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Export a checkpoint to ONNX with a parity gate.", add_help=add_help,
                                prog="export/to_onnx.py")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint (stage train, pruned or qat)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing export (kept as it is if the new one fails its gate)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    gate = p.add_argument_group("parity gate")
    gate.add_argument("--dataset", choices=DATASETS, default=None,
                      help="default: the dataset the model was trained on (its metadata)")
    gate.add_argument("--data-path", type=Path, default=None)
    gate.add_argument("--split", default="val")
    gate.add_argument("--parity-images", type=positive_int, default=16)
    gate.add_argument("--min-agreement", type=float, default=99.9, help="percent of pixels whose class agrees")
    gate.add_argument("--max-iou-delta", type=non_negative_float, default=0.1, help="road IoU points")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    return p


def check_args(args) -> None:
    if args.opset < 17:
        raise ToolError(f"--opset {args.opset}: expected >= 17")
    if not 0 <= args.min_agreement <= 100:
        raise ToolError(f"--min-agreement {args.min_agreement}: expected a percentage 0-100")
    require_output_folder(args.out)


def torch_logits(model: torch.nn.Module):
    @torch.inference_mode()
    def logits(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch)).float().numpy()

    return logits


def onnx_logits(model_bytes: bytes):
    session = onnx_session(model_bytes)
    return lambda batch: session.run(None, {INPUT_NAME: batch})[0]


def main(args: argparse.Namespace) -> int:
    check_args(args)
    model, ckpt = load_model(args.ckpt)
    precision = "int8-qat-qdq" if ckpt["meta"].get("stage") == "qat" else "fp32"
    info = from_checkpoint(ckpt, precision, source=file_sha256(args.ckpt))
    if "input_size" not in ckpt["meta"]:
        raise ToolError(f"{args.ckpt}: meta has no input_size (was it written by this toolchain?)")
    stem = STEMS[precision]
    refuse_to_overwrite(args.out / f"{stem}.onnx", args.overwrite)
    args.dataset = args.dataset or ckpt["meta"].get("dataset") or "synthetic"
    proto = build_onnx(model, info, args.opset, simplified=not args.no_simplify)
    if precision.startswith("int8"):
        from roadseg.export.qdq_check import require_qdq

        require_qdq(proto)
    data = proto.SerializeToString()

    images = load_parity_images(args.dataset, args.data_path, args.split, args.parity_images, info)
    report = {"ckpt": str(args.ckpt), "ckpt_sha256": info.source, "precision": precision, "opset": args.opset,
              "simplified": not args.no_simplify, "input_size": list(info.input_size), "bytes": len(data),
              "parity": compare(torch_logits(model), onnx_logits(data), images)}
    report["parity"]["reference"], report["parity"]["candidate"] = "PyTorch checkpoint", "onnxruntime CPU"
    report_path = args.out / f"{stem}_report.json"
    gate(report, report["parity"], args, f"{stem}.onnx vs {args.ckpt}", args.out / f"{stem}_failed_report.json")
    onnx_path = atomic_write_bytes(args.out / f"{stem}.onnx", data)
    report["onnx"] = str(onnx_path)
    atomic_write_json(report_path, report)
    if args.json:
        atomic_write_json(args.json, report)
    print(f"wrote {onnx_path} ({len(data) / 1e6:.2f} MB, {precision}, opset {args.opset}); parity gate passed")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
