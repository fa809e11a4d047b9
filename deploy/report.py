"""One report over a run folder: the chain's table, its pictures and its provenance, as report.html and report.md.

    roadseg report runs/demo                                   # make demo runs this last
    roadseg report runs/demo --frames data/synthetic_drive     # + overlay frames with false positives/negatives
    roadseg report runs/camvid --frames ../shared/data/camvid --frames-model runs/camvid/onnx/model_fp32.onnx

Scans RUN_DIR (and its subfolders) for what the stages write: ``stages.json`` (``make demo``: each stage's
command, status, seconds and one-line reason), ``train_report.json`` and ``metrics.jsonl`` (training, and
the fine-tuning inside prune and qat), eval JSON (``roadseg eval --json``), ``prune_report.json``,
``qat_report.json``, the ``<stem>_report.json`` of exports and quantizations (and ``*_failed_report.json``),
TensorRT engine manifests, ``benchmark.json``, the ``*.summary.json`` of ``roadseg run``, the ``.onnx``
files' roadseg metadata and every checkpoint's sha256. It reads JSON and ONNX metadata only (no torch).

Writes, atomically, ``RUN_DIR/report.html`` (self-contained: the pictures are PNG data URIs) and
``RUN_DIR/report.md`` (the same tables and text, without the pictures):

- a headline that names its data (figures on synthetic scenes are labelled synthetic);
- the stages: status, seconds and, for a failed or skipped one, its one-line reason;
- the chain table: stage, artifact, file size, params, GMACs, latency p50/p90 and FPS (where each was
  measured: backend, threads, CPU), road IoU/precision/recall and the IoU delta to the full (first
  trained) model; and every benchmark run with its ratios to its first row (the peer);
- pictures (matplotlib; without it the report says so and keeps the tables): training curves, road IoU
  against latency with the peer, per-layer widths before and after pruning, and with ``--frames`` a strip
  of labelled frames re-run through an exported model (``--frames-model``, default the model the run
  deployed), false positives and false negatives in their own colours (OpenCV; no matplotlib needed);
- provenance: the commands, the training recipe, seeds, versions, every checkpoint's sha256 and what
  it was made from.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import math
import platform
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from roadseg.models.core.arch_widths import all_widths
from roadseg.models.core.cli import ToolError, non_negative_int, positive_int, run
from roadseg.models.core.demo_stages import STAGES_FILE, read_stages
from roadseg.models.core.fileio import atomic_write_bytes, file_sha256
from roadseg.models.core.model_metadata import MetadataError, ModelInfo
from roadseg.models.core.zoo import INT8_SUFFIX, current_zoo_dir, read_manifest

# torchvision peers (models/peers.py), as roadseg.deploy.benchmark names them
PEER_NAMES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
REPORT_NAMES = ("report.html", "report.md")
# the stage (make demo's stages.json name) that writes each kind of artifact
STAGE_OF_PRECISION = {"fp32": "export-fp32", "int8-qat-qdq": "export-qat", "int8-ort-ptq": "quantize",
                      "int8-trt-ptq": "quantize"}
# overlay colours (RGB): road found, false road, missed road
TP_RGB, FP_RGB, FN_RGB = (40, 200, 90), (255, 140, 0), (70, 90, 255)
MIN_IOU_SPAN = 5.0  # points: an IoU axis never spans less, so noise does not look like a trend


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="One HTML and Markdown report over a run folder (make demo's runs/demo, "
                                            "or any folder of fit/prune/qat/export/bench/run outputs).",
                                add_help=add_help, prog="deploy/report.py")
    p.add_argument("run_dir", type=Path, help="the run folder; report.html and report.md are written into it")
    frames = p.add_argument_group("overlay frames (false positives and negatives)")
    frames.add_argument("--frames", type=Path, default=None, metavar="DIR",
                        help="a labelled dataset folder (Cityscapes or CamVid layout, e.g. the demo's synthetic "
                             "drive) to draw a strip of overlay frames from")
    frames.add_argument("--frames-split", default="val")
    frames.add_argument("--frames-count", type=positive_int, default=4, help="frames in the strip, evenly spaced")
    frames.add_argument("--frames-model", type=Path, default=None,
                        help="the .onnx to run on them (default: the model the run deployed, else its FP32 export)")
    frames.add_argument("--threads", type=non_negative_int, default=0, help="onnxruntime threads (0 = its default)")
    p.add_argument("--title", default=None, help="the report's title (default: roadseg report: RUN_DIR)")
    return p


# reading the run folder -------------------------------------------------------------------------
@dataclass
class Found:
    run_dir: Path
    stages: list = field(default_factory=list)
    trains: list = field(default_factory=list)      # {"dir", "report", "history", "role"}
    evals: list = field(default_factory=list)       # {"path", "report"}
    prunes: list = field(default_factory=list)      # {"dir", "report"}
    qats: list = field(default_factory=list)        # {"dir", "report"}
    exports: list = field(default_factory=list)     # {"path", "report", "onnx", "failed"}
    engines: list = field(default_factory=list)     # {"path", "report"}
    benches: list = field(default_factory=list)     # {"path", "report"}
    deploys: list = field(default_factory=list)     # {"path", "summary"}
    models: dict = field(default_factory=dict)      # .onnx path -> ModelInfo or None
    files: dict = field(default_factory=dict)       # .pt/.onnx/.engine path -> sha256
    notes: list = field(default_factory=list)


def read_json(path: Path, notes: list):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        notes.append(f"{path}: not readable JSON ({type(err).__name__}); left out")
        return None


def read_history(path: Path, notes: list) -> list[dict]:
    history = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                history.append(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        notes.append(f"{path}: not readable JSON lines; training curves left out")
        return []
    return history


def onnx_info(path: Path) -> ModelInfo | None:
    """The roadseg metadata of an .onnx file (None for a file without it or that onnxruntime cannot open)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ModelInfo.from_props(session.get_modelmeta().custom_metadata_map, str(path))
    except (MetadataError, RuntimeError, ValueError, OSError):
        return None
    except Exception as err:  # onnxruntime's own load errors derive from Exception only
        if type(err).__module__.startswith("onnxruntime"):
            return None
        raise


def train_role(folder: Path) -> str:
    if (folder / "prune_report.json").exists():
        return "prune fine-tuning"
    if (folder / "qat_report.json").exists():
        return "QAT fine-tuning"
    if folder.name.startswith("step") and (folder.parent / "prune_report.json").exists():
        return f"prune {folder.name} fine-tuning"
    return "train"


def scan(run_dir: Path) -> Found:
    found = Found(run_dir)
    try:
        found.stages = read_stages(run_dir)
    except (ValueError, json.JSONDecodeError, OSError, UnicodeDecodeError) as err:
        found.notes.append(f"{run_dir / STAGES_FILE}: not readable ({err}); stage times left out")
    paths = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in paths:
        if path.parent == run_dir and path.name in (*REPORT_NAMES, STAGES_FILE):
            continue
        name = path.name
        if path.suffix in (".pt", ".onnx", ".engine"):
            found.files[path] = file_sha256(path)
            if path.suffix == ".onnx":
                found.models[path] = onnx_info(path)
            continue
        if name == "metrics.jsonl" or path.suffix != ".json":
            continue
        data = read_json(path, found.notes)
        if not isinstance(data, dict):
            continue
        if name == "train_report.json":
            jsonl = path.with_name("metrics.jsonl")
            history = read_history(jsonl, found.notes) if jsonl.exists() else []
            found.trains.append({"dir": path.parent, "report": data, "history": history,
                                 "role": train_role(path.parent)})
        elif name == "prune_report.json":
            found.prunes.append({"dir": path.parent, "report": data})
        elif name == "qat_report.json":
            found.qats.append({"dir": path.parent, "report": data})
        elif name == "benchmark.json" and isinstance(data.get("rows"), list):
            found.benches.append({"path": path, "report": data})
        elif (name.endswith(".summary.json") or name == "summary.json") and "frames" in data:
            found.deploys.append({"path": path, "summary": data})
        elif name.endswith("_report.json") and "parity" in data:
            failed = name.endswith("_failed_report.json")
            stem = name.removesuffix("_failed_report.json") if failed else name.removesuffix("_report.json")
            onnx = path.with_name(stem + ".onnx")
            found.exports.append({"path": path, "report": data, "onnx": None if failed else onnx, "failed": failed})
        elif str(data.get("format", "")).startswith("roadseg-trt-engine"):
            found.engines.append({"path": path, "report": data})
        elif "metrics" in data and "confusion_matrix" in data:
            found.evals.append({"path": path, "report": data})
    return found


# small helpers ----------------------------------------------------------------------------------
def tail_key(path) -> tuple[str, ...]:
    """The last two parts of a path (``full/best.pt``): how reports written from another working folder,
    with relative paths, are matched to the files found here."""
    return tuple(Path(str(path)).parts[-2:])


def rel(path, run_dir: Path) -> str:
    path = Path(str(path))
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


def pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.2f}"


def num(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds:.0f} s ({int(seconds // 60)} min {seconds % 60:.0f} s)"


def stage_index(found: Found) -> dict[str, dict]:
    return {stage.get("name"): stage for stage in found.stages}


def full_model(found: Found) -> dict | None:
    """The first trained model of the run (role train), by the time its report was written."""
    trains = [t for t in found.trains if t["role"] == "train"]
    return min(trains, key=lambda t: (t["dir"] / "train_report.json").stat().st_mtime, default=None)


def bench_row_for(found: Found, model_path) -> tuple[dict, dict] | tuple[None, None]:
    """(row, benchmark report) of the first benchmark that timed ``model_path`` and scored it when any did."""
    hits = [(r, b["report"]) for b in found.benches for r in b["report"]["rows"]
            if tail_key(r.get("path", "")) == tail_key(model_path)]
    hits.sort(key=lambda hit: hit[0].get("road_iou") is None)
    return hits[0] if hits else (None, None)


def where_timed(row: dict, bench: dict) -> str:
    threads = row.get("threads", bench.get("threads"))
    return f"bench ({row.get('backend', '?')}, {threads} threads)"


def prune_latency(report: dict, which: str) -> dict:
    """The p50 of the unpruned ("original") or the pruned model from the prune step's side-by-side timing
    (both graphs in interleaved rounds), else from its separate measurement of that model."""
    side_by_side = report.get("summary", {}).get("latency_p50_ms_interleaved", {})
    latency = report.get("original" if which == "original" else "finetuned", {}).get("latency", {})
    threads = latency.get("threads", report.get("settings", {}).get("threads"))
    where = f"{latency.get('backend', 'onnxruntime')}, {threads} threads"
    if which in side_by_side:
        p50 = side_by_side[which]
        return {"p50": p50, "fps": 1000 / p50 if p50 else None, "timed": f"prune step, interleaved ({where})",
                "note": "p50 from the prune step's side-by-side timing of the unpruned and the pruned graph "
                        "(interleaved rounds; it keeps no p90)"}
    return {"p50": latency.get("p50_ms"), "p90": latency.get("p90_ms"), "fps": latency.get("fps"),
            "timed": f"prune step ({where})"}


# the chain table --------------------------------------------------------------------------------
def chain_rows(found: Found) -> list[dict]:
    """One row per artifact in the order of the chain, plus each stage that failed or was skipped."""
    rows = []

    def add(stage: str, artifact, **figures) -> dict:
        row = {"stage": stage, "artifact": rel(artifact, found.run_dir) if artifact else "-", "path": artifact,
               "mb": Path(artifact).stat().st_size / 1e6 if artifact and Path(artifact).is_file() else None,
               "params": None, "gmacs": None, "p50": None, "p90": None, "fps": None, "timed": "",
               "val": None, "scored": "", "same_split": True, "note": ""}
        row.update(figures)
        rows.append(row)
        return row

    full = full_model(found)
    prune_of = {tail_key(p["report"].get("ckpt", "")): p for p in found.prunes}
    if full is not None:
        report, best = full["report"], full["dir"] / "best.pt"
        ev = next((e for e in found.evals if tail_key(e["report"].get("ckpt", "")) == tail_key(best)), None)
        row = add("train", best if best.exists() else None, params=report.get("complexity", {}).get("params"),
                  gmacs=report.get("complexity", {}).get("gmacs"), role="full")
        if ev is not None:
            row.update(val=ev["report"]["metrics"], scored=f"eval, {ev['report'].get('split', 'val')} split")
        else:
            row.update(val=report.get("best_val"), scored="train's best val epoch")
        prune = prune_of.get(tail_key(best))
        if prune is not None:
            row.update(prune_latency(prune["report"], "original"))
    for prune in found.prunes:
        f = prune["report"].get("finetuned") or prune["report"].get("pruned")
        if not f:
            continue
        add("prune", prune["dir"] / "best.pt", params=f.get("params"), gmacs=f.get("gmacs"),
            val=f.get("val"), scored="prune step, val split", **prune_latency(prune["report"], "pruned"))
    for qat in found.qats:
        train = next((t for t in found.trains if t["dir"] == qat["dir"]), None)
        complexity = (train or {}).get("report", {}).get("complexity", {})
        add("qat", qat["dir"] / "best.pt", params=complexity.get("params"), gmacs=complexity.get("gmacs"),
            val=qat["report"].get("qat"), scored="qat step, val split",
            note="a fake-quantized PyTorch model, not timed: its Q/DQ ONNX (export-qat) is")
    for export in found.exports:
        report = export["report"]
        precision = report.get("precision", "fp32")
        if export["failed"]:
            parity = report.get("parity", {})
            add(STAGE_OF_PRECISION.get(precision, "export"), None, status="failed",
                reason=f"parity gate failed ({export['path'].name}): agreement "
                       f"{num(parity.get('agreement_percent'), '.3f')}%, IoU delta "
                       f"{num(parity.get('road_iou_delta_points'), '+.3f')} points")
            continue
        info = found.models.get(export["onnx"])
        if info is not None and info.arch.get("name") in PEER_NAMES:
            continue  # the peer's export: its own row, from the benchmark
        complexity = info.meta.get("complexity", {}) if info else {}
        row = add(STAGE_OF_PRECISION.get(precision, "export"), export["onnx"] if export["onnx"].exists() else None,
                  params=complexity.get("params"), gmacs=complexity.get("gmacs"), precision=precision)
        bench_row, bench = bench_row_for(found, export["onnx"])
        if bench_row is not None:
            row.update(p50=bench_row.get("p50_ms"), p90=bench_row.get("p90_ms"), fps=bench_row.get("fps"),
                       timed=where_timed(bench_row, bench))
            if bench_row.get("val"):
                row.update(val=bench_row["val"], scored=f"bench, {bench.get('eval', {}).get('split', 'val')} split")
        if row["val"] is None:
            parity = report.get("parity", {})
            if parity.get("road_iou_candidate") is not None:
                row.update(val={"road_iou": parity["road_iou_candidate"]},
                           scored=f"parity gate, {parity.get('images')} images")
    for engine in found.engines:
        manifest = engine["report"]
        path = engine["path"].with_suffix(".engine")
        add("engine", path if path.exists() else None, precision=manifest.get("components", {}).get("precision"))
    peers = {}
    for bench in found.benches:
        for r in bench["report"]["rows"]:
            if r.get("arch_name") in PEER_NAMES and tail_key(r.get("path", "")) not in peers:
                peers[tail_key(r.get("path", ""))] = (r, bench["report"])
    for r, bench in peers.values():
        untrained = "untrained" in r.get("name", "")
        add("export-peer", Path(r["path"]) if Path(r["path"]).exists() else found.run_dir / Path(*tail_key(r["path"])),
            params=r.get("params"), gmacs=r.get("gmacs"), p50=r.get("p50_ms"), p90=r.get("p90_ms"), fps=r.get("fps"),
            timed=where_timed(r, bench), val=r.get("val"), peer=True,
            scored="not scored: untrained peer" if untrained else ("bench" if r.get("val") else ""))
    for deploy in found.deploys:
        s = deploy["summary"]
        backend = s.get("backend", {})
        model_only, end_to_end = s.get("model_only") or {}, s.get("end_to_end") or {}
        road = s.get("road")
        outputs = [o for o in s.get("outputs", []) if Path(o).exists()]
        add("deploy", Path(outputs[0]) if outputs else None, p50=model_only.get("p50_ms"), p90=model_only.get("p90_ms"),
            fps=end_to_end.get("fps"), timed=f"roadseg run ({backend.get('backend', '?')}, {backend.get('threads')} "
                                             f"threads); FPS end to end",
            val=road, scored=f"{road['frames']} frames of {Path(str(s.get('source', {}).get('uri', '?'))).name}"
            if road else "",
            same_split=False, model=backend.get("model"), source=Path(str(s.get("source", {}).get("uri", ""))).name,
            note=("p50/p90 model only, FPS end to end (frame read to frame written); "
                  + (s.get("timing_note") or f"{s.get('frames')} frames, {s.get('warmup_frames_excluded')} warm-up "
                                             "frames left out of the timing")))

    stages = stage_index(found)
    for row in rows:
        stage = stages.get(row["stage"])
        row.setdefault("status", stage.get("status", "ok") if stage else "found")
        row.setdefault("reason", stage.get("reason", "") if stage else "")
        row["seconds"] = stage.get("seconds") if stage else None
    named = {row["stage"] for row in rows}
    for stage in found.stages:  # the stages that wrote nothing to show: failed, skipped, or bookkeeping
        if stage.get("name") not in named and stage.get("status") != "ok":
            add(stage["name"], None, status=stage.get("status"), reason=stage.get("reason", ""),
                seconds=stage.get("seconds"))
    order = {stage.get("name"): i for i, stage in enumerate(found.stages)}
    rows.sort(key=lambda row: order.get(row["stage"], len(order)))
    full_iou = next((r["val"]["road_iou"] for r in rows if r.get("role") == "full" and r["val"]), None)
    for row in rows:
        iou = (row["val"] or {}).get("road_iou")
        row["delta"] = (100 * (iou - full_iou) if iou is not None and full_iou is not None and row["same_split"]
                        and row.get("role") != "full" else None)
    return rows


CHAIN_HEADER = ("stage", "artifact", "status", "s", "MB", "params", "GMACs", "p50 ms", "p90 ms", "FPS",
                "road IoU %", "prec. %", "recall %", "IoU vs full (points)", "timed in", "scored on")
ERROR_PREFIX = re.compile(r"^roadseg [\w-]+: error: ")


def chain_cells(row: dict) -> list[str]:
    val = row["val"] or {}
    reason = ERROR_PREFIX.sub("", row.get("reason") or "")  # the stage column names the command
    status = row["status"] + (f": {reason}" if reason else "")
    if row.get("role") == "full":
        delta = "(reference)"
    elif row["delta"] is not None:
        delta = f"{row['delta']:+.2f}"
    else:
        delta = "other frames" if not row["same_split"] and val else "-"
    params = f"{row['params']:,}" if row["params"] is not None else "-"
    return [row["stage"], row["artifact"], status, num(row.get("seconds"), ".1f"), num(row["mb"]), params,
            num(row["gmacs"], ".3f"), num(row["p50"]), num(row["p90"]), num(row["fps"], ".1f"),
            pct(val.get("road_iou")), pct(val.get("precision")), pct(val.get("recall")), delta,
            row["timed"], row["scored"]]


def stage_cells(stage: dict) -> list[str]:
    return [stage.get("name", "?"), stage.get("status", "?"), num(stage.get("seconds"), ".1f"),
            stage.get("reason", "")]


def bench_cells(row: dict) -> list[str]:
    size = "x".join(map(str, row.get("size", []))) or "-"
    params = f"{row['params']:,}" if row.get("params") is not None else "-"
    return [row.get("name", "?"), row.get("precision", "?"), str(row.get("backend", "?")), size, params,
            num(row.get("gmacs"), ".3f"), num(row.get("p50_ms")), num(row.get("p90_ms")), num(row.get("fps"), ".1f"),
            pct(row.get("road_iou")), f"x{row['speedup']:.2f}" if row.get("speedup") else "-"]


BENCH_HEADER = ("model", "precision", "backend", "size", "params", "GMACs", "p50 ms", "p90 ms", "FPS", "road IoU %",
                "speed-up vs first row")


# headline ---------------------------------------------------------------------------------------
def data_kind(found: Found) -> str:
    datasets = {t["report"].get("dataset") for t in found.trains} | \
               {b["report"].get("eval", {}).get("dataset") for b in found.benches}
    datasets.discard(None)
    return ", ".join(sorted(datasets)) or "unknown"


def zoo_lines(found: Found) -> list[str]:
    """The shipped zoo models timed in this run against the peer, with their real-road figures quoted
    from the zoo manifest (the model card's CamVid evaluation, not measured here)."""
    try:
        zoo_dir = current_zoo_dir().resolve()
        entries = read_manifest()["models"]
    except ToolError:
        return []
    by_file = {entry["files"]["onnx"]["file"]: (name, entry) for name, entry in entries.items()
               if "onnx" in entry.get("files", {})}
    by_file |= {entry["files"]["openvino_int8"]["file"]: (name + INT8_SUFFIX, entry) for name, entry in entries.items()
                if "openvino_int8" in entry.get("files", {})}
    lines = []
    for bench in found.benches:
        rows = bench["report"]["rows"]
        for row in rows:
            path = Path(row.get("path", ""))
            if path.name not in by_file or path.resolve().parent != zoo_dir:
                continue
            name, entry = by_file[path.name]
            size = "x".join(map(str, row.get("size", [])))
            text = (f"Model zoo, real roads: {name} ({entry.get('arch')}, {num(entry.get('params'), ',')} params) "
                    f"runs in {row['p50_ms']:.2f} ms at {size} ({row.get('backend')}, {bench['report'].get('cpu')})")
            first = next((r for r in rows if r.get("size") == row.get("size")), None)
            if first is not None and first is not row and first.get("arch_name") in PEER_NAMES:
                text += f", {row.get('speedup', 0):.2f}x the speed of the {first['arch_name']} peer in the same run"
            evaluations = entry.get("evaluations") or {}
            quoted = [f"{what.replace('_', ' ')} road IoU {pct(e.get('road_iou'))}%"
                      for what, e in evaluations.items() if isinstance(e, dict) and "road_iou" in e]
            if quoted:
                of_fp32 = "its FP32 model: " if name.endswith(INT8_SUFFIX) else ""
                text += f"; {of_fp32}{', '.join(quoted)} ({entry.get('dataset') or 'its data'}, from the model " \
                        "card, not measured in this run)"
            lines.append(text + ".")
    return lines


def headline(found: Found, rows: list[dict]) -> list[str]:
    """A few sentences a person reads first; they say what data every figure is on."""
    lines = zoo_lines(found)
    if "synthetic" in data_kind(found):
        lines.append("Synthetic data: every road IoU here is measured on generated road scenes (the synthetic set "
                     "and a synthetic drive). It shows the chain working end to end on this machine, not how well "
                     "a model finds real roads (for that, see the CamVid tables in README.md).")
    statuses = [s.get("status") for s in found.stages]
    if statuses:
        counts = {k: statuses.count(k) for k in ("ok", "skipped", "failed")}
        total = sum(s.get("seconds") or 0 for s in found.stages)
        text = (f"{len(statuses)} stages: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; "
                f"{total:.0f} s of stage time.")
        failed = [s for s in found.stages if s.get("status") == "failed"]
        if failed:
            text += " Failed: " + "; ".join(f"{s['name']} ({s.get('reason', '')})" for s in failed) + "."
        lines.append(text)
    full = next((r for r in rows if r.get("role") == "full"), None)
    deployed = next((r for r in rows if r["stage"] == "deploy"), None)
    model_path = deployed.get("model") if deployed else None
    pick = None
    if model_path:
        pick = next((r for r in rows if r["path"] and r["stage"] != "deploy"
                     and tail_key(r["path"]) == tail_key(model_path)), None)
    pick = pick or next((r for r in rows if r["stage"] == "export-fp32" and r["p50"] is not None), None)
    if pick is not None and pick["p50"] is not None:
        bench_row, bench = bench_row_for(found, pick["path"])
        text = f"{pick['artifact']} ({pick.get('precision', 'fp32')}): p50 {pick['p50']:.2f} ms model only"
        if bench_row is not None:
            first = next((r for r in bench["rows"] if r.get("size") == bench_row.get("size")), None)
            size = "x".join(map(str, bench_row.get("size", [])))
            text += (f" at {size} ({bench_row.get('backend')}, {bench_row.get('threads', bench.get('threads'))} "
                     f"threads, {bench.get('cpu', 'CPU not named')})")
            if first is not None and first is not bench_row and first.get("arch_name") in PEER_NAMES:
                untrained = " untrained" if "untrained" in first.get("name", "") else ""
                text += (f", {bench_row.get('speedup', 0):.2f}x as fast as the{untrained} {first['arch_name']} peer "
                         f"({first['p50_ms']:.2f} ms) in the same run")
        if pick["val"]:
            text += f"; road IoU {pct(pick['val'].get('road_iou'))}% ({pick['scored']})"
            if full is not None and pick["delta"] is not None:
                text += f", {pick['delta']:+.2f} points against the full model's {pct(full['val']['road_iou'])}%"
        lines.append(text + ".")
    if deployed is not None and deployed["val"]:
        fps = f"{deployed['fps']:.1f} FPS end to end" if deployed["fps"] else "FPS withheld (too few timed frames)"
        source = deployed.get("source") or "its source"
        lines.append(f"Deployed with roadseg run on {source}: {fps}, road IoU {pct(deployed['val'].get('road_iou'))}% "
                     f"over {deployed['val'].get('frames')} labelled frames.")
    return lines


# pictures ---------------------------------------------------------------------------------------
def padded_range(values: list[float], min_span: float, low: float = 0.0, high: float = 100.0) -> tuple[float, float]:
    """An axis range around ``values`` at least ``min_span`` wide, inside [low, high]."""
    lo, hi = min(values), max(values)
    pad = max((min_span - (hi - lo)) / 2, 0.1 * (hi - lo), 0.5)
    lo, hi = lo - pad, hi + pad
    if lo < low:
        lo, hi = low, min(high, hi + (low - lo))
    if hi > high:
        lo, hi = max(low, lo - (hi - high)), high
    return lo, hi


def figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def plot_curves(found: Found) -> bytes | None:
    """Training loss and val road IoU per epoch of every training in the run (markers: a short run shows its points)."""
    import matplotlib.pyplot as plt

    trains = [t for t in found.trains if t["history"]]
    if not trains:
        return None
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 3.6))
    ious = []
    for t in trains:
        label = f"{t['role']} ({rel(t['dir'], found.run_dir)})"
        epochs = [h["epoch"] + 1 for h in t["history"]]
        ax_loss.plot(epochs, [h.get("train_loss") for h in t["history"]], marker="o", label=label)
        scored = [h for h in t["history"] if h.get("val") and h["val"].get("road_iou") is not None]
        values = [100 * h["val"]["road_iou"] for h in scored]
        ious += values
        ax_iou.plot([h["epoch"] + 1 for h in scored], values, marker="o", label=label)
    ax_loss.set(xlabel="epoch of its stage", ylabel="training loss", title="training loss")
    ax_loss.set_ylim(bottom=0)
    ax_iou.set(xlabel="epoch of its stage", ylabel="val road IoU (%)", title="val road IoU (evaluated epochs)")
    if ious:
        ax_iou.set_ylim(*padded_range(ious, MIN_IOU_SPAN))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_iou.legend(fontsize=8, loc="best")
    return figure_png(fig)


def plot_iou_latency(bench: dict, title: str) -> bytes | None:
    """Road IoU against model-only p50 of one benchmark run; whiskers to p90; a peer without an IoU is a
    dashed vertical line at its latency. The latency axis starts at 0 (log when the range is over 10x)."""
    import matplotlib.pyplot as plt

    rows = bench["rows"]
    scored = [r for r in rows if r.get("road_iou") is not None]
    if not scored:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for r in scored:
        peer = r.get("arch_name") in PEER_NAMES
        x, y = r["p50_ms"], 100 * r["road_iou"]
        ax.errorbar(x, y, xerr=[[0], [max(r.get("p90_ms", x) - x, 0)]], fmt="^" if peer else "o", ms=8,
                    color="tab:red" if peer else ("tab:blue" if r.get("pareto") else "tab:gray"), capsize=3, zorder=3)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    for r in rows:
        if r.get("road_iou") is None:
            ax.axvline(r["p50_ms"], color="tab:red", linestyle="--", alpha=0.8)
            what = "untrained peer" if "untrained" in r["name"] else r["name"]
            ax.annotate(f"{what}: {r['p50_ms']:.2f} ms, no IoU", (r["p50_ms"], 0.97),
                        xycoords=("data", "axes fraction"), fontsize=8, color="tab:red", ha="right", va="top",
                        xytext=(-4, 0), textcoords="offset points")
    times = [r["p50_ms"] for r in rows] + [r.get("p90_ms", r["p50_ms"]) for r in scored]
    if max(times) > 10 * min(times):
        ax.set_xscale("log")
        ax.set_xlim(min(times) / 1.5, max(times) * 1.5)
    else:
        ax.set_xlim(0, max(times) * 1.15)
    ax.set_ylim(*padded_range([100 * r["road_iou"] for r in scored], MIN_IOU_SPAN))
    ax.set(xlabel="model-only latency (ms): dot p50, whisker to p90", ylabel="road IoU (%)", title=title)
    ax.grid(alpha=0.3, which="both")
    return figure_png(fig)


def plot_widths(prune: dict) -> bytes | None:
    import matplotlib.pyplot as plt

    report = prune["report"]
    after_row = report.get("finetuned") or report.get("pruned")
    if "arch" not in report.get("original", {}) or not after_row or "arch" not in after_row:
        return None
    try:
        before, after = all_widths(report["original"]["arch"]), all_widths(after_row["arch"])
    except (KeyError, TypeError, ValueError):
        return None
    if [n for n, _ in before] != [n for n, _ in after]:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.8))
    xs = np.arange(len(before))
    ax.bar(xs - 0.2, [w for _, w in before], width=0.4, color="lightgray", edgecolor="gray", label="before pruning")
    ax.bar(xs + 0.2, [w for _, w in after], width=0.4, color="tab:blue", label="after pruning")
    ax.set_xticks(xs, [n for n, _ in before], rotation=60, fontsize=8, ha="right")
    s = report.get("summary", {})
    ax.set(ylabel="output channels", title=f"per-layer widths: params x{s.get('params_ratio', float('nan')):.2f}, "
                                           f"MACs x{s.get('macs_ratio', float('nan')):.2f}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def overlay_errors(rgb: np.ndarray, predicted: np.ndarray, truth: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Road found (true positive), false road (false positive) and missed road (false negative) in their
    own colours over the frame; ignored pixels and true negatives left as they are."""
    out = rgb.astype(np.float32)
    for mask, colour in (((predicted == 1) & (truth == 1), TP_RGB), ((predicted == 1) & (truth == 0), FP_RGB),
                         ((predicted == 0) & (truth == 1), FN_RGB)):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def frames_model(found: Found, asked: Path | None) -> Path | None:
    if asked is not None:
        if not asked.is_file():
            raise ToolError(f"--frames-model {asked}: no such file")
        return asked
    for deploy in found.deploys:
        model = deploy["summary"].get("backend", {}).get("model")
        hit = next((p for p in found.models if model and tail_key(p) == tail_key(model)), None)
        if hit is not None and hit.suffix == ".onnx":
            return hit
    usable = [p for p, info in found.models.items() if info is not None and info.arch.get("name") not in PEER_NAMES]
    return next((p for p in usable if p.name == "model_fp32.onnx"), usable[0] if usable else None)


def frame_strip(args, found: Found) -> tuple[bytes | None, str]:
    """A 2-column grid of labelled frames with the model's errors coloured; (PNG, caption)."""
    import cv2

    from roadseg.deploy.backends import open_backend
    from roadseg.deploy.preprocess import logits_to_classes, preprocess
    from roadseg.models.core.dataset_layouts import detect_layout, find_samples, read_rgb, read_road_mask
    from roadseg.models.core.road_metrics import confusion_matrix, road_metrics

    layout = detect_layout(args.frames) if args.frames.is_dir() else None
    if layout is None:
        raise ToolError(f"--frames {args.frames}: not a Cityscapes (leftImg8bit/, gtFine/) or CamVid dataset folder")
    samples = find_samples(layout, args.frames, args.frames_split)
    if not samples:
        raise ToolError(f"--frames {args.frames}: no labelled frames in split {args.frames_split!r}")
    model = frames_model(found, args.frames_model)
    if model is None:
        return None, "no exported .onnx model in the run to draw frames with"
    backend = open_backend(model, args.threads)
    info = backend.info
    picks = sorted({round(i * (len(samples) - 1) / max(args.frames_count - 1, 1)) for i in range(args.frames_count)})
    tiles, total = [], np.zeros((2, 2), np.int64)
    for index in picks:
        sample = samples[index]
        rgb = read_rgb(sample.image)
        truth = read_road_mask(sample.label, layout, rgb.shape[:2])
        predicted = logits_to_classes(backend.infer(preprocess(rgb, info.input_size, info.mean, info.std))[0],
                                      rgb.shape[:2])
        cm = confusion_matrix(predicted, truth)
        total += cm
        tile = overlay_errors(rgb, predicted, truth)
        scale = 480 / tile.shape[1]
        tile = cv2.resize(tile, (480, max(1, round(tile.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        iou = road_metrics(cm)["road_iou"]
        label = f"{sample.image.name}  road IoU {pct(iou)}%"
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 18), (0, 0, 0), -1)
        cv2.putText(tile, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    gap = np.full((height, 6, 3), 255, np.uint8)
    rows = [np.concatenate([tiles[i], gap, tiles[i + 1]], axis=1) for i in range(0, len(tiles), 2)]
    hgap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([part for r in rows for part in (r, hgap)][:-1], axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        return None, "the frame strip could not be encoded"
    overall = road_metrics(total)
    caption = (f"{len(picks)} of {len(samples)} labelled frames of {args.frames} (split {args.frames_split}), "
               f"evenly spaced, run through {rel(model, found.run_dir)} ({info.precision}, "
               f"{backend.describe().get('backend')}) at {info.input_size[0]}x{info.input_size[1]}; road IoU "
               f"{pct(overall['road_iou'])}%, precision {pct(overall['precision'])}%, recall "
               f"{pct(overall['recall'])}% over these frames.")
    return png.tobytes(), caption


def pictures(args, found: Found) -> tuple[list[tuple[str, bytes, str]], list[str]]:
    """[(title, PNG, caption)] and notes on what could not be drawn."""
    shown, notes = [], []
    try:
        import matplotlib
    except ImportError:
        matplotlib = None
        notes.append("matplotlib is not installed (pip install 'roadseg[plots]'): the plots are left out; "
                     "the tables are complete.")
    if matplotlib is not None:
        matplotlib.use("Agg")
        curves = plot_curves(found)
        if curves:
            shown.append(("Training curves", curves, "Training loss and val road IoU per epoch of each training in "
                          "the run (the fine-tuning inside prune and qat included); each point is one epoch."))
        for bench in found.benches:
            where = rel(bench["path"].parent, found.run_dir)
            report = bench["report"]
            png = plot_iou_latency(report, f"road IoU vs latency ({where}, one run)")
            if png:
                shown.append((f"Road IoU vs latency ({where})", png,
                              f"One benchmark run: {report.get('covers', 'model only')}; {report.get('cpu', '?')}, "
                              f"threads {report.get('threads')}, {report.get('warmup')} warm-up + "
                              f"{report.get('runs_per_round')} timed runs x {report.get('rounds')} interleaved "
                              "rounds. Triangles and dashed lines: peers (a dashed line: timed, no IoU). Blue: on "
                              f"the Pareto front. IoU on {report.get('eval', {}).get('dataset')} "
                              f"{report.get('eval', {}).get('split')}."))
        for prune in found.prunes:
            png = plot_widths(prune)
            if png:
                shown.append((f"Per-layer widths ({rel(prune['dir'], found.run_dir)})", png,
                              "Output channels of every convolution before and after structured pruning "
                              "(from the architectures recorded in prune_report.json)."))
            else:
                notes.append(f"{rel(prune['dir'], found.run_dir)}/prune_report.json: no per-layer widths to draw.")
    if args.frames is not None:
        png, caption = frame_strip(args, found)
        if png:
            shown.append(("Overlay frames: where the model is wrong", png, caption))
        else:
            notes.append(caption)
    return shown, notes


# provenance -------------------------------------------------------------------------------------
def runtime_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("roadseg", "numpy", "onnxruntime", "opencv-python", "matplotlib", "openvino"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            versions[name] = importlib_metadata.version(name)
    return versions


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def lineage(found: Found) -> list[list[str]]:
    """[file, MB, sha256, made from] for every checkpoint, ONNX file and engine."""
    by_sha = {sha: path for path, sha in found.files.items()}
    parents, made = {}, {}
    for item in (*found.prunes, *found.qats):
        for name in ("best.pt", "last.pt"):
            parents[item["dir"] / name] = item["report"].get("parent_sha256")
    for t in found.trains:
        if t["role"] == "train":
            recipe = t["report"].get("recipe", {})
            origin = f"init from {recipe['init_from']}" if recipe.get("init_from") else "from scratch"
            for name in ("best.pt", "last.pt"):
                made[t["dir"] / name] = f"trained {origin} on {t['report'].get('dataset')} (recipe above)"
    for path, info in found.models.items():
        if info is not None and info.source:
            parents[path] = info.source
            if info.meta.get("stage") == "init":
                made.update({p: "untrained (roadseg init)" for p, sha in found.files.items() if sha == info.source})
    rows = []
    for path, sha in found.files.items():
        parent = parents.get(path)
        made_from = rel(by_sha[parent], found.run_dir) if parent in by_sha else (parent[:16] + "..." if parent else "")
        made_from = made_from or made.get(path, "")
        rows.append([rel(path, found.run_dir), num(path.stat().st_size / 1e6), sha, made_from])
    return rows


def seeds(found: Found) -> list[str]:
    out = []
    for t in found.trains:
        if "seed" in t["report"].get("recipe", {}):
            out.append(f"{t['role']} ({rel(t['dir'], found.run_dir)}): seed {t['report']['recipe']['seed']}")
    for kind, items in (("prune", found.prunes), ("qat", found.qats)):
        for item in items:
            if "seed" in item["report"].get("settings", {}):
                out.append(f"{kind} ({rel(item['dir'], found.run_dir)}): seed {item['report']['settings']['seed']}")
    for stage in found.stages:
        command = stage.get("command") or []
        if "--seed" in command and command.index("--seed") + 1 < len(command):
            out.append(f"{stage['name']} (command line): seed {command[command.index('--seed') + 1]}")
    return out


def training_versions(found: Found) -> dict[str, str]:
    versions = {}
    for info in found.models.values():
        if info is not None:
            versions.update(info.meta.get("versions") or {})
    return versions


# writing ----------------------------------------------------------------------------------------
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.headline p { margin: 6px 0; } .synthetic { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
table.wide { width: 100%; font-size: 11.5px; } table.wide td, table.wide th { padding: 3px 4px; }
table.wide td.status { overflow-wrap: anywhere; }
td.stage { white-space: nowrap; }
tr.failed td { background: #fde2e2; } tr.skipped td { background: #f4f4f4; color: #666; }
figure { margin: 14px 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12.5px; color: #444; max-width: 1100px; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
code, pre { font-size: 12px; background: #f6f6f6; } pre { padding: 6px; overflow-x: auto; white-space: pre-wrap; }
.note { color: #555; font-size: 12.5px; }
"""
TEXT_COLUMNS = {"stage", "artifact", "status", "timed in", "scored on", "model", "precision", "backend", "reason",
                "file", "sha256", "made from", "name", "version"}


def html_table(header, rows, row_classes=None, css: str = "") -> str:
    head = "".join(f'<th class="{"text" if h in TEXT_COLUMNS else ""}">{html.escape(h)}</th>' for h in header)
    body = []
    for i, cells in enumerate(rows):
        row_css = row_classes[i] if row_classes else ""
        tds = "".join(f'<td class="{"text" if h in TEXT_COLUMNS else ""} {h.split()[0]}">'
                      f'{html.escape(str(c)).replace("/", "/<wbr>")}</td>' for h, c in zip(header, cells, strict=True))
        body.append(f'<tr class="{row_css}">{tds}</tr>')
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def md_table(header, rows) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


@dataclass
class Section:
    title: str
    html: str
    md: str


def build(args, found: Found) -> tuple[str, str]:
    rows = chain_rows(found)
    figures, figure_notes = pictures(args, found)
    title = args.title or f"roadseg report: {args.run_dir}"
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = headline(found, rows)
    synthetic = "synthetic" in data_kind(found)
    sections = []

    def banner(line: str) -> bool:
        return synthetic and line.startswith("Synthetic data:")

    head_html = "".join(f'<p class="{"synthetic" if banner(line) else ""}">{html.escape(line)}</p>'
                        for line in lines) or "<p>Nothing the stages write was found here.</p>"
    head_md = "\n\n".join(("> " + line) if banner(line) else line for line in lines)
    sections.append(Section("", f'<div class="headline">{head_html}</div>', head_md))

    if found.stages:
        cells = [stage_cells(s) for s in found.stages]
        classes = [s.get("status", "") for s in found.stages]
        wall = stage_wall_seconds(found.stages)
        caption = (f"{len(found.stages)} stages from {STAGES_FILE}; chain wall time {seconds_text(wall)} "
                   "(first stage start to last stage end)." if wall is not None else "")
        header = ("stage", "status", "time s", "reason")
        sections.append(Section("Stages", html_table(header, cells, classes) + f'<p class="note">'
                                f'{html.escape(caption)}</p>', md_table(header, cells) + "\n\n" + caption))

    chain = [chain_cells(r) for r in rows]
    notes = chain_notes(found, rows)
    sections.append(Section("The chain", html_table(CHAIN_HEADER, chain, [r["status"] for r in rows], "wide")
                            + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes),
                            md_table(CHAIN_HEADER, chain) + "\n\n" + "\n".join(f"- {n}" for n in notes)))

    for bench in found.benches:
        report = bench["report"]
        where = rel(bench["path"].parent, found.run_dir)
        cells = [bench_cells(r) for r in report["rows"]]
        caption = (f"{report.get('covers', '')}; {report.get('cpu', '?')}, threads {report.get('threads')}, "
                   f"{report.get('warmup')} warm-up + {report.get('runs_per_round')} timed runs x "
                   f"{report.get('rounds')} interleaved rounds; road IoU on "
                   f"{report.get('eval', {}).get('dataset') or 'no dataset (latency only)'} "
                   f"{report.get('eval', {}).get('split') if report.get('eval', {}).get('dataset') else ''}; "
                   "speed-up = p50 of the first row at the same size / the row's p50.")
        sections.append(Section(f"Benchmark run: {where}", html_table(BENCH_HEADER, cells)
                                + f'<p class="note">{html.escape(caption)}</p>', md_table(BENCH_HEADER, cells)
                                + "\n\n" + caption))

    fig_html, fig_md = [], []
    for name, png, caption in figures:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        legend = ""
        if name.startswith("Overlay frames"):
            legend = ('<div class="legend">' + "".join(
                f'<span style="background: rgb{colour}"></span>{html.escape(what)}'
                for colour, what in ((TP_RGB, "road found"), (FP_RGB, "false road (false positive)"),
                                     (FN_RGB, "missed road (false negative)"))) + "</div>")
        fig_html.append(f'<figure><figcaption><b>{html.escape(name)}</b></figcaption><img alt="{html.escape(name)}" '
                        f'src="{uri}">{legend}<figcaption>{html.escape(caption)}</figcaption></figure>')
        fig_md.append(f"- {name} (in report.html): {caption}")
    fig_html += [f'<p class="note">{html.escape(n)}</p>' for n in figure_notes]
    fig_md += [f"- {n}" for n in figure_notes]
    sections.append(Section("Pictures", "".join(fig_html) or '<p class="note">No pictures.</p>',
                            "\n".join(fig_md) or "No pictures."))

    sections.append(provenance_section(found, created))
    if found.notes:
        sections.append(Section("Left out", "".join(f'<p class="note">{html.escape(n)}</p>' for n in found.notes),
                                "\n".join(f"- {n}" for n in found.notes)))

    body = "".join((f"<h2>{html.escape(s.title)}</h2>" if s.title else "") + s.html for s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="note">written {created} by roadseg report from {html.escape(str(args.run_dir))}</p>'
            f"{body}</body></html>\n")
    markdown = f"# {title}\n\nwritten {created} by roadseg report from {args.run_dir}\n\n" + "\n\n".join(
        (f"## {s.title}\n\n" if s.title else "") + s.md for s in sections) + "\n"
    return page, markdown


def stage_wall_seconds(stages: list[dict]) -> float | None:
    try:
        starts = [datetime.fromisoformat(s["started"]) for s in stages if s.get("started")]
        ends = [datetime.fromisoformat(s["started"]).timestamp() + (s.get("seconds") or 0)
                for s in stages if s.get("started")]
    except (ValueError, TypeError):
        return None
    return max(ends) - min(starts).timestamp() if starts else None


def chain_notes(found: Found, rows: list[dict]) -> list[str]:
    notes = ["Latency is model only (a preprocessed tensor in, logits out, batch 1) unless the row says end to end; "
             "'timed in' names the run that measured it. Rows timed in different runs are not a controlled "
             "comparison: the benchmark rows are (one run, interleaved rounds)."]
    cpus = {b["report"].get("cpu") for b in found.benches} | {
        p["report"].get("original", {}).get("latency", {}).get("cpu") for p in found.prunes}
    cpus.discard(None)
    if cpus:
        notes.append("CPU: " + "; ".join(sorted(cpus)) + ".")
    by_note: dict[str, list[str]] = {}
    for r in rows:
        if r.get("note"):
            by_note.setdefault(r["note"], []).append(r["stage"])
    notes += [f"{', '.join(stages)}: {note}" for note, stages in by_note.items()]
    if any(r["val"] for r in rows):
        notes.append("Road IoU, precision and recall are summed over a split (one confusion matrix), at the model's "
                     "input size, scored at the label's resolution. 'IoU vs full' is in points against the first "
                     "trained model, on the same split; the deploy row is scored on other frames (its source's).")
    return notes


def provenance_section(found: Found, created: str) -> Section:
    html_parts, md_parts = [], []
    commands = [(s["name"], " ".join([*(f"{k}={shlex.quote(str(v))}" for k, v in (s.get("env") or {}).items()),
                                        shlex.join(s["command"])])) for s in found.stages if s.get("command")]
    if commands:
        text = "\n".join(f"# {name}\n{command}" for name, command in commands)
        html_parts.append(f"<h3>Commands ({STAGES_FILE})</h3><pre>{html.escape(text)}</pre>")
        md_parts.append(f"### Commands ({STAGES_FILE})\n\n```\n{text}\n```")
    full = full_model(found)
    if full is not None and full["report"].get("recipe"):
        recipe = json.dumps(full["report"]["recipe"], sort_keys=True)
        html_parts.append(f"<h3>Training recipe of the full model ({html.escape(rel(full['dir'], found.run_dir))}/"
                          f"train_report.json)</h3><pre>{html.escape(recipe)}</pre>")
        md_parts.append(f"### Training recipe of the full model\n\n```\n{recipe}\n```")
    seed_lines = seeds(found)
    if seed_lines:
        html_parts.append("<h3>Seeds</h3><p>" + "<br>".join(html.escape(s) for s in seed_lines) + "</p>")
        md_parts.append("### Seeds\n\n" + "\n".join(f"- {s}" for s in seed_lines))
    versions = {f"training: {k}": v for k, v in training_versions(found).items()}
    versions.update({f"this report: {k}": v for k, v in runtime_versions().items()})
    revision = git_revision()
    if revision:
        versions["this report: git"] = revision
    version_rows = [[k, v] for k, v in versions.items()]
    html_parts.append("<h3>Versions</h3>" + html_table(("name", "version"), version_rows))
    md_parts.append("### Versions\n\n" + md_table(("name", "version"), version_rows))
    files = lineage(found)
    if files:
        header = ("file", "MB", "sha256", "made from")
        html_parts.append("<h3>Checkpoints and models</h3>" + html_table(header, files))
        md_parts.append("### Checkpoints and models\n\n" + md_table(header, files))
    return Section("Provenance", "".join(html_parts), "\n\n".join(md_parts))


def main(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise ToolError(f"{args.run_dir}: no such folder")
    if args.frames is not None and not args.frames.is_dir():
        raise ToolError(f"--frames {args.frames}: no such folder")
    found = scan(args.run_dir)
    page, markdown = build(args, found)
    atomic_write_bytes(args.run_dir / "report.html", page.encode("utf-8"))
    atomic_write_bytes(args.run_dir / "report.md", markdown.encode("utf-8"))
    print(f"report: {args.run_dir / 'report.html'} (and report.md)")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
