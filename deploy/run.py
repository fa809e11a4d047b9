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

    python deploy/run.py --model model.onnx --source drive.mp4 --loop --realtime --serve 0   # a watchable demo

Sources (--source): video file, image folder, camera index or /dev/videoN, rtsp:// or http://
stream, GStreamer pipeline (see deploy/sources.py for the Jetson CSI camera pipeline). A file or
folder can be looped (--loop) and paced at its own frame rate (--realtime); a live source silent for
--stall-timeout seconds is reopened (--retries).
Outputs (--output, any number): video file, image folder, display://0; and --serve HOST:PORT for
an MJPEG live view with running stats in the browser (loopback by default; port 0 picks a free port,
and the URL printed and recorded is the one bound). An existing video, or a folder that already holds
frames, is refused before any work unless --overwrite.

On a terminal, stderr shows a progress bar (files and folders: frames done of total, model and
end-to-end FPS) or a one-line status (live sources). At the end (and on Ctrl-C, SIGTERM, SIGHUP)
prints and writes a JSON summary (--json, default beside the first file output): frames, model-only
latency p50/p90/p99 and FPS, end-to-end FPS, their ratio, mean per-stage times, warm-up frames
excluded, how the percentiles were computed, backend and precision, and road IoU/precision/recall
when --gt is given.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path

from roadseg.deploy.backends import BACKENDS, OnnxRuntimeBackend, open_backend
from roadseg.deploy.overlay import MODES
from roadseg.deploy.pipeline import MIN_TIMED_FRAMES, Pipeline, PipelineOptions, StopRequested
from roadseg.deploy.sinks import check_output, open_sink
from roadseg.deploy.sources import STALL_TIMEOUT_S, SourceError, open_source, source_kind
from roadseg.models.core.cli import ToolError, non_negative_int, positive_float, positive_int, run, unit_interval
from roadseg.models.core.dataset_layouts import detect_layout, find_samples, read_road_mask
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, check_meta
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing video --output, or remove the frames an image-folder --output holds")
    p.add_argument("--serve", metavar="HOST:PORT",
                   help="MJPEG live view + stats page, e.g. 127.0.0.1:8080 (port 0: any free port)")
    view = p.add_argument_group("overlay")
    view.add_argument("--mode", choices=MODES, default="blend", help="blend, mask only, or side by side")
    view.add_argument("--alpha", type=unit_interval, default=0.5, help="overlay opacity for blend/side")
    view.add_argument("--no-status", action="store_true", help="no FPS/IoU status line on the frames")
    runtime = p.add_argument_group("run time")
    runtime.add_argument("--backend", choices=BACKENDS, default="auto",
                         help="auto: an .engine in TensorRT, an .xml in OpenVINO, an .onnx in onnxruntime when it "
                              "has a GPU provider; on a CPU with OpenVINO installed both are timed at startup and "
                              "the faster kept (the summary says which and the figures)")
    runtime.add_argument("--threads", type=non_negative_int, default=0,
                         help="CPU threads of the runtime (0 = its default)")
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
    runtime.add_argument("--stall-timeout", type=positive_float, default=STALL_TIMEOUT_S, metavar="SECONDS",
                         help="a live source that delivers no frame for this long is reopened (--retries)")
    runtime.add_argument("--loop", action="store_true",
                         help="start a video file or image folder again at its end (demos, soak runs; "
                              "stop with --max-frames or Ctrl-C)")
    runtime.add_argument("--realtime", type=positive_float, nargs="?", const=0.0, default=None, metavar="FPS",
                         help="read a video file or image folder no faster than its own frame rate (or FPS), "
                              "as a camera would deliver it")
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
    """Everything that can be refused before a model is loaded or an output touched."""
    args.model = resolve_model(args.model)
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")
    for uri in args.output:
        check_output(uri, args.overwrite)
    kind = source_kind(args.source)
    if args.realtime is not None and kind not in ("file", "folder"):
        raise ToolError(f"--realtime: only for a video file or an image folder; a {kind} is real time already")
    if args.realtime == 0.0 and kind == "folder":
        raise ToolError("--realtime: an image folder has no frame rate; give one, e.g. --realtime 30")


def realtime_fps(args, source) -> float | None:
    if args.realtime is None:
        return None
    fps = args.realtime or source.fps
    if not fps > 0:
        raise ToolError(f"--realtime: --source {args.source} states no frame rate; give one, e.g. --realtime 30")
    return fps


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def load_backend(args):
    if args.input_size:  # explicit preprocessing for a model exported by another tool
        if args.model.suffix != ".onnx":
            raise ToolError("--input-size: only for .onnx models without roadseg metadata")
        meta = {"input_size": list(args.input_size), "mean": args.mean, "std": args.std}
        check_meta(meta, "--input-size/--mean/--std")
        info = ModelInfo(arch={}, meta=meta)
        return OnnxRuntimeBackend(args.model, args.threads, args.providers, info=info, spin=False)
    # no busy-waiting: capture, render and write run in threads of their own beside inference
    return open_backend(args.model, args.threads, args.providers, backend=args.backend, spin=False)


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
    print(f"backend {backend['backend']} ({backend.get('chosen_because', 'given')}) {backend.get('provider', '')} "
          f"{backend['precision']}, "
          f"input {summary['input_size'][0]}x{summary['input_size'][1]}")
    if summary.get("timing_note"):
        print(summary["timing_note"])
    if "model_only" in summary:
        m, e = summary["model_only"], summary["end_to_end"]
        ratio = summary["ratio_end_to_end_to_model"]
        print(f"model only: p50 {m['p50_ms']:.2f} ms  p90 {m['p90_ms']:.2f}  p99 {m['p99_ms']:.2f}"
              + (f"  -> {m['fps']:.1f} FPS" if m["fps"] is not None else "") + f" ({summary['percentiles']})")
        print("end to end: " + (f"{e['fps']:.1f} FPS (ratio to model-only {ratio:.2f}); " if e["fps"] is not None
                                else f"FPS needs >= {MIN_TIMED_FRAMES} timed frames; ")
              + "stages (mean ms): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["stages_mean_ms"].items()))
    if summary["road"]:
        r = summary["road"]
        print(f"road IoU {100 * r['road_iou']:.2f}  precision {100 * r['precision']:.2f}  "
              f"recall {100 * r['recall']:.2f}  over {r['frames']} labelled frames")


class Progress:
    """Progress on stderr, only when it is a terminal (nothing in logs or pipes): a tqdm bar for files
    and folders (frames done of the total, model and end-to-end FPS), a one-line status rewritten in
    place for live sources. Called by the pipeline's output thread after every written frame."""

    REFRESH_S = 0.5

    def __init__(self, source, max_frames: int | None, loop: bool, stream=None):
        self.stream = stream or sys.stderr
        # the first figures after REFRESH_S: a rate over the first frame or two is noise
        self.live, self.next_at, self.width = source.live, time.monotonic() + self.REFRESH_S, 0
        self.bar = None
        if not self.live:
            from tqdm import tqdm

            count = None if loop else getattr(source, "frame_count", None)
            total = min(filter(None, (count, max_frames)), default=None)
            self.bar = tqdm(total=total, unit="frame", file=self.stream, disable=None, dynamic_ncols=True,
                            mininterval=self.REFRESH_S)
        self.enabled = not self.bar.disable if self.bar is not None else self.stream.isatty()

    def __call__(self, pipeline) -> None:
        if self.bar is not None:
            self.bar.update(1)
        now = time.monotonic()
        if not self.enabled or now < self.next_at:
            return
        self.next_at = now + self.REFRESH_S
        model, e2e = pipeline.running_fps()
        if self.bar is not None:
            self.bar.set_postfix_str(f"model {model:.1f} FPS, end-to-end {e2e:.1f} FPS", refresh=False)
            return
        text = (f"{pipeline.frames_done} frames | model {model:.1f} FPS | end-to-end {e2e:.1f} FPS | "
                f"dropped {pipeline.dropped} | reconnects {pipeline.source.reconnects}")
        self.stream.write("\r" + text.ljust(self.width))  # padded: a shorter line must hide the longer one
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.width:
            self.stream.write("\n")
            self.stream.flush()


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
    source = open_source(args.source, retries=args.retries, stall_timeout=args.stall_timeout, loop=args.loop)
    sinks, view, progress = [], None, None
    try:
        pace = realtime_fps(args, source)
        ground_truth = ground_truth_lookup(args, source) if args.gt else None
        if args.serve:
            from roadseg.deploy.live_view import LiveView, parse_serve_address

            host, port = parse_serve_address(args.serve)
            view = LiveView(host=host, port=port)
            view.start()
            print(f"live view: {view.url}", file=sys.stderr)  # the bound port, also for --serve 0
        # last: with --overwrite, opening an image-folder output removes its old frames
        sinks = [open_sink(uri, pace or source.fps, args.overwrite) for uri in args.output]
        policy = {"auto": None, "every": False, "newest": True}[args.frame_policy]
        options = PipelineOptions(mode=args.mode, alpha=args.alpha, warmup=args.warmup, queue_size=args.queue_size,
                                  drop_frames=policy, status=not args.no_status, max_frames=args.max_frames,
                                  realtime_fps=pace)
        progress = Progress(source, args.max_frames, args.loop)
        pipeline = Pipeline(source, backend, sinks, options, ground_truth, view.publish if view else None, progress)
        with stop_signals_end_the_run():
            summary = pipeline.run()
    except BaseException:
        source.close()
        raise
    finally:
        if progress is not None:
            progress.close()
        if view is not None:
            view.close()
    summary["outputs"] = list(args.output) + ([view.url] if view else [])
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
