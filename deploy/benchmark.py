"""One table over a set of models: file size, params, GMACs, model-only latency and FPS, road IoU,
and the ratio of each to the first row, all measured in one run.

ONNX files (FP32 or INT8) run in onnxruntime, TensorRT engines in TensorRT (where present). A model
whose metadata names a torchvision peer architecture (LRASPP, DeepLabV3-MobileNetV3) is drawn as a
peer, so every speed claim can be a ratio against the model a user would pick instead: give it
first. An untrained peer (stage ``init``) is timed but not scored. Latency is model only (a preprocessed
tensor in, logits out), batch 1, at each ``--sizes`` (default: each model's own input size),
timed in ``--rounds`` interleaved rounds (every model once per round, so a change in machine load
hits all alike); p50 is the median of the rounds' p50s, p90/p99 come from all timed runs. Road
IoU is computed on a dataset split at the model's input size, scored at label resolution.

    python deploy/benchmark.py --model runs/camvid/onnx/model_fp32.onnx runs/camvid/onnx/model_int8_ort.onnx \
        --dataset camvid --data-path ../shared/data/camvid --threads 2 --out runs/camvid/bench
    python models/init_checkpoint.py --arch lraspp_mobilenet_v3_large --img-size 352 480 --out runs/peer
    python export/to_onnx.py --ckpt runs/peer/init.pt --out runs/peer     # an untrained peer, for speed
    python deploy/benchmark.py --model runs/peer/model_fp32.onnx runs/camvid/onnx/model_fp32.onnx --threads 2

Writes ``--out/benchmark.md`` (the table), ``benchmark.json`` (every figure and the conditions:
CPU, threads, warm-up and timed runs) and ``benchmark.png`` (road IoU against latency, one panel per
size, peers as triangles, the Pareto front joined: the models no other is both faster and more
accurate than). Rows are named by file stem, or folder/stem where stems repeat.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from roadseg.deploy.backends import BACKENDS, Backend, open_backend
from roadseg.deploy.labelled_frames import load_labelled_frames, road_confusion
from roadseg.deploy.latency import cpu_model, percentiles_ms
from roadseg.models.core.cli import ToolError, image_size, non_negative_int, positive_int, run
from roadseg.models.core.fileio import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    refuse_to_overwrite,
    require_output_folder,
)
from roadseg.models.core.road_labels import DATASETS
from roadseg.models.core.road_metrics import road_metrics
from roadseg.models.core.zoo import resolve_model

# torchvision peers (models/peers.py; named here so that this module imports without torch)
PEER_NAMES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def is_peer(backend: Backend) -> bool:
    return backend.info.arch.get("name") in PEER_NAMES


def is_untrained_peer(backend: Backend) -> bool:
    """A peer exported straight from models/init_checkpoint.py: timed for speed, its IoU means nothing."""
    return is_peer(backend) and backend.info.meta.get("stage") == "init"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark road-segmentation models side by side.", add_help=add_help,
                                prog="deploy/benchmark.py")
    p.add_argument("--model", nargs="+", required=True,
                   help="zoo names, .onnx or .engine files; the first row is the baseline of the ratios "
                        "(give the peer first)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=["auto"],
                   help="run every model in each of these (auto: see roadseg.deploy.backends.choose_backend)")
    p.add_argument("--sizes", nargs="+", type=image_size, default=None, metavar="HxW",
                   help="input sizes to time (default: each model's metadata input size)")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="score road IoU on this dataset")
    p.add_argument("--data-path", type=Path, default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--eval-images", type=positive_int, default=None, help="first N images of the split (default: all)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads per model (0 = the runtime's default)")
    p.add_argument("--warmup", type=non_negative_int, default=5)
    p.add_argument("--runs", type=positive_int, default=30, help="timed runs per round")
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write benchmark.md/.json/.png here")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier benchmark in --out / --json")
    return p


def check_args(args) -> None:
    if args.out is not None:
        require_output_folder(args.out)
        refuse_to_overwrite(args.out / "benchmark.json", args.overwrite)
    if args.json is not None:
        refuse_to_overwrite(args.json, args.overwrite)
    if args.dataset and args.dataset != "synthetic" and args.data_path is None:
        raise ToolError(f"--dataset {args.dataset} needs --data-path")
    args.model = [resolve_model(model) for model in args.model]
    for path in args.model:
        if not path.is_file():
            raise ToolError(f"--model {path}: no such file")


def model_bytes(path: Path) -> int:
    """A model's size on disk: an OpenVINO IR is its .xml and the .bin of its weights."""
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return path.stat().st_size + (weights.stat().st_size if weights is not None and weights.exists() else 0)


def runs_in(path: Path, backend: str) -> bool:
    """Whether ``backend`` can run this file: an .xml only in OpenVINO, an .engine only in TensorRT
    (with --backends onnxruntime openvino, an IR is timed once, not refused)."""
    only = {".xml": "openvino", ".engine": "tensorrt"}.get(path.suffix)
    return backend == "auto" or only is None or only == backend


def check_size(backend: Backend, size: tuple[int, int]) -> None:
    multiple = backend.info.size_multiple
    if size[0] % multiple or size[1] % multiple:
        raise ToolError(f"--sizes {size[0]}x{size[1]}: {backend.path.name} needs multiples of {multiple}")


def time_round(backend: Backend, batch: np.ndarray, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        backend.infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(batch)
        times.append(time.perf_counter() - start)
    return times


def measure_latency(backends: list[Backend], sizes_of: list[list[tuple[int, int]]], args) -> dict:
    rng = np.random.default_rng(0)
    cells = [(i, size) for i, sizes in enumerate(sizes_of) for size in sizes]
    batches = {size: rng.standard_normal((1, 3, *size), dtype=np.float32) for _, size in cells}
    times = {cell: [] for cell in cells}
    round_p50 = {cell: [] for cell in cells}
    with tqdm(total=args.rounds * len(cells), desc="timing", unit="model", file=sys.stderr) as bar:
        for _ in range(args.rounds):
            for cell in cells:
                sample = time_round(backends[cell[0]], batches[cell[1]], args.warmup, args.runs)
                times[cell] += sample
                round_p50[cell].append(float(np.percentile(sample, 50)) * 1000)
                bar.update()
    result = {}
    for cell in cells:
        stats = percentiles_ms(times[cell])
        stats["p50_ms"] = statistics.median(round_p50[cell])
        stats["fps"] = 1000.0 / stats["p50_ms"]
        result[cell] = stats
    return result


def scaled_gmacs(info, size: tuple[int, int]) -> float | None:
    """GMACs at ``size`` from the checkpoint's count at its input size (conv work is linear in pixels)."""
    complexity = info.meta.get("complexity") or {}
    if "gmacs" not in complexity or "input_size" not in complexity:
        return None
    base = complexity["input_size"]
    return complexity["gmacs"] * size[0] * size[1] / (base[0] * base[1])


def row_names(paths: list[Path]) -> list[str]:
    """Each file's stem; folder/stem where stems repeat (every export is model_fp32.onnx); the path
    as given where even those repeat."""
    stems = [path.stem for path in paths]
    names = [f"{path.parent.name}/{path.stem}" if stems.count(path.stem) > 1 else path.stem for path in paths]
    return [str(path) if names.count(name) > 1 else name for path, name in zip(paths, names, strict=True)]


def mark_pareto_front(rows: list[dict]) -> None:
    """Set ``row["pareto"]``: True where no other scored row at the same size is at least as fast and at
    least as accurate, and better in one; None for rows without a road IoU."""
    for r in rows:
        if r["road_iou"] is None:
            r["pareto"] = None
            continue
        rivals = [o for o in rows if o is not r and o["size"] == r["size"] and o["road_iou"] is not None]
        r["pareto"] = not any(o["p50_ms"] <= r["p50_ms"] and o["road_iou"] >= r["road_iou"]
                              and (o["p50_ms"] < r["p50_ms"] or o["road_iou"] > r["road_iou"]) for o in rivals)


def best_backend_rows(rows: list[dict]) -> list[dict]:
    """Per file and size, the row of its fastest runtime, and its speed-up against the first file's
    fastest: so "faster than the peer" is never against a peer held back by its runtime."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["path"], tuple(r["size"])), []).append(r)
    best = []
    for (path, size), group in groups.items():
        fastest = min(group, key=lambda r: r["p50_ms"])
        best.append({"path": path, "name": fastest["name"].split(" [")[0], "size": list(size),
                     "backend": fastest["backend"], "p50_ms": fastest["p50_ms"], "road_iou": fastest["road_iou"],
                     "backends_timed": {r["backend"]: r["p50_ms"] for r in group}})
    for b in best:
        first = next(o for o in best if o["size"] == b["size"])
        b["speedup_vs_first_best"] = first["p50_ms"] / b["p50_ms"]
    return best


def best_table(best: list[dict]) -> str:
    lines = ["| model | size | fastest runtime | p50 ms | speed-up | all runtimes (p50 ms) |",
             "|---|---|---|---|---|---|"]
    for b in best:
        timed = ", ".join(f"{k} {v:.2f}" for k, v in b["backends_timed"].items())
        lines.append(f"| {b['name']} | {b['size'][0]}x{b['size'][1]} | {b['backend']} | {b['p50_ms']:.2f} "
                     f"| x{b['speedup_vs_first_best']:.2f} | {timed} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    header = ("| model | precision | backend | size | MB | params | GMACs | p50 ms | p90 ms | p99 ms | FPS "
              "| road IoU | speed-up | IoU delta | Pareto |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        iou = f"{100 * r['road_iou']:.2f}" if r["road_iou"] is not None else "-"
        delta = f"{r['iou_delta_points']:+.2f}" if r["iou_delta_points"] is not None else "-"
        gmacs = f"{r['gmacs']:.3f}" if r["gmacs"] is not None else "-"
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        lines.append(f"| {r['name']} | {r['precision']} | {r['backend']} | {r['size'][0]}x{r['size'][1]} "
                     f"| {r['file_mb']:.2f} | {params} | {gmacs} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} | {r['fps']:.1f} | {iou} | x{r['speedup']:.2f} | {delta} "
                     f"| {'yes' if r['pareto'] else ''} |")
    return "\n".join(lines)


def save_plot(path: Path, rows: list[dict]) -> None:
    """Road IoU against latency, one panel per input size; peers drawn apart, the Pareto front joined."""
    import io

    try:
        import matplotlib
    except ImportError:  # the run-time install has no matplotlib: the table and JSON are the result
        print(f"note: {path} not drawn (pip install 'roadseg[plots]' for the picture)", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if r["road_iou"] is not None]
    sizes = list(dict.fromkeys(tuple(r["size"]) for r in scored)) or [None]
    fig, axes = plt.subplots(1, len(sizes), figsize=(7.5 * len(sizes), 5), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        panel = [r for r in scored if tuple(r["size"]) == size]
        for r in panel:
            peer = r["arch_name"] in PEER_NAMES
            ax.scatter(r["p50_ms"], 100 * r["road_iou"], marker="^" if peer else "o", s=60 if peer else 40,
                       color="tab:red" if peer else ("tab:blue" if r["pareto"] else "tab:gray"), zorder=3)
            ax.annotate(r["name"] + (" (peer)" if peer else ""), (r["p50_ms"], 100 * r["road_iou"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = sorted((r for r in panel if r["pareto"]), key=lambda r: r["p50_ms"])
        if front:
            ax.step([r["p50_ms"] for r in front], [100 * r["road_iou"] for r in front], where="post",
                    color="tab:blue", alpha=0.5, label="Pareto front")
            ax.legend(loc="lower right", fontsize=8)
        title = f"{size[0]}x{size[1]}" if size else "no scored model"
        ax.set_title(f"road IoU vs latency, {title} (one run; triangles: peers)", fontsize=9)
        times = [r["p50_ms"] for r in panel]
        if times and max(times) > 10 * min(times):  # a full U-Net beside pruned ones
            from matplotlib.ticker import FormatStrFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
            ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("model-only latency p50 (ms)")
        ax.set_ylabel("road IoU (%)")
        ax.grid(alpha=0.3, which="both")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def main(args: argparse.Namespace) -> int:
    check_args(args)
    sizes = list(dict.fromkeys(args.sizes)) if args.sizes else None
    # model x backend: every model in every backend asked for, all in the same interleaved rounds
    # at the models' own sizes OpenVINO compiles them static, as the run time does; at other sizes dynamic
    backends = [open_backend(path, args.threads, backend=name, own_size_only=sizes is None)
                for path in args.model for name in args.backends if runs_in(path, name)]
    run_benchmark(args, sizes, backends)
    return 0


def run_benchmark(args, sizes, backends: list[Backend]) -> dict:
    """Score, time, print and write the table (``--out``, ``--json``); returns the report written."""
    sizes_of = [sizes or [b.info.input_size] for b in backends]
    for backend, model_sizes in zip(backends, sizes_of, strict=True):
        for size in model_sizes:
            check_size(backend, size)

    ious = [None] * len(backends)
    if args.dataset:
        root = args.data_path or Path("data/synthetic")
        for i, backend in enumerate(tqdm(backends, desc="road IoU", unit="model", file=sys.stderr)):
            if is_untrained_peer(backend):
                continue
            frames = load_labelled_frames(args.dataset, root, args.split, args.eval_images, backend.info)
            ious[i] = road_metrics(road_confusion(backend.infer, frames))
    latency = measure_latency(backends, sizes_of, args)

    rows = []
    names = row_names([backend.path for backend in backends])
    paths = [backend.path for backend in backends]
    names = [f"{name} [{backend.kind}]" if paths.count(backend.path) > 1 else name  # one file, several runtimes
             for name, backend in zip(names, backends, strict=True)]
    for i, backend in enumerate(backends):
        for size in sizes_of[i]:
            complexity = backend.info.meta.get("complexity") or {}
            stats = latency[(i, size)]
            name = names[i] + (" (untrained peer)" if is_untrained_peer(backend) else "")
            rows.append({"name": name, "path": str(backend.path), "arch_name": backend.info.arch.get("name"),
                         **backend.describe(), "size": list(size),
                         "file_mb": model_bytes(backend.path) / 1e6, "params": complexity.get("params"),
                         "gmacs": scaled_gmacs(backend.info, size), **stats,
                         "road_iou": ious[i]["road_iou"] if ious[i] else None, "val": ious[i]})
    for r in rows:  # ratios against the first model at the same input size
        first = next(b for b in rows if b["size"] == r["size"])
        r["speedup"] = first["p50_ms"] / r["p50_ms"]
        both = r["road_iou"] is not None and first["road_iou"] is not None
        r["iou_delta_points"] = 100 * (r["road_iou"] - first["road_iou"]) if both else None
    mark_pareto_front(rows)
    best = best_backend_rows(rows)
    report = {"covers": "model only: a preprocessed (1, 3, H, W) tensor in, logits out",
              "cpu": cpu_model(), "threads": args.threads or "runtime default", "warmup": args.warmup,
              "runs_per_round": args.runs, "rounds": args.rounds,
              "eval": {"dataset": args.dataset, "split": args.split, "images": args.eval_images or "all"},
              "rows": rows, "best_backend": best}
    table = markdown_table(rows)
    if any(len(b["backends_timed"]) > 1 for b in best):
        table += "\n\nEach file in its fastest runtime (speed-up against the first file in its own fastest):\n\n"
        table += best_table(best)
    print(table)
    print(f"\n{report['covers']}; {report['cpu']}, threads {report['threads']}, {args.warmup} warm-up + "
          f"{args.runs} timed runs x {args.rounds} interleaved rounds; "
          "speed-up = p50 of the first model at the same size / row p50")
    if args.out:
        atomic_write(args.out / "benchmark.md", lambda f: f.write((table + "\n").encode()))
        atomic_write_json(args.out / "benchmark.json", report)
        save_plot(args.out / "benchmark.png", rows)
    if args.json:
        atomic_write_json(args.json, report)
    return report


if __name__ == "__main__":
    run(main, get_args_parser())
