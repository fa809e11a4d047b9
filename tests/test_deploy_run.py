"""deploy/run.py and its pieces: overlay pixels, the threaded pipeline (every frame, drop policy,
Ctrl-C, bounded statistics, pacing, stalled and vanishing sources), sources that fail, ground-truth
IoU, the JSON summary (no FPS from too few frames), outputs that must not be clobbered, --serve 0,
--loop, --realtime and the terminal progress."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from roadseg.deploy.backends import choose_backend, open_backend
from roadseg.deploy.labelled_frames import load_labelled_frames, road_confusion
from roadseg.deploy.overlay import ROAD_BGR, FrameRenderer, blend, render
from roadseg.deploy.pipeline import MIN_TIMED_FRAMES, Pipeline, PipelineOptions, Reservoir
from roadseg.deploy.run import Progress, default_summary_path, get_args_parser, main
from roadseg.deploy.sinks import ImageFolderSink, VideoFileSink
from roadseg.deploy.sources import CaptureSource, ImageFolderSource, open_source
from roadseg.models.core.cli import ToolError
from roadseg.models.core.model_metadata import ModelInfo
from roadseg.models.core.road_metrics import road_metrics
from tests.conftest import assert_one_line_error, exported_onnx, run_script

SIZE = (32, 64)
INFO = ModelInfo(arch={"depth": 2}, meta={"input_size": list(SIZE), "mean": [0.5] * 3, "std": [0.25] * 3})


def test_blend_changes_road_pixels_only():
    frame = np.full((4, 6, 3), (10, 100, 200), np.uint8)
    road = np.zeros((4, 6), bool)
    road[2:, 1:4] = True
    out = blend(frame, road, alpha=0.25)
    expected = np.round(0.75 * np.array([10, 100, 200]) + 0.25 * np.array(ROAD_BGR))
    assert (np.abs(out[road].astype(int) - expected) <= 1).all()
    assert (out[~road] == frame[~road]).all()
    classes = road.astype(np.uint8)
    mask = render(frame, classes, "mask")
    assert (mask[road] == ROAD_BGR).all() and (mask[~road] == 0).all()
    side = render(frame, classes, "side", alpha=0.25)
    assert side.shape == (4, 12, 3) and (side[:, :6] == frame).all() and (side[:, 6:] == out).all()
    assert (blend(frame, road, alpha=0.0) == frame).all()


def test_the_video_loop_renderer_draws_on_the_frame_as_render_does_with_one_scratch_plane():
    rng = np.random.default_rng(0)
    renderer = FrameRenderer("blend", alpha=0.4)
    scratches = []
    for shape in [(6, 8), (6, 8), (10, 4)]:  # a changed frame size gets its own scratch
        frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        classes = rng.integers(0, 2, shape, dtype=np.uint8)
        expected = render(frame, classes, "blend", 0.4)
        shown = renderer(frame, classes)
        assert shown is frame and (shown == expected).all()
        scratches.append(renderer._scratch)
        # the blended plane went into the scratch (not into an array OpenCV allocated)
        assert (scratches[-1][classes == 1] == expected[classes == 1]).all()
    assert scratches[0] is scratches[1] and scratches[1] is not scratches[2]
    for mode in ("mask", "side"):  # the other modes make a new image, as render does, and keep the frame
        frame = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        classes = rng.integers(0, 2, (6, 8), dtype=np.uint8)
        kept = frame.copy()
        assert (FrameRenderer(mode)(frame, classes) == render(kept, classes, mode)).all()
        assert (frame == kept).all()
    with pytest.raises(ValueError, match="overlay mode"):
        FrameRenderer("blur")


@pytest.fixture(scope="module")
def tiny_onnx(synthetic_root, tmp_path_factory):
    return exported_onnx(tmp_path_factory.mktemp("deploy"), synthetic_root, SIZE)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "drive.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 48))
    rng = np.random.default_rng(0)
    for _ in range(17):
        writer.write(rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    writer.release()
    return path


def count_frames(path) -> int:
    capture, frames = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


@pytest.mark.slow
def test_every_frame_of_a_video_is_written_and_summarised(tiny_onnx, short_video, tmp_path):
    out = tmp_path / "overlay.mp4"
    result = run_script("deploy/run.py", "--model", tiny_onnx, "--source", short_video, "--output", out,
                        tmp_path / "frames", "--threads", "1", "--warmup", "3", "--mode", "side")
    assert result.returncode == 0, result.stderr[-1500:]
    assert count_frames(out) == 17 and len(list((tmp_path / "frames").glob("frame_*.png"))) == 17
    assert cv2.imread(str(tmp_path / "frames" / "frame_000000.png")).shape == (48, 192, 3)  # side by side
    summary = json.loads((tmp_path / "overlay.summary.json").read_text())
    assert summary["frames"] == 17 and summary["warmup_frames_excluded"] == 3 and summary["timed_frames"] == 14
    assert summary["dropped_frames"] == 0 and summary["frame_policy"] == "every frame"
    model, e2e = summary["model_only"], summary["end_to_end"]
    assert 0 < model["p50_ms"] <= model["p90_ms"] <= model["p99_ms"] and model["fps"] > 0
    assert e2e["fps"] > 0 and 0 < summary["ratio_end_to_end_to_model"] < 5
    assert set(summary["stages_mean_ms"]) == {"capture", "preprocess", "infer", "postprocess", "render", "write"}
    rule, _ = choose_backend(tiny_onnx)
    chosen = summary["backend"]
    assert chosen["precision"] == "fp32"
    if rule == "measure":  # both CPU runtimes installed: the faster one here, with the figures
        assert chosen["backend"] in ("onnxruntime", "openvino") and chosen["chosen_because"].startswith("measured")
    else:
        assert chosen["backend"] == rule
    assert summary["road"] is None and summary["source"]["kind"] == "file"
    forced = run_script("deploy/run.py", "--model", tiny_onnx, "--source", short_video, "--output",
                        tmp_path / "ort.mp4", "--threads", "1", "--backend", "onnxruntime")
    assert forced.returncode == 0, forced.stderr[-1500:]
    backend = json.loads((tmp_path / "ort.summary.json").read_text())["backend"]
    assert backend["backend"] == "onnxruntime" and backend["chosen_because"] == "--backend onnxruntime"


@pytest.mark.slow
def test_running_iou_from_ground_truth_equals_direct_scoring(tiny_onnx, synthetic_root, tmp_path):
    folder = synthetic_root / "leftImg8bit" / "val" / "synth"
    # one runtime on both sides: auto may pick either, and near-tie pixels may differ between them
    result = run_script("deploy/run.py", "--model", tiny_onnx, "--source", folder, "--gt", synthetic_root,
                        "--output", tmp_path / "frames", "--threads", "1", "--warmup", "0", "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr[-1500:]
    summary = json.loads((tmp_path / "frames" / "summary.json").read_text())
    backend = open_backend(tiny_onnx, threads=1, backend="onnxruntime")
    frames = load_labelled_frames("synthetic", synthetic_root, "val", None, backend.info)
    direct = road_metrics(road_confusion(backend.infer, frames))
    assert summary["road"]["frames"] == len(frames) == 4
    assert summary["road"]["road_iou"] == pytest.approx(direct["road_iou"], abs=1e-9)
    assert "road IoU" in result.stdout


@pytest.mark.slow
def test_sources_and_outputs_that_fail_say_so_in_one_line(tiny_onnx, tmp_path):
    assert_one_line_error(run_script("deploy/run.py", "--model", tiny_onnx, "--source", tmp_path / "none.mp4"),
                          "none.mp4", "no such file")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert_one_line_error(run_script("deploy/run.py", "--model", tiny_onnx, "--source", tmp_path / "bad.mp4"),
                          "bad.mp4", "cannot open")
    assert_one_line_error(run_script("deploy/run.py", "--model", tiny_onnx, "--source", tmp_path), "no images")
    assert_one_line_error(run_script("deploy/run.py", "--model", tiny_onnx, "--source", tmp_path, "--output",
                                     tmp_path / "o.txt"), "o.txt", "expected a video file")  # before any work
    assert_one_line_error(run_script("deploy/run.py", "--model", tmp_path / "m.onnx", "--source", "0"), "m.onnx")


class FakeSource:
    """A live source producing numbered frames as fast as asked."""

    live, kind, uri, fps, reconnects = True, "camera", "fake://", 30.0, 0

    def __init__(self, frames: int):
        self.left = frames

    def read(self):
        if self.left == 0:
            return None
        self.left -= 1
        return np.zeros((SIZE[0], SIZE[1], 3), np.uint8)

    def close(self):
        pass


class FakeBackend:
    kind = "fake"
    info = INFO

    def __init__(self, seconds: float = 0.0, interrupt_at: int | None = None):
        self.seconds, self.interrupt_at, self.calls = seconds, interrupt_at, 0

    def infer(self, batch):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.seconds)
        return np.zeros((1, 2, *SIZE), np.float32)

    def describe(self):
        return {"backend": self.kind, "precision": "fp32"}


class ListSink:
    def __init__(self):
        self.frames = []

    def write(self, frame):
        self.frames.append(frame)

    def close(self, commit=True):
        self.committed = commit


def test_live_sources_drop_old_frames_when_inference_is_slow():
    sink = ListSink()
    summary = Pipeline(FakeSource(60), FakeBackend(seconds=0.01), [sink],
                       PipelineOptions(warmup=0, queue_size=2)).run()
    assert summary["dropped_frames"] > 0 and summary["frames"] == len(sink.frames) == 60 - summary["dropped_frames"]
    assert summary["frame_policy"].startswith("newest")
    every = Pipeline(FakeSource(20), FakeBackend(seconds=0.005), [ListSink()],
                     PipelineOptions(warmup=0, queue_size=2, drop_frames=False)).run()
    assert every["dropped_frames"] == 0 and every["frames"] == 20


def test_ctrl_c_stops_cleanly_with_a_summary():
    sink = ListSink()
    summary = Pipeline(FakeSource(100), FakeBackend(interrupt_at=6), [sink],
                       PipelineOptions(warmup=0, drop_frames=False)).run()
    assert summary["stopped"].startswith("interrupted") and summary["frames"] == len(sink.frames) <= 5


def test_live_capture_reconnects_with_back_off_then_stops():
    class FlakyCapture:
        def __init__(self, frames):
            self.frames = frames

        def isOpened(self):
            return True

        def read(self):
            if self.frames:
                self.frames -= 1
                return True, np.zeros((2, 2, 3), np.uint8)
            return False, None

        def release(self):
            pass

        def get(self, prop):
            return 0

    waits, captures = [], iter([FlakyCapture(2), FlakyCapture(0), FlakyCapture(3)] + [FlakyCapture(0)] * 9)
    source = CaptureSource("rtsp://x", "stream", retries=3, sleep=waits.append, opener=lambda: next(captures))
    frames = 0
    while source.read() is not None:
        frames += 1
    assert frames == 2 + 3 and source.reconnects == 1
    assert waits == [0.5, 1.0] + [0.5, 1.0, 2.0]  # recovered on the 2nd try; then gave up after 3
    assert source.lost == "no frame after 3 retries (last: read failed)"
    source.close()


@pytest.mark.slow
def test_model_without_metadata_needs_explicit_preprocessing(tiny_onnx, short_video, tmp_path):
    import onnx

    foreign = onnx.load(str(tiny_onnx))
    del foreign.metadata_props[:]  # as if exported by another tool
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    plain = run_script("deploy/run.py", "--model", tmp_path / "foreign.onnx", "--source", short_video)
    assert_one_line_error(plain, "foreign.onnx", "no roadseg-model/1 metadata", "input size")
    explicit = run_script("deploy/run.py", "--model", tmp_path / "foreign.onnx", "--source", short_video,
                          "--input-size", *map(str, SIZE), "--max-frames", "3", "--json", tmp_path / "s.json")
    assert explicit.returncode == 0, explicit.stderr[-1500:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 3 and summary["input_size"] == list(SIZE)


def test_a_failed_run_leaves_no_half_written_video(tmp_path):
    class FailingBackend(FakeBackend):
        def infer(self, batch):
            if self.calls == 5:
                raise ToolError("model.onnx: onnxruntime failed")
            return super().infer(batch)

    sink = VideoFileSink(tmp_path / "out.mp4", fps=10)
    source = FakeSource(20)
    source.live = False
    with pytest.raises(ToolError, match="onnxruntime failed"):
        Pipeline(source, FailingBackend(), [sink], PipelineOptions(warmup=0)).run()
    assert list(tmp_path.iterdir()) == []  # neither out.mp4 nor its partial file
    done = VideoFileSink(tmp_path / "ok.mp4", fps=10)
    Pipeline(FakeSource(4), FakeBackend(), [done], PipelineOptions(warmup=0, drop_frames=False)).run()
    assert [p.name for p in tmp_path.iterdir()] == ["ok.mp4"] and count_frames(tmp_path / "ok.mp4") == 4


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_stop_signals_end_with_a_playable_video_and_the_summary(tiny_onnx, tmp_path, signame):
    """What docker stop / systemctl stop send: the run ends as Ctrl-C does, not mid-write."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3000):  # far more than the run gets through before the signal
        cv2.imwrite(str(frames / f"f{i:05d}.png"), rng.integers(0, 255, (24, 32, 3), np.uint8))
    out = tmp_path / "overlay.mp4"
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "deploy" / "run.py"), "--model", str(tiny_onnx),
                                "--source", str(frames), "--output", str(out), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".overlay.partial.mp4"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(getattr(signal, signame))
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-1500:]
    summary = json.loads((tmp_path / "overlay.summary.json").read_text())
    assert summary["stopped"] == f"stopped by {signame}" and 0 < summary["frames"] < 3000
    assert count_frames(out) == summary["frames"] and not partial.exists()


# bounded statistics and honest FPS ----------------------------------------------------------------
def test_reservoir_percentiles_of_known_distributions():
    ramp = Reservoir(10_000, seed=0)
    for value in range(200_000):  # in order: keeping the first or the last N would be far off
        ramp.add(float(value))
    assert ramp.seen == 200_000 and len(ramp.samples) == 10_000
    assert np.percentile(ramp.samples, [50, 90, 99]) == pytest.approx([100_000, 180_000, 198_000], rel=0.02)
    assert ramp.describe() == "reservoir of 10000 samples out of 200000 frames (uniform random sample, seed 0)"
    exponential = Reservoir(10_000, seed=1)
    for value in np.random.default_rng(0).exponential(1.0, 100_000):
        exponential.add(value)
    quantiles = [np.log(2), np.log(10), np.log(100)]  # p50, p90, p99 of Exp(1)
    assert np.percentile(exponential.samples, [50, 90, 99]) == pytest.approx(quantiles, rel=0.05)
    few = Reservoir(10_000)
    for value in (3.0, 1.0, 2.0):
        few.add(value)
    assert sorted(few.samples) == [1.0, 2.0, 3.0] and few.describe() == "exact: all 3 timed frames"


def test_statistics_stay_bounded_on_long_runs():
    pipeline = Pipeline(FakeSource(3000), FakeBackend(), [], PipelineOptions(warmup=5, drop_frames=False,
                                                                             status=False, reservoir_size=200))
    summary = pipeline.run()
    assert summary["frames"] == 3000 and summary["timed_frames"] == 2995
    assert len(pipeline.stats.infer.samples) == len(pipeline.stats.end_to_end.samples) == 200
    # nothing else that the pipeline keeps grows with the number of frames
    sized = {f"{type(owner).__name__}.{name}": len(value)
             for owner in (pipeline, pipeline.stats) for name, value in vars(owner).items()
             if hasattr(value, "__len__") and not isinstance(value, str)}
    assert max(sized.values()) <= 200, sized
    assert summary["percentiles"] == "reservoir of 200 samples out of 2995 frames (uniform random sample, seed 0)"
    assert summary["model_only"]["fps"] > 0 and summary["end_to_end"]["fps"] > 0
    assert summary["timing_note"] is None and set(summary["stages_mean_ms"]) >= {"infer", "write"}


@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory):
    """A one-layer ONNX model without roadseg metadata (run with --input-size): no torch, no export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([[-1, 0, 0], [1, 0, 0]], np.float32).reshape(2, 3, 1, 1), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["logits"])], "plain",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, *SIZE])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    onnx.save(model, str(path))
    return path


def image_folder(folder, count: int, shape=(24, 32, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        cv2.imwrite(str(folder / f"f{index:05d}.png"), rng.integers(0, 255, shape, np.uint8))
    return folder


def run_main(model, source, *flags) -> dict:
    """deploy/run.py's main in this process; returns the summary it wrote (give --json or an --output)."""
    argv = ["--model", str(model), "--input-size", *map(str, SIZE), "--source", str(source), "--threads", "1",
            *map(str, flags)]
    args = get_args_parser().parse_args(argv)
    assert main(args) == 0
    return json.loads((args.json or default_summary_path(args.output)).read_text())


def test_no_fps_from_warm_up_or_too_few_frames(plain_onnx, tmp_path, capsys):
    folder = image_folder(tmp_path / "in", 3)
    all_warm = run_main(plain_onnx, folder, "--json", tmp_path / "a.json")  # --warmup 10 by default
    assert all_warm["frames"] == 3 and all_warm["timed_frames"] == 0 and all_warm["warmup_frames_excluded"] == 3
    assert all_warm["timing_note"] == "no timed frames: 3 frames, all warm-up (--warmup 10)"
    assert "model_only" not in all_warm and "end_to_end" not in all_warm
    out = capsys.readouterr().out
    assert "no timed frames: 3 frames, all warm-up" in out and "FPS" not in out
    few = run_main(plain_onnx, folder, "--warmup", "0", "--json", tmp_path / "b.json")
    assert few["timed_frames"] == 3 < MIN_TIMED_FRAMES
    assert few["model_only"]["fps"] is None and few["end_to_end"]["fps"] is None
    assert few["ratio_end_to_end_to_model"] is None and few["model_only"]["p50_ms"] > 0
    assert few["timing_note"] == f"FPS withheld: 3 timed frames, fewer than the {MIN_TIMED_FRAMES} needed"
    assert "FPS withheld" in capsys.readouterr().out
    enough = run_main(plain_onnx, image_folder(tmp_path / "more", MIN_TIMED_FRAMES), "--warmup", "0",
                      "--json", tmp_path / "c.json")
    assert enough["timing_note"] is None and enough["end_to_end"]["fps"] > 0
    assert enough["percentiles"] == f"exact: all {MIN_TIMED_FRAMES} timed frames"


# sources: stalls, loops, pacing, vanishing ---------------------------------------------------------
class BlockingCapture:
    """A capture whose read() blocks (a stream that stopped sending), until ``unblock`` is set."""

    def __init__(self):
        self.unblock, self.released = threading.Event(), threading.Event()

    def isOpened(self):
        return True

    def read(self):
        self.unblock.wait(30)
        return False, None

    def release(self):
        self.released.set()

    def get(self, prop):
        return 0


def test_a_stalled_live_source_goes_through_reconnect_after_the_stall_timeout():
    class Working(BlockingCapture):
        def read(self):
            return True, np.zeros((2, 2, 3), np.uint8)

    stalled, waits = BlockingCapture(), []
    captures = iter([stalled, Working()])
    source = CaptureSource("rtsp://cam", "stream", retries=2, sleep=waits.append, stall_timeout=0.3,
                           opener=lambda: next(captures))
    started = time.monotonic()
    frame = source.read()
    took = time.monotonic() - started
    assert frame is not None and 0.3 <= took < 5.0, took  # the stall timeout, not OpenCV's 30 s
    assert source.reconnects == 1 and waits == [0.5]
    assert not stalled.released.is_set()  # never released under a read in progress ...
    stalled.unblock.set()
    assert stalled.released.wait(2)       # ... but as soon as that read returns
    source.close()


def test_a_source_that_stays_stalled_ends_the_run_as_lost():
    blocked = []

    def opener():
        blocked.append(BlockingCapture())
        return blocked[-1]

    source = CaptureSource("rtsp://cam", "stream", retries=1, stall_timeout=0.2, opener=opener)
    started = time.monotonic()
    summary = Pipeline(source, FakeBackend(), [ListSink()], PipelineOptions(warmup=0)).run()
    assert time.monotonic() - started < 5  # not OpenCV's 30 s per read
    assert summary["stopped"] == "source lost: no frame after 1 retries (last: stalled: no frame for 0.2 s)"
    assert summary["frames"] == 0 and len(blocked) == 2
    for capture in blocked:
        capture.unblock.set()


def test_loop_delivers_more_frames_than_the_file_has(plain_onnx, short_video, tmp_path):
    summary = run_main(plain_onnx, short_video, "--loop", "--max-frames", "40", "--warmup", "0",
                       "--json", tmp_path / "s.json")
    assert summary["frames"] == 40 > count_frames(short_video) == 17
    assert summary["stopped"] == "--max-frames 40 reached"
    folder = image_folder(tmp_path / "in", 4)
    assert run_main(plain_onnx, folder, "--loop", "--max-frames", "10", "--json", tmp_path / "f.json")["frames"] == 10
    with pytest.raises(ToolError, match=r"^--loop: only for a video file or an image folder"):
        run_main(plain_onnx, "rtsp://127.0.0.1:9/none", "--loop")


def test_realtime_paces_a_file_source(plain_onnx, short_video, tmp_path):
    folder = image_folder(tmp_path / "in", 10)
    paced = run_main(plain_onnx, folder, "--realtime", "20", "--json", tmp_path / "a.json")
    assert paced["frames"] == 10 and 0.45 <= paced["elapsed_s"] < 5, paced["elapsed_s"]  # 9 gaps of 50 ms
    own = run_main(plain_onnx, short_video, "--realtime", "--max-frames", "4", "--json", tmp_path / "b.json")
    assert own["source"]["fps"] == 10.0 and own["elapsed_s"] >= 0.3  # the video's own 10 FPS
    with pytest.raises(ToolError, match=r"^--realtime: an image folder has no frame rate"):
        run_main(plain_onnx, folder, "--realtime")
    with pytest.raises(ToolError, match=r"^--realtime: only for a video file or an image folder"):
        run_main(plain_onnx, "0", "--realtime")


def test_an_image_folder_that_vanishes_mid_run_keeps_what_was_rendered(tmp_path):
    folder = image_folder(tmp_path / "in", 40)

    class VanishingBackend(FakeBackend):
        def infer(self, batch):
            if self.calls == 5:  # vanish at once (an unmounted drive): rmtree alone empties it file by
                # file, so the reader could see a file go before the folder does
                shutil.rmtree(folder.rename(tmp_path / "removed"))
            return super().infer(batch)

    frames, video = tmp_path / "frames", tmp_path / "out.mp4"
    summary = Pipeline(ImageFolderSource(folder), VanishingBackend(), [ImageFolderSink(frames),
                       VideoFileSink(video, 10)], PipelineOptions(warmup=0, queue_size=2)).run()
    assert summary["stopped"] == f"source lost: folder {folder} is gone", summary["stopped"]
    assert 6 <= summary["frames"] < 40
    assert len(list(frames.glob("frame_*.png"))) == summary["frames"] == count_frames(video)


# outputs ----------------------------------------------------------------------------------------
def test_outputs_are_never_clobbered_or_mixed(plain_onnx, tmp_path):
    folder = image_folder(tmp_path / "in", 8)
    video = tmp_path / "out.mp4"
    video.write_bytes(b"an earlier result")
    with pytest.raises(ToolError, match=r"^--output .*out\.mp4: already exists; pass --overwrite"):
        run_main(plain_onnx, folder, "--output", video)
    assert video.read_bytes() == b"an earlier result"
    run_main(plain_onnx, folder, "--output", video, "--overwrite")
    assert count_frames(video) == 8

    frames = image_folder(tmp_path / "frames", 0)
    for index in range(16):  # an earlier, longer run
        (frames / f"frame_{index:06d}.png").write_bytes(b"stale")
    (frames / "notes.txt").write_text("not a frame: kept")
    with pytest.raises(ToolError, match=r"^--output .*frames: already holds 16 frames"):
        run_main(plain_onnx, folder, "--output", frames)
    assert len(list(frames.glob("frame_*.png"))) == 16
    summary = run_main(plain_onnx, folder, "--output", frames, "--overwrite")
    written = sorted(frames.glob("frame_*.png"))
    assert summary["frames"] == len(written) == 8 and all(cv2.imread(str(p)) is not None for p in written)
    assert (frames / "notes.txt").exists()
    with pytest.raises(ToolError, match=r"^--output .*notes\.txt/x: .*is a file, not a folder"):
        run_main(plain_onnx, folder, "--output", frames / "notes.txt" / "x")


# the live view's URL and the terminal --------------------------------------------------------------
def test_serve_port_zero_records_and_prints_the_bound_url(plain_onnx, tmp_path, capsys):
    summary = run_main(plain_onnx, image_folder(tmp_path / "in", 3), "--serve", "0", "--json", tmp_path / "s.json")
    url = summary["outputs"][-1]
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/", url)
    assert match and int(match.group(1)) > 0, url
    assert f"live view: {url}" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal():
    pipeline = Pipeline(FakeSource(0), FakeBackend(), [], PipelineOptions())
    live = Progress(pipeline.source, None, False, stream=Terminal())
    live.next_at = 0.0  # no waiting for the first refresh
    live(pipeline)
    live.close()
    assert live.stream.getvalue().startswith("\r0 frames | model 0.0 FPS | end-to-end 0.0 FPS")
    assert live.stream.getvalue().endswith("\n")
    piped = Progress(pipeline.source, None, False, stream=io.StringIO())
    piped(pipeline)
    piped.close()
    assert piped.stream.getvalue() == ""
    pipeline.source.live, pipeline.source.frame_count = False, 17
    bar = Progress(pipeline.source, 5, False, stream=Terminal())
    bar(pipeline)
    bar.close()
    assert "1/5" in bar.stream.getvalue() and "frame" in bar.stream.getvalue()
    quiet = Progress(pipeline.source, 5, False, stream=io.StringIO())  # a log file or a pipe: no bar
    quiet(pipeline)
    quiet.close()
    assert quiet.stream.getvalue() == ""
    assert Progress(pipeline.source, None, True, stream=Terminal()).bar.total is None  # --loop: no end


def test_the_run_time_keeps_onnxruntime_threads_from_busy_waiting(tiny_onnx):
    """In the pipeline, inference shares the cores with capture, render and write: its onnxruntime
    threads must sleep between frames (benchmarks keep spinning, for the lowest model-only latency)."""
    from roadseg.deploy.run import load_backend

    key = "session.intra_op.allow_spinning"
    args = get_args_parser().parse_args(["--model", str(tiny_onnx), "--source", "x.mp4", "--backend", "onnxruntime"])
    args.model = tiny_onnx
    assert load_backend(args).session.get_session_options().get_session_config_entry(key) == "0"
    bench_like = open_backend(tiny_onnx, threads=1, backend="onnxruntime").session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # onnxruntime's default: spin
        bench_like.get_session_config_entry(key)


def test_stage_costs_times_every_stage_of_every_frame_and_names_the_slowest_thread(short_video):
    """deploy/stage_costs.py: each frame goes through every stage (the sink gets the blended frame), and
    a model slower than everything around it is the thread that bounds end to end, at a ratio of 1."""
    from roadseg.deploy.stage_costs import STAGES, summarise, time_stages

    sink = ListSink()
    times = time_stages(open_source(str(short_video)), FakeBackend(seconds=0.02), FrameRenderer(), sink, None)
    assert len(sink.frames) == 17 and all(len(times[kind][stage]) == 17 for kind in times for stage in STAGES)
    assert min(times["wall"]["infer"]) >= 0.02
    report = summarise(times, warmup=2, cores=2)
    assert report["timed_frames"] == 15 and report["slowest_thread"] == ["infer"]
    assert report["ceiling_ratio_to_model_alone"] == pytest.approx(1.0)
    assert report["rates_fps"]["sequential"] < report["rates_fps"]["ceiling_thread_per_core"] < 50


def test_stage_costs_bounds_the_ratio_by_the_slowest_thread_and_leaves_out_warmup():
    from roadseg.deploy.stage_costs import STAGES, summarise

    ms = {"decode": 1.0, "preprocess": 1.5, "infer": 1.0, "postprocess": 1.0, "render": 1.5, "encode": 2.0}
    frames = {stage: [0.5] + [ms[stage] / 1000] * 4 for stage in STAGES}  # a first frame far slower: warm-up
    report = summarise({"wall": frames, "cpu": frames}, warmup=1, cores=2)
    # postprocess + render share a thread (2.5 ms): slower than the encoder (2.0) on its own
    assert report["slowest_thread"] == ["postprocess", "render"]
    assert report["rates_fps"]["ceiling_thread_per_core"] == pytest.approx(400)
    assert report["rates_fps"]["sequential"] == pytest.approx(1000 / 8)
    assert report["rates_fps"]["estimate_on_these_cores"] == pytest.approx(2 * 1000 / 8)  # 8 ms of CPU, 2 cores
    assert report["ceiling_ratio_to_model_alone"] == pytest.approx(0.4)
    with pytest.raises(ToolError, match="none left after --warmup 5"):
        summarise({"wall": frames, "cpu": frames}, warmup=5, cores=2)


def test_stage_costs_refuses_a_live_source_in_one_line_before_loading_a_model(tmp_path):
    result = run_script("deploy/stage_costs.py", "--model", tmp_path / "missing.onnx", "--source", "0")
    assert_one_line_error(result, "missing.onnx")
    (tmp_path / "m.onnx").write_bytes(b"")
    result = run_script("deploy/stage_costs.py", "--model", tmp_path / "m.onnx", "--source", "0")
    assert_one_line_error(result, "--source 0: expected a video file or an image folder, not a camera")
