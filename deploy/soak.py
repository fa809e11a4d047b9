"""Soak benchmark of the deploy pipeline: does memory stay flat and speed steady over a long run?

A script, not a test. Runs roadseg.deploy's threaded pipeline in this process on a looping source (a
small video or image folder generated here, 64x128 by default) with a given .onnx model (in the
runtime --backend picks), the MJPEG live view attached and a few HTTP viewers (threads reading
/stream.mjpg from 127.0.0.1 only; at most --viewers of them, each connection held --viewer-seconds
and then reopened, all stopped at the end).
Every --every frames it samples the resident memory of this process (VmRSS in /proc/self/status) and
the frame rate since the previous sample. Prints a table, and writes to --out:

  soak.json   the conditions, every sample, the pipeline's summary, the viewers' and the live view's
              counters, and RSS growth per 10,000 frames: the least-squares slope of RSS against frames
              over the samples after the first --settle fraction (allocator and cache warm-up);
  soak.png    RSS and FPS against frames, when matplotlib is importable (else a note says so).

    roadseg init --arch mobile_unet --img-size 64 128 --out /tmp/soak_m
    roadseg export --ckpt /tmp/soak_m/init.pt --dataset synthetic --out /tmp/soak_m --parity-images 2
    python deploy/soak.py --model /tmp/soak_m/model_fp32.onnx --frames 50000 --out runs/soak

Ctrl-C (or SIGTERM) ends the run early; what was sampled so far is still reported and written.
"""

from __future__ import annotations

import argparse
import http.client
import io
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from roadseg.deploy.backends import BACKENDS, open_backend
from roadseg.deploy.latency import cpu_model
from roadseg.deploy.live_view import LiveView
from roadseg.deploy.pipeline import Pipeline, PipelineOptions
from roadseg.deploy.run import stop_signals_end_the_run
from roadseg.deploy.sources import open_source
from roadseg.models.core.cli import (
    ToolError,
    image_size,
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    run,
)
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, refuse_to_overwrite, require_output_folder

MAX_VIEWERS = 16  # well under the live view's connection cap, so no viewer is turned away


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Soak benchmark: RSS and FPS of the deploy pipeline over a long run.",
                                add_help=add_help, prog="deploy/soak.py")
    p.add_argument("--model", type=Path, required=True, help="an .onnx model")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference runtime (auto: as roadseg run picks it; the report names the one used)")
    p.add_argument("--frames", type=positive_int, default=50_000, help="frames to run")
    p.add_argument("--every", type=positive_int, default=1000, help="sample RSS and FPS every this many frames")
    p.add_argument("--size", type=image_size, default=(64, 128), metavar="HxW", help="generated frame size")
    p.add_argument("--source-kind", choices=("video", "folder"), default="video",
                   help="generate a looping video file or image folder")
    p.add_argument("--clip-frames", type=positive_int, default=60, help="distinct frames in the generated source")
    p.add_argument("--viewers", type=non_negative_int, default=3,
                   help=f"HTTP clients reading the MJPEG stream during the run (at most {MAX_VIEWERS})")
    p.add_argument("--viewer-seconds", type=positive_float, default=10.0,
                   help="each viewer reconnects after this long (new connections all through the run)")
    p.add_argument("--threads", type=non_negative_int, default=1, help="onnxruntime CPU threads (0 = its default)")
    p.add_argument("--settle", type=open_fraction, default=0.2,
                   help="fraction of the samples left out of the RSS growth fit (warm-up)")
    p.add_argument("--out", type=Path, default=Path("runs/soak"), help="folder for soak.json and soak.png")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier soak.json/soak.png in --out")
    return p


def check_args(args) -> None:
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")
    if args.model.suffix != ".onnx":
        raise ToolError(f"--model {args.model}: expected an .onnx file")
    if args.viewers > MAX_VIEWERS:
        raise ToolError(f"--viewers {args.viewers}: expected 0 to {MAX_VIEWERS}")
    if not Path("/proc/self/status").is_file():
        raise ToolError("soak needs /proc/self/status (Linux) to read the resident memory")
    require_output_folder(args.out, "--out")
    refuse_to_overwrite(args.out / "soak.json", args.overwrite)


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ToolError("/proc/self/status has no VmRSS line")


def make_source(folder: Path, kind: str, frames: int, size: tuple[int, int]) -> Path:
    """A drive-like clip: grey sky, a darker road trapezoid that sways, noise so frames differ."""
    height, width = size
    rng = np.random.default_rng(0)
    images = []
    for index in range(frames):
        image = np.full((height, width, 3), (170, 150, 130), np.uint8)
        shift = int(0.15 * width * np.sin(2 * np.pi * index / frames))
        road = np.array([[width // 2 - 4 + shift, height // 2], [width // 2 + 4 + shift, height // 2],
                         [width - 1, height - 1], [0, height - 1]], np.int32)
        cv2.fillPoly(image, [road], (80, 80, 80))
        noise = rng.integers(-12, 13, image.shape)
        images.append(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    if kind == "folder":
        for index, image in enumerate(images):
            cv2.imwrite(str(folder / f"frame_{index:05d}.png"), image)
        return folder
    path = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for image in images:
        writer.write(image)
    writer.release()
    return path


class Viewer(threading.Thread):
    """Reads the MJPEG stream from 127.0.0.1, reconnecting every ``seconds``, until ``stop`` is set."""

    def __init__(self, port: int, seconds: float, stop: threading.Event):
        super().__init__(name="soak-viewer", daemon=True)
        self.port, self.seconds, self.stop = port, seconds, stop
        self.connections = self.failures = self.bytes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/stream.mjpg")
                response = conn.getresponse()
                if response.status != 200:
                    raise ConnectionError(f"HTTP {response.status}")
                self.connections += 1
                until = time.monotonic() + self.seconds
                while time.monotonic() < until and not self.stop.is_set():
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    self.bytes += len(chunk)
            except (OSError, http.client.HTTPException):
                self.failures += 1
                self.stop.wait(0.5)
            finally:
                conn.close()


class Probe:
    """Called after every written frame (the pipeline's progress hook): a sample every ``every`` frames."""

    def __init__(self, every: int, viewers: list[Viewer], view: LiveView):
        self.every, self.viewers, self.view = every, viewers, view
        self.samples: list[dict] = []
        self.started = self.last_time = time.perf_counter()
        self.last_frames = 0

    def __call__(self, pipeline) -> None:
        frames = pipeline.frames_done
        if frames % self.every:
            return
        now = time.perf_counter()
        sample = {"frames": frames, "elapsed_s": round(now - self.started, 3), "rss_kib": rss_kib(),
                  "fps": (frames - self.last_frames) / (now - self.last_time),
                  "model_fps": pipeline.running_fps()[0],
                  "viewer_bytes": sum(v.bytes for v in self.viewers),
                  "viewer_connections": sum(v.connections for v in self.viewers),
                  "jpeg_encoded": self.view.encoded}
        self.last_time, self.last_frames = now, frames
        self.samples.append(sample)
        print_row(sample, self.samples[0])


HEADER = f"{'frames':>8} {'time s':>8} {'RSS MiB':>8} {'dRSS MiB':>9} {'FPS':>7} {'model FPS':>9} {'viewer MB':>9}"


def print_row(sample: dict, first: dict) -> None:
    print(f"{sample['frames']:>8} {sample['elapsed_s']:>8.1f} {sample['rss_kib'] / 1024:>8.1f} "
          f"{(sample['rss_kib'] - first['rss_kib']) / 1024:>+9.2f} {sample['fps']:>7.1f} "
          f"{sample['model_fps']:>9.1f} {sample['viewer_bytes'] / 1e6:>9.1f}", flush=True)


def rss_growth(samples: list[dict], settle: float) -> dict:
    """RSS growth per 10,000 frames: the least-squares slope over the samples after the settling part."""
    kept = samples[int(len(samples) * settle):]
    if len(kept) < 3:
        return {"kib_per_10k_frames": None,
                "method": f"needs >= 3 samples after the first {settle:.0%}; got {len(kept)} (more --frames or "
                          "a smaller --every)"}
    frames = np.array([s["frames"] for s in kept], np.float64)
    rss = np.array([s["rss_kib"] for s in kept], np.float64)
    slope = float(np.polyfit(frames, rss, 1)[0])
    return {"kib_per_10k_frames": 10_000 * slope,
            "method": f"least-squares slope of RSS against frames over {len(kept)} samples from frame "
                      f"{int(frames[0])} to {int(frames[-1])} (the first {settle:.0%} of samples left out as warm-up)",
            "first_to_last_kib": int(rss[-1] - rss[0])}


def save_plot(path: Path, samples: list[dict]) -> str:
    try:
        import matplotlib
    except ImportError:  # the run-time install has no matplotlib: the table and JSON are the result
        return f"{path.name} not drawn: matplotlib is not installed (pip install 'roadseg[plots]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [s["frames"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(frames, [s["rss_kib"] / 1024 for s in samples], marker=".")
    top.set_ylabel("RSS (MiB)")
    top.grid(alpha=0.3)
    bottom.plot(frames, [s["fps"] for s in samples], marker=".", label="end to end")
    bottom.plot(frames, [s["model_fps"] for s in samples], marker=".", label="model only (last 30 frames)")
    bottom.set_ylabel("FPS")
    bottom.set_xlabel("frames")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.suptitle("deploy pipeline soak: memory and speed", fontsize=10)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return f"{path.name} written"


def main(args: argparse.Namespace) -> int:
    check_args(args)
    backend = open_backend(args.model, args.threads, backend=args.backend, spin=False)  # as roadseg run
    rss_start = rss_kib()
    stop_viewers = threading.Event()
    with tempfile.TemporaryDirectory(prefix="roadseg-soak-") as scratch:
        uri = make_source(Path(scratch), args.source_kind, args.clip_frames, args.size)
        source = open_source(str(uri), loop=True)
        view = LiveView("127.0.0.1", 0).start()
        viewers = [Viewer(view.port, args.viewer_seconds, stop_viewers) for _ in range(args.viewers)]
        probe = Probe(args.every, viewers, view)
        options = PipelineOptions(warmup=10, drop_frames=False, max_frames=args.frames)
        pipeline = Pipeline(source, backend, [], options, publish=view.publish, progress=probe)
        print(f"soak: {args.frames} frames of {args.size[0]}x{args.size[1]} ({args.source_kind}, "
              f"{args.clip_frames} looped), {args.viewers} viewers on {view.url}, model {args.model}")
        print(HEADER)
        for viewer in viewers:
            viewer.start()
        try:
            with stop_signals_end_the_run():
                summary = pipeline.run()
        finally:
            stop_viewers.set()
            view.close()
            for viewer in viewers:
                viewer.join(5)
    samples = probe.samples
    growth = rss_growth(samples, args.settle)
    report = {
        "conditions": {"model": str(args.model), "backend": backend.describe(), "cpu": cpu_model(),
                       "frames": args.frames, "size": list(args.size), "source": args.source_kind,
                       "clip_frames": args.clip_frames, "viewers": args.viewers,
                       "viewer_seconds": args.viewer_seconds, "every": args.every, "threads": args.threads},
        "rss_start_kib": rss_start,
        "rss_first_sample_kib": samples[0]["rss_kib"] if samples else None,
        "rss_last_sample_kib": samples[-1]["rss_kib"] if samples else None,
        "rss_max_sample_kib": max((s["rss_kib"] for s in samples), default=None),
        "rss_growth": growth,
        "viewers": {"connections": sum(v.connections for v in viewers), "failures": sum(v.failures for v in viewers),
                    "bytes": sum(v.bytes for v in viewers)},
        "live_view": {"published": view.published, "jpeg_encoded": view.encoded, "rejected": view.rejected,
                      "timed_out": view.timed_out},
        "summary": summary,
        "samples": samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report["plot"] = save_plot(args.out / "soak.png", samples) if samples else "no samples: nothing to plot"
    atomic_write_json(args.out / "soak.json", report)
    slope = growth["kib_per_10k_frames"]
    print(f"{summary['frames']} frames in {summary['elapsed_s']:.1f} s; stopped: {summary['stopped']}")
    print("RSS growth: " + (f"{slope / 1024:+.2f} MiB per 10,000 frames ({growth['method']})" if slope is not None
                            else growth["method"]))
    print(f"viewers: {report['viewers']['connections']} connections, {report['viewers']['failures']} failed, "
          f"{report['viewers']['bytes'] / 1e6:.1f} MB read; {report['plot']}")
    print(f"report: {args.out / 'soak.json'}")
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
