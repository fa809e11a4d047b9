"""FP32 ONNX -> FP16 ONNX (``model_fp16.onnx``) with NVIDIA ModelOpt's AutoCast, behind the parity gate.

    python export/to_fp16.py --model runs/camvid/onnx/model_fp32.onnx --dataset camvid \
        --data-path ../shared/data/camvid

Why a named FP16 artifact: TensorRT 11.x removed weak typing (no ``BuilderFlag.FP16``), so an FP16 engine is
built from a graph that is FP16 itself (export/to_tensorrt.py --precision fp16 on TensorRT 11.x takes this file
and refuses the FP32 one); the same holds for onnxruntime's TensorRT execution provider on TensorRT 11.x. On
TensorRT 10.x the FP32 file with the FP16 builder flag stays the usual path, and this file builds there too.

Conversion: ``modelopt.onnx.autocast.convert_to_mixed_precision`` (ModelOpt AutoCast, the converter NVIDIA's
TensorRT 10.x -> 11.x migration guide points to) with ``low_precision_type="fp16"`` and ``keep_io_types=True``.
AutoCast runs the FP32 model on ``--calib-images`` real images of ``--calib-split`` (training images, as the
INT8 calibrations here use) and keeps in FP32 the nodes whose values would not fit FP16 well (outputs beyond
``data_max``, initializers beyond FP16's range), with casts around them: a mixed FP16/FP32 graph.
``--keep-fp32 OP ...`` keeps whole op types in FP32 too. Only when AutoCast cannot be imported does it fall back
to onnxconverter-common's ``float16.convert_float_to_float16(keep_io_types=True)``; the report and the metadata
say which tool converted the file.

Input ``image`` and output ``logits`` stay float32, so the run time feeds the same float32 batch and reads
float32 logits whatever the file. The roadseg metadata of the FP32 file travels along with ``precision`` "fp16",
``source`` the FP32 file's sha256, and ``roadseg.fp16`` (tool, version, calibration, node counts).

Parity gate, always on: onnxruntime (CPU) runs both files on the first ``--parity-images`` images of ``--split``
(what deploy feeds a model, export/parity.py); the file is written only when the class agreement is at least
``--min-agreement`` percent (98) and |road IoU delta| at most ``--max-iou-delta`` points (0.3), the defaults of
the INT8 targets. Writes ``model_fp16.onnx`` and ``model_fp16_report.json`` beside the input (or into
``--out``); an existing file is replaced only with ``--overwrite``; a failed gate writes only
``model_fp16_failed_report.json`` and keeps an earlier good file.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from roadseg.deploy.backends import INPUT_NAME
from roadseg.deploy.latency import checked_onnx_session, cpu_model, onnx_session
from roadseg.export.onnx_info import read_onnx_info
from roadseg.export.parity import compare, gate, load_parity_images
from roadseg.models.core.cli import ToolError, non_negative_float, positive_int, run
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, refuse_to_overwrite, require_output_folder
from roadseg.models.core.model_metadata import write_onnx_info
from roadseg.models.core.road_labels import DATASETS

STEM = "model_fp16"
AUTOCAST = "modelopt.onnx.autocast.convert_to_mixed_precision"
FALLBACK = "onnxconverter_common.float16.convert_float_to_float16"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Convert an FP32 ONNX to FP16 (ModelOpt AutoCast), parity-gated.",
                                add_help=add_help, prog="export/to_fp16.py")
    p.add_argument("--model", type=Path, required=True, help="FP32 .onnx written by export/to_onnx.py")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the model's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model_fp16.onnx (kept as it is if the new one fails its gate)")
    p.add_argument("--keep-fp32", nargs="+", default=[], metavar="OP",
                   help="ONNX op types to keep in FP32 besides those AutoCast keeps (e.g. Resize)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default=None,
                      help="default: the dataset the model was trained on (its metadata)")
    data.add_argument("--data-path", type=Path, default=None)
    data.add_argument("--calib-split", default="train", help="images AutoCast measures the FP32 values on")
    data.add_argument("--calib-images", type=positive_int, default=16)
    data.add_argument("--split", default="val", help="split of the parity gate")
    data.add_argument("--parity-images", type=positive_int, default=16)
    gate = p.add_argument_group("parity gate (against the FP32 file, onnxruntime CPU)")
    gate.add_argument("--min-agreement", type=float, default=98.0, help="percent of pixels whose class agrees")
    gate.add_argument("--max-iou-delta", type=non_negative_float, default=0.3, help="road IoU points")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--verbose", action="store_true", help="AutoCast's info messages too")
    return p


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_calibration(batches: list[np.ndarray], folder: Path) -> Path:
    """One .npz per image ({"image": (1, 3, H, W) float32}): AutoCast's multi-batch calibration folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, batch in enumerate(batches):
        np.savez(folder / f"{index:05d}.npz", **{INPUT_NAME: batch})
    return folder


def convert_with_autocast(fp32_path: Path, calibration: Path, keep_fp32: list[str], verbose: bool = False):
    """(FP16 ModelProto, tool record) from ModelOpt AutoCast; ImportError when AutoCast is not installed."""
    autocast = importlib.import_module("modelopt.onnx.autocast")
    import modelopt

    autocast.configure_logging(logging.INFO if verbose else logging.WARNING)
    proto = autocast.convert_to_mixed_precision(onnx_path=str(fp32_path), low_precision_type="fp16",
                                                op_types_to_exclude=list(keep_fp32) or None, keep_io_types=True,
                                                calibration_data=str(calibration), providers=["cpu"])
    return proto, {"tool": AUTOCAST, "version": getattr(modelopt, "__version__", "?"),
                   "low_precision_type": "fp16", "keep_io_types": True, "op_types_kept_fp32": list(keep_fp32)}


def convert_with_onnxconverter(fp32_path: Path, keep_fp32: list[str]):
    """(FP16 ModelProto, tool record) from onnxconverter-common: the fallback when AutoCast cannot be imported."""
    try:
        import onnxconverter_common
        from onnxconverter_common import float16
    except ImportError as err:
        raise ToolError(f"neither ModelOpt AutoCast nor onnxconverter-common is installed ({err}); "
                        "install the train extra: pip install -e '.[train]'") from None
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32))
    proto = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True, op_block_list=block)
    return proto, {"tool": FALLBACK, "version": getattr(onnxconverter_common, "__version__", "?"),
                   "keep_io_types": True, "op_types_kept_fp32": list(keep_fp32),
                   "why": "ModelOpt AutoCast could not be imported"}


def convert_to_fp16(fp32_path: Path, calibration_batches: list[np.ndarray], keep_fp32: list[str] = (),
                    verbose: bool = False):
    """(FP16 ModelProto, tool record): AutoCast, or onnxconverter-common only when AutoCast is not importable."""
    keep_fp32 = list(keep_fp32)
    with tempfile.TemporaryDirectory(prefix="roadseg-fp16-") as tmp:
        calibration = write_calibration(calibration_batches, Path(tmp) / "calibration")
        try:
            return convert_with_autocast(fp32_path, calibration, keep_fp32, verbose)
        except ImportError as err:
            print(f"ModelOpt AutoCast is not importable ({' '.join(str(err).split())}); falling back to "
                  "onnxconverter-common", file=sys.stderr)
        except (ValueError, RuntimeError, AssertionError, onnx.checker.ValidationError) as err:
            raise ToolError(f"{fp32_path}: ModelOpt AutoCast could not convert it: "
                            f"{' '.join(str(err).split()) or type(err).__name__}") from None
    return convert_with_onnxconverter(fp32_path, keep_fp32)


def io_types(proto) -> dict[str, str]:
    """Each graph input's and output's element type, by name ("FLOAT", "FLOAT16", ...)."""
    return {value.name: onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
            for value in [*proto.graph.input, *proto.graph.output]}


def precision_counts(proto) -> dict:
    """How much of the graph is FP16: nodes (other than Cast) by the type of their first output, and initializers."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {value.name: value.type.tensor_type.elem_type
             for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    nodes = Counter(onnx.TensorProto.DataType.Name(types[node.output[0]]) if node.output[0] in types else "unknown"
                    for node in inferred.graph.node if node.op_type != "Cast")
    initializers = Counter(onnx.TensorProto.DataType.Name(init.data_type) for init in proto.graph.initializer)
    casts = sum(node.op_type == "Cast" for node in proto.graph.node)
    return {"nodes_by_output_type": dict(nodes), "initializers_by_type": dict(initializers), "cast_nodes": casts}


def check_io_float32(proto, where: str) -> None:
    wrong = {name: kind for name, kind in io_types(proto).items() if kind != "FLOAT"}
    if wrong:
        raise ToolError(f"{where}: the FP16 conversion changed the type of {wrong}; the run time feeds and reads "
                        "float32 (keep_io_types)")


def main(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")
    out = args.out or args.model.parent
    require_output_folder(out)
    checked_onnx_session(args.model)  # a file onnxruntime cannot run (custom op, damage) is one line, now
    info = read_onnx_info(args.model)
    if info.precision != "fp32":
        raise ToolError(f"--model {args.model}: is {info.precision}; the FP16 conversion starts from the FP32 "
                        "export (model_fp32.onnx)")
    refuse_to_overwrite(out / f"{STEM}.onnx", args.overwrite)
    dataset = args.dataset or info.meta.get("dataset") or "synthetic"
    calib = [batch for batch, _ in load_parity_images(dataset, args.data_path, args.calib_split,
                                                      args.calib_images, info)]
    print(f"converting {args.model} to FP16 (AutoCast measuring {len(calib)} {args.calib_split} images) ...",
          file=sys.stderr)
    proto, tool = convert_to_fp16(args.model, calib, args.keep_fp32, args.verbose)
    check_io_float32(proto, str(args.model))
    fp32_bytes = args.model.read_bytes()
    counts = precision_counts(proto)
    settings = {**tool, "calibration_images": len(calib), "calibration_split": args.calib_split, **counts}
    write_onnx_info(proto, info.with_changes(precision="fp16", source=sha256_hex(fp32_bytes),
                                             extra={**info.extra, "fp16": json.dumps(settings, sort_keys=True)}))
    data = proto.SerializeToString()

    reference, candidate = onnx_session(fp32_bytes), onnx_session(data)
    images = load_parity_images(dataset, args.data_path, args.split, args.parity_images, info)
    parity = compare(lambda x: reference.run(None, {INPUT_NAME: x})[0],
                     lambda x: candidate.run(None, {INPUT_NAME: x})[0], images)
    parity["reference"], parity["candidate"] = f"{args.model} (onnxruntime CPU)", f"{STEM}.onnx (onnxruntime CPU)"
    report = {"model": str(args.model), "model_sha256": sha256_hex(fp32_bytes), "precision": "fp16",
              "conversion": settings, "io_types": io_types(proto), "dataset": dataset,
              "bytes": {"fp32": len(fp32_bytes), "fp16": len(data)}, "parity": parity, "cpu": cpu_model()}
    gate(report, parity, args, f"{STEM}.onnx vs {args.model}", out / f"{STEM}_failed_report.json")
    onnx_path = atomic_write_bytes(out / f"{STEM}.onnx", data)
    report["onnx"] = str(onnx_path)
    atomic_write_json(out / f"{STEM}_report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    fp16_nodes = counts["nodes_by_output_type"].get("FLOAT16", 0)
    total = sum(counts["nodes_by_output_type"].values())
    print(f"wrote {onnx_path} ({len(data) / 1e6:.2f} MB, was {len(fp32_bytes) / 1e6:.2f} MB; {fp16_nodes}/{total} "
          f"nodes in FP16, input and output float32; converted by {tool['tool']} {tool['version']}); "
          "parity gate passed")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
