"""INT8 for OpenVINO (``roadseg quantize --target openvino``): NNCF post-training quantization of the
FP32 .onnx with accuracy control, behind the same parity gate as the other INT8 targets.

NNCF calibrates on training images (``--calib-split``), then, with ``quantize_with_accuracy_control``,
returns layers to floating point, most harmful first, until the road IoU on the parity images is
within ``--max-iou-delta`` points of the FP32 model's (0.3 by default). The result is an OpenVINO IR,
``model_int8_ov.xml`` + ``.bin``, carrying the same ``roadseg.*`` metadata as the .onnx (precision
``int8-ov-ptq``) in its rt_info; ``roadseg run/bench/predict`` open it like any model. Road IoU of
both files and their OpenVINO latency are measured in one run (interleaved rounds).

    roadseg quantize --model runs/camvid/onnx/model_fp32.onnx --target openvino \\
        --dataset camvid --data-path ../shared/data/camvid
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from roadseg.deploy.benchmark import measure_latency
from roadseg.deploy.latency import cpu_model
from roadseg.deploy.openvino_backend import OpenVinoBackend, import_openvino
from roadseg.deploy.preprocess import logits_to_classes
from roadseg.export.parity import compare, gate
from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.road_metrics import confusion_matrix, road_metrics

PRECISION, STEM = "int8-ov-ptq", "model_int8_ov"


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise ToolError("--target openvino needs NNCF and OpenVINO (pip install 'roadseg[openvino-int8]')") from None
    return nncf


def road_iou_of(compiled, images: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Road IoU of a compiled OpenVINO model over (batch, road mask) pairs, scored at label size."""
    cm = np.zeros((2, 2), np.int64)
    for batch, mask in images:
        logits = compiled(batch)[0][0]
        cm += confusion_matrix(logits_to_classes(logits, mask.shape), mask)
    return float(road_metrics(cm)["road_iou"])


def quantize_for_openvino(fp32_path: Path, calib: list[np.ndarray], images: list, max_drop_points: float,
                          info: ModelInfo):
    """NNCF PTQ with accuracy control; returns the INT8 ov.Model carrying ``info`` as roadseg metadata."""
    ov, nncf = import_openvino(), import_nncf()
    model = ov.Core().read_model(str(fp32_path))
    calibration = nncf.Dataset(calib)
    validation = nncf.Dataset(images, lambda item: item[0])
    quantized = nncf.quantize_with_accuracy_control(
        model, calibration, validation, validation_fn=road_iou_of, max_drop=max_drop_points / 100,
        drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calib))
    for key, value in info.with_changes(precision=PRECISION).to_props().items():
        quantized.set_rt_info(value, ["framework", key])
    return quantized


def save_ir(model, out: Path) -> Path:
    """Write ``model_int8_ov.xml`` + ``.bin`` into ``out``: saved in a temporary folder beside them, then
    renamed, the .bin first, so that a reader never finds an .xml without its weights."""
    ov = import_openvino()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{STEM}.", dir=out))
    try:
        ov.save_model(model, str(staging / f"{STEM}.xml"), compress_to_fp16=False)
        os.replace(staging / f"{STEM}.bin", out / f"{STEM}.bin")
        os.replace(staging / f"{STEM}.xml", out / f"{STEM}.xml")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / f"{STEM}.xml"


def run_openvino_target(args, info: ModelInfo, calib: list[np.ndarray], images: list, out: Path) -> int:
    """The --target openvino path of ``roadseg quantize``: quantize, gate, time, write."""
    print(f"NNCF: calibrating on {len(calib)} images, accuracy control on {len(images)} images "
          f"(at most {args.max_iou_delta} road IoU points lost) ...", file=sys.stderr)
    quantized = quantize_for_openvino(args.model, calib, images, args.max_iou_delta, info)
    with tempfile.TemporaryDirectory(prefix="roadseg-ov-") as tmp:
        candidate_path = save_ir(quantized, Path(tmp))
        reference = OpenVinoBackend(args.model, args.threads)
        candidate = OpenVinoBackend(candidate_path, args.threads)
        parity = compare(reference.infer, candidate.infer, images)
        parity["reference"], parity["candidate"] = f"{args.model} (OpenVINO f32)", f"{STEM}.xml (OpenVINO)"
        report = {"model": str(args.model), "target": "openvino", "precision": PRECISION,
                  "quantization": {"tool": "nncf.quantize_with_accuracy_control", "calibration_images": len(calib),
                                   "calibration_split": args.calib_split, "max_drop_points": args.max_iou_delta},
                  "parity": parity, "cpu": cpu_model()}
        gate(report, parity, args, f"{STEM}.xml vs {args.model}", out / f"{STEM}_failed_report.json")
        timing = SimpleNamespace(rounds=args.rounds, warmup=args.warmup, runs=args.runs)
        latency = measure_latency([reference, candidate], [[info.input_size]] * 2, timing)
        xml_path = save_ir(quantized, out)
    report.update(xml=str(xml_path), latency={"fp32": latency[(0, info.input_size)],
                                              "int8": latency[(1, info.input_size)]})
    report["speedup_vs_fp32"] = report["latency"]["fp32"]["p50_ms"] / report["latency"]["int8"]["p50_ms"]
    atomic_write_json(out / f"{STEM}_report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    print(f"{'file':<22}{'road IoU':>10}{'p50 ms':>9}")
    for name, iou in (("fp32", parity["road_iou_reference"]), ("int8", parity["road_iou_candidate"])):
        print(f"{name:<22}{100 * iou:>10.2f}{report['latency'][name]['p50_ms']:>9.2f}")
    print(f"wrote {xml_path}: x{report['speedup_vs_fp32']:.2f} vs FP32 in OpenVINO ({report['cpu']})")
    return 0
