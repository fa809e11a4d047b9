"""The threaded deploy pipeline: capture | preprocess | infer | postprocess + render | write.

Five threads joined by bounded queues, so decoding, resizing, rendering and encoding overlap inference
and each other (OpenCV, the encoder and the runtimes release the GIL while they work). Files are
processed frame by frame (a full queue makes the reader wait); live sources keep only the newest
frames (a full queue drops its oldest frame), so the view never lags behind the camera.

Statistics live in bounded memory, so a run can last for days: counts and sums for the means, and
for the latency percentiles a seeded uniform reservoir of at most ``RESERVOIR_SIZE`` samples per
series (exact while a run has fewer timed frames; the summary says which). The summary excludes the
first ``warmup`` frames (model load, allocator and cache warm-up) and states how many: model-only
latency (p50/p90/p99, FPS from p50), end-to-end FPS (frames written per second of wall time, read to
written), the ratio of the two, mean per-stage times, dropped frames, and road IoU/precision/recall
when labels are given. FPS and the ratio need at least ``MIN_TIMED_FRAMES`` timed frames; with fewer
they are null and ``timing_note`` says why (a rate over 3 frames is noise, not a measurement).

``realtime_fps`` paces the reader at a file's own frame rate (a demo, a watchable live view);
``progress(pipeline)`` is called after every written frame (a progress bar, a soak probe).

    pipeline = Pipeline(source, backend, sinks, PipelineOptions(mode="blend", alpha=0.5))
    summary = pipeline.run()          # Ctrl-C stops it cleanly and still returns the summary
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from roadseg.deploy.backends import Backend
from roadseg.deploy.latency import percentiles_ms
from roadseg.deploy.overlay import FrameRenderer, draw_status
from roadseg.deploy.preprocess import logits_to_classes, preprocess
from roadseg.models.core.road_metrics import confusion_matrix, road_metrics

STAGES = ("capture", "preprocess", "infer", "postprocess", "render", "write")
RESERVOIR_SIZE = 10_000  # latency samples kept per series: 80 kB; p50-p99 within a few % of exact
MIN_TIMED_FRAMES = 10    # fewer timed frames give no FPS or ratio (null, with the reason)
_END = object()


class Reservoir:
    """A uniform random sample of at most ``capacity`` values from a stream of any length (Vitter's
    algorithm R): every value seen has the same chance to be kept, whatever its position, so the
    sample's percentiles estimate the stream's. Seeded, so a run's figures are reproducible."""

    def __init__(self, capacity: int = RESERVOIR_SIZE, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"reservoir capacity must be >= 1, got {capacity}")
        self.capacity, self.seed = capacity, seed
        self._values = np.empty(capacity, np.float64)
        self._rng = random.Random(seed)
        self.seen = 0

    def add(self, value: float) -> None:
        if self.seen < self.capacity:
            self._values[self.seen] = value
        else:
            slot = self._rng.randrange(self.seen + 1)
            if slot < self.capacity:
                self._values[slot] = value
        self.seen += 1

    @property
    def samples(self) -> np.ndarray:
        return self._values[:min(self.seen, self.capacity)]

    def describe(self) -> str:
        if self.seen == 0:
            return "none: no timed frames"
        if self.seen <= self.capacity:
            return f"exact: all {self.seen} timed frames"
        return (f"reservoir of {self.capacity} samples out of {self.seen} frames "
                f"(uniform random sample, seed {self.seed})")


class RunningStats:
    """What the summary needs, in constant memory: frame counts, per-stage sums, reservoirs for the
    model-only and end-to-end latencies, and the times that bound the timed span."""

    def __init__(self, warmup: int, capacity: int = RESERVOIR_SIZE, seed: int = 0):
        self.warmup = warmup
        self.frames = 0
        self.stage_sums = dict.fromkeys(STAGES, 0.0)
        self.infer = Reservoir(capacity, seed)
        self.end_to_end = Reservoir(capacity, seed + 1)
        self.timed_from: float | None = None  # the timed span starts when the last warm-up frame is written
        self.last_done: float | None = None

    @property
    def timed(self) -> int:
        return max(self.frames - self.warmup, 0)

    def add(self, started: float, done: float, timings: dict) -> None:
        self.frames += 1
        if self.frames <= self.warmup:
            self.timed_from = done
            return
        if self.timed_from is None:  # no warm-up: the span starts when the first timed frame is read
            self.timed_from = started
        self.last_done = done
        for stage in STAGES:
            self.stage_sums[stage] += timings.get(stage, 0.0)
        self.infer.add(timings["infer"])
        self.end_to_end.add(done - started)

    def report(self) -> dict:
        timed = self.timed
        report = {"warmup_frames_excluded": self.frames - timed, "timed_frames": timed,
                  "percentiles": self.infer.describe(),
                  "fps_rule": f"FPS and ratio need >= {MIN_TIMED_FRAMES} timed frames (after --warmup), "
                              "else null"}
        if timed == 0:
            report["timing_note"] = (f"no timed frames: {self.frames} frames, all warm-up (--warmup {self.warmup})"
                                     if self.frames else "no timed frames: no frames")
            return report
        span = self.last_done - self.timed_from
        enough = timed >= MIN_TIMED_FRAMES and span > 0
        report["timing_note"] = None if enough else (
            f"FPS withheld: {timed} timed frames, fewer than the {MIN_TIMED_FRAMES} needed"
            if timed < MIN_TIMED_FRAMES else "FPS withheld: the timed frames took no measurable time")
        model = {**percentiles_ms(self.infer.samples), "mean_ms": 1000 * self.stage_sums["infer"] / timed}
        if not enough:
            model["fps"] = None
        e2e = percentiles_ms(self.end_to_end.samples)
        e2e_fps = timed / span if enough else None
        report["model_only"] = {"covers": "backend.infer on a preprocessed batch of 1", **model}
        report["end_to_end"] = {"covers": "frame read to frame written, all stages, overlapped in threads",
                                "fps": e2e_fps, "latency_p50_ms": e2e["p50_ms"], "latency_p90_ms": e2e["p90_ms"],
                                "latency_p99_ms": e2e["p99_ms"]}
        report["ratio_end_to_end_to_model"] = e2e_fps / model["fps"] if enough and model["fps"] else None
        report["stages_mean_ms"] = {stage: 1000 * total / timed for stage, total in self.stage_sums.items()}
        return report


class StopRequested(KeyboardInterrupt):
    """A stop signal (SIGTERM from docker/systemd, SIGHUP): ends the run as Ctrl-C does, with the video
    finalised and the summary written, and the signal named as the stop reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class PipelineOptions:
    mode: str = "blend"
    alpha: float = 0.5
    warmup: int = 10
    queue_size: int = 4
    drop_frames: bool | None = None  # None: drop for live sources, never for files
    status: bool = True
    max_frames: int | None = None
    realtime_fps: float | None = None  # read no faster than this (a file at its own rate); None: at once
    reservoir_size: int = RESERVOIR_SIZE


@dataclass
class Frame:
    index: int
    image: np.ndarray
    name: str | None
    batch: np.ndarray | None = None
    logits: np.ndarray | None = None
    started: float = 0.0
    timings: dict = field(default_factory=dict)


class Pipeline:
    def __init__(self, source, backend: Backend, sinks: list, options: PipelineOptions,
                 ground_truth: Callable[[int, str | None], np.ndarray | None] | None = None,
                 publish: Callable[[np.ndarray, dict], None] | None = None,
                 progress: Callable[[Pipeline], None] | None = None):
        self.source, self.backend, self.sinks, self.options = source, backend, sinks, options
        self.ground_truth, self.publish, self.progress = ground_truth, publish, progress
        self.drop = source.live if options.drop_frames is None else options.drop_frames
        self.rawbox: queue.Queue = queue.Queue(options.queue_size)
        self.inbox: queue.Queue = queue.Queue(options.queue_size)
        self.outbox: queue.Queue = queue.Queue(options.queue_size)
        self.writebox: queue.Queue = queue.Queue(options.queue_size)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.stats = RunningStats(options.warmup, options.reservoir_size)
        self.dropped = 0
        self._dropped_lock = threading.Lock()  # two threads drop frames: the reader and the preprocessor
        self.stop_reason = "end of source"
        self.cm = np.zeros((2, 2), np.int64)
        self.labelled = 0
        self.recent_infer: deque = deque(maxlen=30)
        self.recent_done: deque = deque(maxlen=30)
        self.renderer = FrameRenderer(options.mode, options.alpha)  # draws on the decoded frame: owned here
        if hasattr(source, "sleep"):  # a live source's reconnect back-off ends as soon as the run stops
            source.sleep = self.stop.wait
        if hasattr(source, "stopping"):  # and so does its wait for a stalled read
            source.stopping = self.stop.is_set

    # stages ---------------------------------------------------------------------------------------
    def _put(self, box: queue.Queue, item, may_drop: bool) -> None:
        """Enqueue ``item``; when the queue is full either wait (files) or discard its oldest frame
        (live sources: the reader never waits, so the newest frame is always next)."""
        while not self.stop.is_set():
            try:
                if may_drop:
                    box.put_nowait(item)
                else:
                    box.put(item, timeout=0.1)
                return
            except queue.Full:
                if may_drop:
                    try:
                        box.get_nowait()
                        with self._dropped_lock:
                            self.dropped += 1
                    except queue.Empty:
                        pass

    def _get(self, box: queue.Queue):
        while True:
            try:
                return box.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _END

    def capture_loop(self) -> None:
        index = 0
        period = 1.0 / self.options.realtime_fps if self.options.realtime_fps else 0.0
        due = 0.0
        try:
            while not self.stop.is_set():
                if self.options.max_frames is not None and index >= self.options.max_frames:
                    self.stop_reason = f"--max-frames {self.options.max_frames} reached"
                    break
                if period:
                    now = time.perf_counter()
                    if due > now and self.stop.wait(due - now):
                        break
                    # a frame that comes late moves the schedule on: no burst to catch up afterwards
                    due = max(due, now) + period
                started = time.perf_counter()
                image = self.source.read()
                if image is None:
                    if self.stop.is_set():  # a stop asked for while the source was stalled is not a loss
                        break
                    lost = getattr(self.source, "lost", None)
                    if lost:
                        self.stop_reason = f"source lost: {lost}"
                    elif self.source.live:
                        self.stop_reason = "source lost: no frame"
                    break
                frame = Frame(index, image, getattr(self.source, "current_name", None), started=started)
                frame.timings["capture"] = time.perf_counter() - started
                self._put(self.rawbox, frame, self.drop)
                index += 1
        except BaseException as err:  # re-raised in run() after a clean stop
            self.errors.append(err)
        finally:
            self._put(self.rawbox, _END, may_drop=False)

    def preprocess_loop(self) -> None:
        """Its own thread, not the reader's: decoding and resizing a 960x540 frame in one thread took
        3.1 ms, more than any other stage around a fast model (the encoder's 2.9 ms)."""
        info = self.backend.info
        try:
            while (frame := self._get(self.rawbox)) is not _END:
                started = time.perf_counter()
                frame.batch = preprocess(frame.image, info.input_size, info.mean, info.std, bgr=True)
                frame.timings["preprocess"] = time.perf_counter() - started
                self._put(self.inbox, frame, self.drop)
        except BaseException as err:
            self.errors.append(err)
            self.stop.set()
        finally:
            self._put(self.inbox, _END, may_drop=False)

    def infer_loop(self) -> None:
        try:
            while (frame := self._get(self.inbox)) is not _END:
                started = time.perf_counter()
                frame.logits = self.backend.infer(frame.batch)
                frame.timings["infer"] = time.perf_counter() - started
                self.recent_infer.append(frame.timings["infer"])
                frame.batch = None
                self._put(self.outbox, frame, may_drop=False)
        except Exception as err:  # Ctrl-C (KeyboardInterrupt) is run()'s to handle, on this thread
            self.errors.append(err)
            self.stop.set()
        finally:
            self._put(self.outbox, _END, may_drop=False)

    def output_loop(self) -> None:
        """Post-process and render; the frame then waits for the writer. Rendering and encoding run in
        two threads so that their times overlap instead of adding up (OpenCV and the encoder release
        the GIL): with a model of a few ms they are what limits the frame rate."""
        try:
            while (frame := self._get(self.outbox)) is not _END:
                self._render(frame)
                self._put(self.writebox, frame, may_drop=False)
        except BaseException as err:
            self.errors.append(err)
            self.stop.set()
        finally:
            self._put(self.writebox, _END, may_drop=False)

    def write_loop(self) -> None:
        try:
            while (frame := self._get(self.writebox)) is not _END:
                self._write(frame)
                if any(getattr(sink, "closed_by_user", False) for sink in self.sinks):
                    self.stop_reason = "window closed"
                    self.stop.set()
        except BaseException as err:
            self.errors.append(err)
            self.stop.set()

    def _render(self, frame: Frame) -> None:
        started = time.perf_counter()
        height, width = frame.image.shape[:2]
        classes = logits_to_classes(frame.logits[0], (height, width))
        mask = self.ground_truth(frame.index, frame.name) if self.ground_truth else None
        if mask is not None:
            scored = classes if mask.shape == classes.shape else logits_to_classes(frame.logits[0], mask.shape)
            self.cm += confusion_matrix(scored, mask)
            self.labelled += 1
        frame.logits = None
        rendered = time.perf_counter()
        frame.image = self.renderer(frame.image, classes)
        if self.options.status:
            draw_status(frame.image, self.status_text())
        frame.timings.update(postprocess=rendered - started, render=time.perf_counter() - rendered)

    def _write(self, frame: Frame) -> None:
        written = time.perf_counter()
        for sink in self.sinks:
            sink.write(frame.image)
        if self.publish:
            self.publish(frame.image, self.live_stats())
        now = time.perf_counter()
        frame.timings["write"] = now - written
        self.stats.add(frame.started, now, frame.timings)
        self.recent_done.append(now)
        if self.progress:
            self.progress(self)

    # reporting ------------------------------------------------------------------------------------
    def running_fps(self) -> tuple[float, float]:
        model = len(self.recent_infer) / sum(self.recent_infer) if self.recent_infer else 0.0
        span = self.recent_done[-1] - self.recent_done[0] if len(self.recent_done) > 1 else 0.0
        return model, (len(self.recent_done) - 1) / span if span > 0 else 0.0

    def status_text(self) -> str:
        model, e2e = self.running_fps()
        text = f"{self.backend.kind} {self.backend.info.precision} | model {model:.1f} FPS | end-to-end {e2e:.1f} FPS"
        if self.labelled:
            text += f" | road IoU {100 * road_metrics(self.cm)['road_iou']:.1f}"
        return text

    def live_stats(self) -> dict:
        model, e2e = self.running_fps()
        stats = {"frames": self.stats.frames + 1, "model_fps": model, "e2e_fps": e2e, "dropped": self.dropped,
                 "backend": self.backend.kind, "precision": self.backend.info.precision}
        if self.labelled:
            stats["road_iou"] = road_metrics(self.cm)["road_iou"]
        return stats

    @property
    def frames_done(self) -> int:
        return self.stats.frames

    def summary(self, elapsed: float) -> dict:
        report = {"frames": self.stats.frames, "dropped_frames": self.dropped, "stopped": self.stop_reason,
                  "elapsed_s": elapsed, "backend": self.backend.describe(),
                  "input_size": list(self.backend.info.input_size),
                  "source": {"uri": str(self.source.uri), "kind": self.source.kind, "live": self.source.live,
                             "fps": self.source.fps, "reconnects": self.source.reconnects},
                  "frame_policy": "newest only (drop oldest when behind)" if self.drop else "every frame",
                  **self.stats.report()}
        report["road"] = {**road_metrics(self.cm), "frames": self.labelled} if self.labelled else None
        return report

    # driver ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        start = time.perf_counter()
        workers = [threading.Thread(target=self.capture_loop, name="capture", daemon=True),
                   threading.Thread(target=self.preprocess_loop, name="preprocess", daemon=True),
                   threading.Thread(target=self.output_loop, name="output", daemon=True),
                   threading.Thread(target=self.write_loop, name="write", daemon=True)]
        for worker in workers:
            worker.start()
        try:
            self.infer_loop()
            workers[2].join()
            workers[3].join()
        except KeyboardInterrupt as stop:
            self.stop_reason = getattr(stop, "reason", "interrupted (Ctrl-C)")
            self.stop.set()
        finally:
            self.stop.set()
            for worker in workers:
                worker.join(timeout=10)
            # a failed run discards its half-written video; a finished or interrupted one keeps it
            for sink in self.sinks:
                sink.close(commit=not self.errors)
            self.source.close()
        if self.errors:
            raise self.errors[0]
        return self.summary(time.perf_counter() - start)
