"""Live road overlay from a camera, video, image folder or stream, with honest FPS and running road IoU.

Runs without PyTorch: onnxruntime for .onnx files (TensorRT, CUDA or CPU execution provider, the
best available) and TensorRT for .engine files. Input size, normalisation and labels come from the
model's metadata. The loop is jetson-inference's segnet: source -> infer -> overlay -> render,
with FPS on the status line, threaded so decoding and encoding overlap inference.

    python deploy/run.py --model runs/camvid/onnx/model_fp32.onnx \
        --source ../shared/data/video/solidWhiteRight.mp4 --output runs/deploy/overlay.mp4
    python deploy/run.py --model model.onnx --source 0 --serve 127.0.0.1:8080     # webcam, view in a browser
    python deploy/run.py --model model.engine --source "nvarguscamerasrc ! ... ! appsink" --output display://0
    python deploy/run.py --model model.onnx --source data/synthetic/leftImg8bit/val/city0 \
        --gt data/synthetic --output runs/deploy/frames/                           # with running road IoU

Sources (--source): video file, image folder, camera index or /dev/videoN, rtsp:// or http://
stream, GStreamer pipeline (see deploy/sources.py for the Jetson CSI camera pipeline).
Outputs (--output, any number): video file, image folder, display://0; and --serve HOST:PORT for
an MJPEG live view with running stats in the browser (loopback by default).

At the end (and on Ctrl-C) prints and writes a JSON summary (--json, default beside the first
file output): frames, model-only latency p50/p90/p99 and FPS, end-to-end FPS, their ratio, mean
per-stage times, warm-up frames excluded, backend and precision, and road IoU/precision/recall
when --gt is given.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from roadseg.deploy.backends import OnnxRuntimeBackend, open_backend
from roadseg.deploy.overlay import MODES
from roadseg.deploy.pipeline import Pipeline, PipelineOptions, StopRequested
from roadseg.deploy.sinks import open_sink
from roadseg.deploy.sources import SourceError, open_source
from roadseg.models.core.cli import ToolError, non_negative_int, positive_int, run, unit_interval
from roadseg.models.core.dataset_layouts import detect_layout, find_samples, read_road_mask
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from roadseg.models.core.zoo import resolve_model


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Road overlay from a camera, video or stream, with FPS and IoU.",
                                add_help=add_help, prog="deploy/run.py")
    p.add_argument("--model", required=True,
                   help="a zoo name (camvid-road, camvid-road-fast), an .onnx (onnxruntime) or .engine (TensorRT)")
    p.add_argument("--source", required=True, metavar="URI",
                   help="video file, image folder, camera index or /dev/videoN, rtsp:// or http:// URL, "
                        "or a GStreamer pipeline")
    p.add_argument("--output", nargs="*", default=[], metavar="URI",
                   help="video file (.mp4/.avi/.mkv), image folder, or display://0; any number")
    p.add_argument("--serve", metavar="HOST:PORT", help="MJPEG live view + stats page, e.g. 127.0.0.1:8080")
    view = p.add_argument_group("overlay")
    view.add_argument("--mode", choices=MODES, default="blend", help="blend, mask only, or side by side")
    view.add_argument("--alpha", type=unit_interval, default=0.5, help="overlay opacity for blend/side")
    view.add_argument("--no-status", action="store_true", help="no FPS/IoU status line on the frames")
    runtime = p.add_argument_group("run time")
    runtime.add_argument("--threads", type=non_negative_int, default=0,
                         help="onnxruntime CPU threads (0 = its default)")
    runtime.add_argument("--providers", nargs="+", default=None,
                         help="onnxruntime execution providers, best first (default: TensorRT, CUDA, CPU "
                              "where available)")
    runtime.add_argument("--frame-policy", choices=("auto", "every", "newest"), default="auto",
                         help="every: process every frame; newest: drop frames when behind (auto: newest for "
                              "live sources, every for files and folders)")
    runtime.add_argument("--queue-size", type=positive_int, default=4)
    runtime.add_argument("--warmup", type=non_negative_int, default=10, help="frames left out of the timing summary")
    runtime.add_argument("--max-frames", type=positive_int, default=None)
    runtime.add_argument("--retries", type=non_negative_int, default=5,
                         help="reconnect attempts when a live source drops")
    truth = p.add_argument_group("ground truth (running road IoU)")
    truth.add_argument("--gt", type=Path, default=None,
                       help="dataset folder (Cityscapes or CamVid layout) holding the source's labels: "
                            "matched by file name for an image folder, by frame order otherwise")
    truth.add_argument("--gt-split", default="val")
    meta = p.add_argument_group("models without roadseg metadata")
    meta.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    meta.add_argument("--mean", type=float, nargs=3, default=list(IMAGENET_MEAN))
    meta.add_argument("--std", type=float, nargs=3, default=list(IMAGENET_STD))
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    return p


def check_args(args) -> None:
    args.model = resolve_model(args.model)
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def load_backend(args):
    if args.input_size:  # explicit preprocessing for a model exported by another tool
        if args.model.suffix != ".onnx":
            raise ToolError("--input-size: only for .onnx models without roadseg metadata")
        info = ModelInfo(arch={}, meta={"input_size": list(args.input_size), "mean": args.mean, "std": args.std})
        return OnnxRuntimeBackend(args.model, args.threads, args.providers, info=info)
    return open_backend(args.model, args.threads, args.providers)


def ground_truth_lookup(args, source):
    """A function (frame index, frame file name) -> road mask {0, 1, 255} or None."""
    layout = detect_layout(args.gt) if args.gt.is_dir() else None
    if layout is None:
        raise ToolError(f"--gt {args.gt}: not a Cityscapes (leftImg8bit/, gtFine/) or CamVid (<split>annot/) "
                        "dataset folder")
    samples = find_samples(layout, args.gt, args.gt_split)
    by_name = {sample.image.name: sample for sample in samples}
    if source.kind == "folder":
        missing = [path.name for path in source.paths if path.name not in by_name]
        if len(missing) == len(source.paths):
            raise ToolError(f"--gt {args.gt}: none of the --source images has a label in split {args.gt_split!r}")

    def lookup(index: int, name: str | None):
        sample = by_name.get(name) if source.kind == "folder" else (samples[index] if index < len(samples) else None)
        return read_road_mask(sample.label, layout) if sample is not None else None

    return lookup


def default_summary_path(outputs: list[str]) -> Path | None:
    for uri in outputs:
        if not uri.startswith("display://"):
            path = Path(uri)
            return path.with_name(path.stem + ".summary.json") if path.suffix else path / "summary.json"
    return None


def print_summary(summary: dict) -> None:
    backend = summary["backend"]
    print(f"{summary['frames']} frames ({summary['warmup_frames_excluded']} warm-up excluded, "
          f"{summary['dropped_frames']} dropped); stopped: {summary['stopped']}")
    print(f"backend {backend['backend']} {backend.get('provider', '')} {backend['precision']}, "
          f"input {summary['input_size'][0]}x{summary['input_size'][1]}")
    if "model_only" in summary:
        m, e = summary["model_only"], summary["end_to_end"]
        print(f"model only: p50 {m['p50_ms']:.2f} ms  p90 {m['p90_ms']:.2f}  p99 {m['p99_ms']:.2f}  "
              f"-> {m['fps']:.1f} FPS")
        print(f"end to end: {e['fps']:.1f} FPS (ratio to model-only {summary['ratio_end_to_end_to_model']:.2f}); "
              "stages (mean ms): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["stages_mean_ms"].items()))
    if summary["road"]:
        r = summary["road"]
        print(f"road IoU {100 * r['road_iou']:.2f}  precision {100 * r['precision']:.2f}  "
              f"recall {100 * r['recall']:.2f}  over {r['frames']} labelled frames")


@contextlib.contextmanager
def stop_signals_end_the_run():
    """SIGTERM (docker stop, systemctl stop) and SIGHUP end the run like Ctrl-C: playable video, summary."""
    def stop(signum, _frame):
        raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    check_args(args)
    backend = load_backend(args)
    source = open_source(args.source, retries=args.retries)
    sinks, view = [], None
    try:
        sinks = [open_sink(uri, source.fps) for uri in args.output]
        ground_truth = ground_truth_lookup(args, source) if args.gt else None
        if args.serve:
            from roadseg.deploy.live_view import LiveView, parse_serve_address

            host, port = parse_serve_address(args.serve)
            view = LiveView(host=host, port=port)
            view.start()
            print(f"live view: {view.url}", file=sys.stderr)
        policy = {"auto": None, "every": False, "newest": True}[args.frame_policy]
        options = PipelineOptions(mode=args.mode, alpha=args.alpha, warmup=args.warmup, queue_size=args.queue_size,
                                  drop_frames=policy, status=not args.no_status, max_frames=args.max_frames)
        pipeline = Pipeline(source, backend, sinks, options, ground_truth, view.publish if view else None)
        with stop_signals_end_the_run():
            summary = pipeline.run()
    except BaseException:
        source.close()
        raise
    finally:
        if view is not None:
            view.close()
    summary["outputs"] = list(args.output) + ([f"http://{args.serve}/"] if args.serve else [])
    print_summary(summary)
    path = args.json or default_summary_path(args.output)
    if path:
        atomic_write_json(path, summary)
        print(f"summary: {path}")
    if summary["frames"] == 0:
        raise SourceError(f"--source {args.source}: delivered no frames")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
