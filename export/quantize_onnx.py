"""Post-training INT8 quantization of an FP32 ONNX (the baseline QAT must beat), behind a parity gate.

``--target onnxruntime``: onnxruntime's ``quantize_static`` in QDQ format: uint8 activations,
int8 per-channel weights (measured about 25% faster on CPU than signed activations), BatchNorm
folded by ``quant_pre_process``; ``reduce_range`` (7-bit weights) is chosen from the CPU's
features: on x86 without VNNI the int8 dot product can saturate. ConvTranspose stays FP32 in
onnxruntime. ``--target openvino``: NNCF with accuracy control, an OpenVINO IR (``roadseg.export.quantize_openvino``).
``--target tensorrt``: ModelOpt's ONNX post-training quantization
(``modelopt.onnx.quantization``), TensorRT-style symmetric int8 Q/DQ at every Conv/ConvTranspose
input (checked by qdq_check; convs under 16 channels stay float, as ModelOpt decides for TensorRT).

Calibration images come from the dataset's ``--calib-split`` (training images by default, never
random data). The result must pass the parity gate against the FP32 file; then road IoU and
onnxruntime latency of both files are reported, measured in one run (interleaved rounds).

    python export/quantize_onnx.py --model runs/camvid/onnx/model_fp32.onnx --target onnxruntime \
        --dataset camvid --data-path ../shared/data/camvid

Writes ``model_int8_ort.onnx``, ``model_int8_trt.onnx`` or ``model_int8_ov.xml`` and its
``*_report.json`` beside the input (or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from roadseg.deploy.latency import checked_onnx_session, cpu_model, interleaved_onnx_latency, onnx_session
from roadseg.export.onnx_export import INPUT_NAME
from roadseg.export.onnx_info import read_onnx_info
from roadseg.export.parity import compare, gate, load_parity_images
from roadseg.models.checkpoint import file_sha256
from roadseg.models.core.cli import ToolError, non_negative_float, non_negative_int, positive_int, run
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, refuse_to_overwrite, require_output_folder
from roadseg.models.core.model_metadata import write_onnx_info
from roadseg.models.core.road_labels import DATASETS

TARGETS = {"onnxruntime": ("int8-ort-ptq", "model_int8_ort"), "tensorrt": ("int8-trt-ptq", "model_int8_trt"),
           "openvino": ("int8-ov-ptq", "model_int8_ov")}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Post-training INT8 quantization of an FP32 ONNX.", add_help=add_help,
                                prog="export/quantize_onnx.py")
    p.add_argument("--model", type=Path, required=True, help="FP32 .onnx written by export/to_onnx.py")
    p.add_argument("--target", choices=tuple(TARGETS), required=True,
                   help="onnxruntime: CPU-friendly QDQ (uint8 activations); tensorrt: ModelOpt Q/DQ for TensorRT; "
                        "openvino: NNCF with accuracy control (an OpenVINO IR, .xml + .bin)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the model's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing INT8 file (kept as it is if the new one fails its gate)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default=None,
                      help="default: the dataset the model was trained on (its metadata)")
    data.add_argument("--data-path", type=Path, default=None)
    data.add_argument("--calib-split", default="train")
    data.add_argument("--calib-images", type=positive_int, default=64)
    data.add_argument("--split", default="val", help="split of the parity gate and the IoU report")
    data.add_argument("--parity-images", type=positive_int, default=16)
    q = p.add_argument_group("quantization")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="activation range calibration (tensorrt target: minmax = ModelOpt's max)")
    q.add_argument("--reduce-range", choices=("auto", "on", "off"), default="auto",
                   help="onnxruntime target: 7-bit weights (auto: on for x86 CPUs without VNNI)")
    gate = p.add_argument_group("parity gate (against the FP32 file)")
    gate.add_argument("--min-agreement", type=float, default=98.0, help="percent of pixels whose class agrees")
    gate.add_argument("--max-iou-delta", type=non_negative_float, default=0.3, help="road IoU points")
    speed = p.add_argument_group("latency (model only; onnxruntime CPU, OpenVINO for --target openvino)")
    speed.add_argument("--threads", type=non_negative_int, default=0, help="0 = onnxruntime's default")
    speed.add_argument("--warmup", type=non_negative_int, default=3)
    speed.add_argument("--runs", type=positive_int, default=20)
    speed.add_argument("--rounds", type=positive_int, default=3, help="interleaved FP32/INT8 rounds")
    p.add_argument("--json", type=Path, default=None)
    return p


def check_args(args) -> None:
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")
    require_output_folder(args.out or args.model.parent)


def cpu_has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            flags = next((line for line in file if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def choose_reduce_range(setting: str) -> bool:
    """7-bit weights keep u8 x s8 products from saturating the 16-bit intermediate of AVX2/AVX-512
    without VNNI (onnxruntime's advice); VNNI and ARM need no reduction."""
    if setting != "auto":
        return setting == "on"
    import platform

    return platform.machine().lower() in ("x86_64", "amd64") and not cpu_has_vnni()


def quantize_for_onnxruntime(fp32_path: Path, batches: list[np.ndarray], method: str, reduce_range: bool,
                             workdir: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{INPUT_NAME: batch} for batch in batches])

        def get_next(self):
            return next(self.items, None)

    prepared, output = workdir / "prepared.onnx", workdir / "int8.onnx"
    # symbolic shape inference fails on these graphs' dynamic sizes; onnx's own inference suffices
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=methods[method])
    return onnx.load(str(output))


def quantize_for_tensorrt(fp32_path: Path, batches: list[np.ndarray], method: str, workdir: Path) -> onnx.ModelProto:
    try:
        import modelopt.onnx.quantization as moq
    except ImportError as err:
        raise ToolError(f"--target tensorrt needs ModelOpt's ONNX extras (pip install -e '.[trt-ptq]'): {err}") \
            from None
    output = workdir / "int8.onnx"
    # Conv inputs only: with MaxPool quantized too, the skip connection's DQ also feeds the decoder's
    # Concat while the up-sampled branch stays float, a mixed Concat that costs TensorRT a re-quantize.
    moq.quantize(str(fp32_path), quantize_mode="int8", calibration_data={INPUT_NAME: np.concatenate(batches)},
                 op_types_to_quantize=["Conv", "ConvTranspose"],
                 calibration_method="max" if method == "minmax" else method, calibration_eps=["cpu"],
                 high_precision_dtype="fp32",  # TensorRT picks FP16 itself at build time (--precision int8)
                 output_path=str(output), log_level="WARNING")
    return onnx.load(str(output))


def main(args: argparse.Namespace) -> int:
    check_args(args)
    checked_onnx_session(args.model)  # a file onnxruntime cannot run (custom op, damage) is one line, now
    info = read_onnx_info(args.model)
    if info.precision != "fp32":
        raise ToolError(f"--model {args.model}: is {info.precision}; post-training quantization starts from FP32")
    precision, stem = TARGETS[args.target]
    args.dataset = args.dataset or info.meta.get("dataset") or "synthetic"
    out = args.out or args.model.parent
    refuse_to_overwrite(out / f"{stem}{'.xml' if args.target == 'openvino' else '.onnx'}", args.overwrite)
    calib = [batch for batch, _ in load_parity_images(args.dataset, args.data_path, args.calib_split,
                                                      args.calib_images, info)]
    if args.target == "openvino":
        from roadseg.export.quantize_openvino import run_openvino_target

        images = load_parity_images(args.dataset, args.data_path, args.split, args.parity_images, info)
        return run_openvino_target(args, info, calib, images, out)
    reduce_range = choose_reduce_range(args.reduce_range) if args.target == "onnxruntime" else False
    print(f"calibrating on {len(calib)} {args.calib_split} images ({args.method}) for {args.target} ...",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="roadseg-ptq-") as tmp:
        if args.target == "onnxruntime":
            proto = quantize_for_onnxruntime(args.model, calib, args.method, reduce_range, Path(tmp))
        else:
            proto = quantize_for_tensorrt(args.model, calib, args.method, Path(tmp))
    settings = {"method": args.method, "calibration_images": len(calib), "calibration_split": args.calib_split,
                "tool": args.target, "reduce_range": reduce_range}
    write_onnx_info(proto, info.with_changes(precision=precision, source=file_sha256(args.model),
                                             extra={"quantization": json.dumps(settings, sort_keys=True)}))
    if args.target == "tensorrt":
        from roadseg.export.qdq_check import require_qdq

        require_qdq(proto, allow_float_small_convs=True)  # ModelOpt leaves those to FP16 on purpose
    data = proto.SerializeToString()

    fp32_bytes = args.model.read_bytes()
    reference, candidate = onnx_session(fp32_bytes), onnx_session(data)
    images = load_parity_images(args.dataset, args.data_path, args.split, args.parity_images, info)
    parity = compare(lambda x: reference.run(None, {INPUT_NAME: x})[0],
                     lambda x: candidate.run(None, {INPUT_NAME: x})[0], images)
    parity["reference"], parity["candidate"] = f"{args.model} (onnxruntime)", f"{stem}.onnx (onnxruntime)"
    report = {"model": str(args.model), "target": args.target, "precision": precision, "quantization": settings,
              "bytes": {"fp32": len(fp32_bytes), "int8": len(data)}, "parity": parity, "cpu": cpu_model()}
    report_path = out / f"{stem}_report.json"
    gate(report, parity, args, f"{stem}.onnx vs {args.model}", out / f"{stem}_failed_report.json")
    onnx_path = atomic_write_bytes(out / f"{stem}.onnx", data)
    latency = interleaved_onnx_latency({"fp32": fp32_bytes, "int8": data}, info.input_size, rounds=args.rounds,
                                       threads=args.threads, warmup=args.warmup, runs=args.runs)
    report.update(onnx=str(onnx_path), latency=latency,
                  speedup_vs_fp32=latency["fp32"]["p50_ms"] / latency["int8"]["p50_ms"])
    atomic_write_json(report_path, report)
    if args.json:
        atomic_write_json(args.json, report)
    print(f"{'file':<22}{'MB':>7}{'road IoU':>10}{'p50 ms':>9}")
    for name, iou in (("fp32", parity["road_iou_reference"]), ("int8", parity["road_iou_candidate"])):
        print(f"{name:<22}{report['bytes'][name] / 1e6:>7.2f}{100 * iou:>10.2f}{latency[name]['p50_ms']:>9.2f}")
    print(f"wrote {onnx_path}: x{report['speedup_vs_fp32']:.2f} vs FP32 in onnxruntime "
          f"({latency['int8']['threads']} threads, {args.rounds} interleaved rounds, {report['cpu']})")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
