"""deploy/run.py and its pieces: overlay pixels, the threaded pipeline (every frame, drop policy,
Ctrl-C), sources that fail, ground-truth IoU, and the JSON summary."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from roadseg.deploy.backends import open_backend
from roadseg.deploy.labelled_frames import load_labelled_frames, road_confusion
from roadseg.deploy.overlay import ROAD_BGR, blend, render
from roadseg.deploy.pipeline import Pipeline, PipelineOptions
from roadseg.deploy.sources import CaptureSource
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
    assert summary["backend"]["backend"] == "onnxruntime" and summary["backend"]["precision"] == "fp32"
    assert summary["road"] is None and summary["source"]["kind"] == "file"


@pytest.mark.slow
def test_running_iou_from_ground_truth_equals_direct_scoring(tiny_onnx, synthetic_root, tmp_path):
    folder = synthetic_root / "leftImg8bit" / "val" / "synth"
    result = run_script("deploy/run.py", "--model", tiny_onnx, "--source", folder, "--gt", synthetic_root,
                        "--output", tmp_path / "frames", "--threads", "1", "--warmup", "0")
    assert result.returncode == 0, result.stderr[-1500:]
    summary = json.loads((tmp_path / "frames" / "summary.json").read_text())
    backend = open_backend(tiny_onnx, threads=1)
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
    assert_one_line_error(run_script("deploy/run.py", "--model", tiny_onnx, "--source", tmp_path, "--output",
                                     tmp_path / "o.txt"), "no images")
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
    source = CaptureSource.__new__(CaptureSource)
    source.uri, source.kind, source.live, source.retries, source.reconnects = "rtsp://x", "stream", True, 3, 0
    source.sleep, source._open = waits.append, lambda: next(captures)
    source.capture = source._open()
    frames = 0
    while source.read() is not None:
        frames += 1
    assert frames == 2 + 3 and source.reconnects == 1
    assert waits == [0.5, 1.0] + [0.5, 1.0, 2.0]  # recovered on the 2nd try; then gave up after 3


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
    from roadseg.deploy.sinks import VideoFileSink
    from roadseg.models.core.cli import ToolError

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
