"""Internal benchmark: what each stage of ``roadseg run`` costs alone, frame by frame, and the frame
rates those costs allow. It answers "is end to end limited by the model or by what is around it?",
which the run's own per-stage times cannot: there the stages share the cores and each one's time
includes waiting for the others.

    python -m roadseg.deploy.stage_costs --model camvid-road-fast --source ../shared/data/video/solidWhiteRight.mp4 \
        --threads 2 --json deploy/results/stage_costs/camvid-road-fast.json

For every frame of the source, one stage after another on this thread: decode (the source's read;
``roadseg run`` reports it as ``capture``), preprocess, infer (the backend as ``roadseg run`` opens
it), postprocess (logits to classes at the frame's size), render (the blended overlay and the status
line) and encode (the writer of a video ``--output``, to a temporary file that is removed; ``write``
in ``roadseg run``). It prints, per stage, the wall time (mean, p50) and the process CPU time (every
thread: the decoder and the runtime may use more than one core, and their idle workers may spin on
into the next stage), and these rates:

- ``sequential``: every stage one after another on one thread (1000 / the sum of the wall means);
- ``ceiling_thread_per_core``: the pipeline's threads each on a core of its own (1000 / the slowest
  thread's wall time: decode | preprocess | infer | postprocess + render | encode). No number of
  cores lifts end to end above it;
- ``estimate_on_these_cores``: the lower of that ceiling and this machine's cores kept busy by the
  CPU time a frame costs (an underestimate where a runtime's idle workers spin).

``ceiling_ratio_to_model_alone`` is the ceiling over the model's own rate here: when encoding a frame
takes longer than inferring it, end to end cannot keep up with the model timed alone on any number of
these cores. (``roadseg run``'s ratio divides by the model's rate inside the pipeline, where it waits
for the cores too, so it reads higher.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from roadseg.deploy.backends import BACKENDS, open_backend
from roadseg.deploy.overlay import FrameRenderer, draw_status
from roadseg.deploy.preprocess import logits_to_classes, preprocess
from roadseg.deploy.sinks import VideoFileSink
from roadseg.deploy.sources import open_source, source_kind
from roadseg.models.core.cli import ToolError, non_negative_int, positive_int, run
from roadseg.models.core.fileio import atomic_write_json
from roadseg.models.core.zoo import resolve_model

STAGES = ("decode", "preprocess", "infer", "postprocess", "render", "encode")
# deploy.pipeline's threads: capture | preprocess | infer | output (postprocess + render) | write
THREADS = (("decode",), ("preprocess",), ("infer",), ("postprocess", "render"), ("encode",))


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Each stage of roadseg run timed alone, and the FPS it allows.",
                                add_help=add_help, prog="python -m roadseg.deploy.stage_costs")
    p.add_argument("--model", required=True, help="a zoo name or a model file, as for roadseg run")
    p.add_argument("--source", required=True, metavar="URI", help="a video file or an image folder")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--threads", type=non_negative_int, default=0, help="CPU threads of the runtime (0 = default)")
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.add_argument("--warmup", type=non_negative_int, default=10, help="frames left out of the figures")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p


def time_stages(source, backend, renderer: FrameRenderer, sink, max_frames: int | None) -> dict:
    """Wall and process CPU seconds of each stage, per frame. CPU time counts every thread of the process
    (the decoder's and the runtime's too), so a stage that runs on two cores shows it."""
    info = backend.info
    wall: dict[str, list[float]] = {stage: [] for stage in STAGES}
    cpu: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def mark() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    while max_frames is None or len(wall["decode"]) < max_frames:
        marks = [mark()]
        frame = source.read()
        if frame is None:
            break
        marks.append(mark())
        batch = preprocess(frame, info.input_size, info.mean, info.std, bgr=True)
        marks.append(mark())
        logits = backend.infer(batch)
        marks.append(mark())
        classes = logits_to_classes(logits[0], frame.shape[:2])
        marks.append(mark())
        draw_status(renderer(frame, classes), "onnxruntime fp32 | model 999.9 FPS | end-to-end 999.9 FPS")
        marks.append(mark())
        sink.write(frame)
        marks.append(mark())
        for stage, begin, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
            wall[stage].append(end[0] - begin[0])
            cpu[stage].append(end[1] - begin[1])
    return {"wall": wall, "cpu": cpu}


def summarise(times: dict, warmup: int, cores: int) -> dict:
    frames = len(times["wall"]["decode"])
    timed = frames - warmup
    if timed < 1:
        raise ToolError(f"--source: {frames} frames, none left after --warmup {warmup}")

    def per_stage(kind: str, statistic) -> dict[str, float]:
        return {stage: 1000 * float(statistic(values[warmup:])) for stage, values in times[kind].items()}

    wall, p50, cpu = per_stage("wall", np.mean), per_stage("wall", np.median), per_stage("cpu", np.mean)
    wall_sum, cpu_sum = sum(wall.values()), sum(cpu.values())
    slowest = max(THREADS, key=lambda group: sum(wall[stage] for stage in group))
    ceiling = 1000 / sum(wall[stage] for stage in slowest)
    rates = {"sequential": 1000 / wall_sum, "ceiling_thread_per_core": ceiling,
             "estimate_on_these_cores": min(ceiling, cores * 1000 / cpu_sum)}
    model_alone = 1000 / wall["infer"]
    return {"timed_frames": timed, "warmup_frames_excluded": warmup, "cores": cores,
            "wall_mean_ms": wall, "wall_p50_ms": p50, "cpu_mean_ms": cpu,
            "wall_sum_ms": wall_sum, "cpu_sum_ms": cpu_sum, "slowest_thread": list(slowest),
            "rates_fps": rates, "model_alone_fps": model_alone, "ceiling_ratio_to_model_alone": ceiling / model_alone}


def main(args: argparse.Namespace) -> int:
    args.model = resolve_model(args.model)
    if not args.model.is_file():
        raise ToolError(f"--model {args.model}: no such file")
    kind = source_kind(args.source)
    if kind not in ("file", "folder"):
        raise ToolError(f"--source {args.source}: expected a video file or an image folder, not a {kind}")
    backend = open_backend(args.model, args.threads, backend=args.backend, spin=False)  # as roadseg run
    source = open_source(args.source)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        sink = VideoFileSink(Path(scratch) / "encoded.mp4", source.fps or 30.0)
        try:
            times = time_stages(source, backend, FrameRenderer(), sink, args.max_frames)
        finally:
            sink.close(commit=False)
            source.close()
    report = {"model": str(args.model), "source": str(args.source), "backend": backend.describe(),
              **summarise(times, args.warmup, cores)}
    described = report["backend"]
    computed = (f", computed in {described['inference_precision']}"
                if described.get("inference_precision") not in (None, "f32") else "")
    print(f"{report['timed_frames']} frames, {backend.kind} ({described['precision']}{computed}), {cores} cores")
    print(f"{'stage':<12}{'wall mean':>10}{'wall p50':>10}{'CPU mean':>10}  (ms per frame)")
    for stage in STAGES:
        print(f"{stage:<12}{report['wall_mean_ms'][stage]:>10.2f}{report['wall_p50_ms'][stage]:>10.2f}"
              f"{report['cpu_mean_ms'][stage]:>10.2f}")
    print(f"{'sum':<12}{report['wall_sum_ms']:>10.2f}{'':>10}{report['cpu_sum_ms']:>10.2f}")
    rates = report["rates_fps"]
    print(f"end to end: {rates['sequential']:.0f} FPS one stage after another; at most "
          f"{rates['ceiling_thread_per_core']:.0f} with a core per thread (slowest: "
          f"{' + '.join(report['slowest_thread'])}); about {rates['estimate_on_these_cores']:.0f} on these "
          f"{cores} cores. Model alone {report['model_alone_fps']:.0f} FPS: end to end can keep at most "
          f"{report['ceiling_ratio_to_model_alone']:.2f} of it")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"figures: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
