"""Frame sources given as URIs, as jetson-inference names them (OpenCV underneath; no torch).

    video.mp4                     a video file (every frame is processed)
    frames/                       a folder of images, in file-name order
    0, /dev/video0                a camera (V4L2 on Linux)
    rtsp://host/stream, http://…  a network stream
    "nvarguscamerasrc ! … ! appsink"   a raw GStreamer pipeline (needs OpenCV built with GStreamer)

Jetson CSI camera (OpenCV with GStreamer, as JetPack's OpenCV is built):

    nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 !
    nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1

Live sources (camera, stream, pipeline) that stop delivering frames are reopened with back-off
(``retries`` attempts, waiting 0.5, 1, 2, ... seconds); files and folders simply end, or start again
with ``loop=True``. A live source that delivers no frame for ``stall_timeout`` seconds counts as
dropped: OpenCV's own open/read timeouts are set where the backend honours them (FFmpeg, GStreamer),
and every read also runs on a watchdog thread of ours, so a stall is caught with any backend, not
after OpenCV's fixed 30 s or never. When a source ends because it was lost, ``source.lost`` says why
(the pipeline's stop reason); an image folder that vanishes mid-run is lost, not an error.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from roadseg.models.core.cli import ToolError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")
STALL_TIMEOUT_S = 5.0  # a live source silent this long is reopened
OPEN_TIMEOUT_MIN_S = 10.0  # opening may take longer than a frame gap (RTSP handshake, Argus start-up)


class SourceError(ToolError):
    """A source that cannot be opened or read; the message names it."""


def source_kind(uri: str) -> str:
    if uri.isdigit() or uri.startswith("/dev/video"):
        return "camera"
    if uri.startswith(STREAM_SCHEMES):
        return "stream"
    if "!" in uri:
        return "gstreamer"
    if Path(uri).is_dir():
        return "folder"
    return "file"


class ImageFolderSource:
    live, kind, reconnects = False, "folder", 0

    def __init__(self, folder: Path, loop: bool = False):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"--source {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.index, self.fps, self.uri = 0, 0.0, str(folder)
        self.loop, self.loops, self.lost = loop, 0, None

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    @property
    def current_name(self) -> str:
        return self.paths[self.index - 1].name

    def read(self) -> np.ndarray | None:
        if self.index >= len(self.paths):
            if not self.loop:
                return None
            self.index, self.loops = 0, self.loops + 1
        path = self.paths[self.index]
        self.index += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            if not path.exists():  # removed under us: end the run with what was done, not with an error
                self.lost = (f"folder {path.parent} is gone" if not path.parent.is_dir() else f"{path} is gone")
                return None
            raise SourceError(f"--source {path}: cannot be read as an image")
        return frame

    def close(self) -> None:
        pass


class WatchedCapture:
    """A cv2.VideoCapture whose reads run on a daemon thread of its own, so that a read that blocks
    (a stalled stream, a hung camera driver, any backend) can be given up on. A capture given up on
    is released by that thread once its read returns, never while a read is in progress."""

    def __init__(self, capture):
        self.capture = capture
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = False  # a read was asked for and its result not yet taken
        threading.Thread(target=self._serve, name="capture-read", daemon=True).start()

    def _serve(self) -> None:
        while self._requests.get():
            try:
                result = self.capture.read()
            except cv2.error:
                result = (False, None)
            self._results.put(result)
        self.capture.release()

    def isOpened(self) -> bool:
        return self.capture.isOpened()

    def get(self, prop: int) -> float:
        return self.capture.get(prop)

    def read(self, timeout: float = STALL_TIMEOUT_S, stopping: Callable[[], bool] = lambda: False):
        """``(ok, frame)``, or None when no frame came within ``timeout`` s (or ``stopping()`` turned
        true); a read still running is picked up by the next call rather than started again."""
        if not self._pending:
            self._requests.put(True)
            self._pending = True
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                result = self._results.get(timeout=min(left, 0.1))
            except queue.Empty:
                if stopping():
                    return None
                continue
            self._pending = False
            return result
        return None

    def release(self) -> None:
        self._requests.put(False)


class CaptureSource:
    """A cv2.VideoCapture: video file, camera, network stream or GStreamer pipeline.

    ``opener`` (tests) replaces opening ``uri`` with OpenCV; ``stopping`` (set by the pipeline) ends
    a wait for a stalled read as soon as the run stops."""

    def __init__(self, uri: str, kind: str, retries: int = 5, sleep: Callable[[float], bool | None] = time.sleep,
                 stall_timeout: float = STALL_TIMEOUT_S, loop: bool = False,
                 opener: Callable[[], cv2.VideoCapture] | None = None):
        self.uri, self.kind, self.retries, self.sleep = uri, kind, retries, sleep
        self.stall_timeout, self.loop, self.opener = stall_timeout, loop, opener
        self.open_timeout = max(stall_timeout, OPEN_TIMEOUT_MIN_S)
        self.stopping: Callable[[], bool] = lambda: False
        self.live = kind != "file"
        self.reconnects, self.loops, self.lost = 0, 0, None
        if kind == "file" and not Path(uri).is_file():
            raise SourceError(f"--source {uri}: no such file or folder (expected a video file, image folder, "
                              "camera index, rtsp/http URL or GStreamer pipeline)")
        capture = self._open()
        if capture is None:
            raise SourceError(f"--source {uri}: no answer from this {kind} within {self.open_timeout:g} s")
        self.capture = capture
        if not self.capture.isOpened():
            raise SourceError(f"--source {uri}: OpenCV cannot open this {kind}"
                              + (" (is OpenCV built with GStreamer?)" if kind == "gstreamer" else ""))
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if kind == "file" and count > 0 else None

    def _open_capture(self) -> cv2.VideoCapture:
        if self.opener is not None:
            return self.opener()
        if self.kind == "file":
            return cv2.VideoCapture(self.uri)
        if self.kind == "camera":
            device = int(self.uri) if self.uri.isdigit() else self.uri
            api = cv2.CAP_V4L2 if isinstance(device, str) else cv2.CAP_ANY
        else:
            device, api = self.uri, cv2.CAP_GSTREAMER if self.kind == "gstreamer" else cv2.CAP_FFMPEG
        # OpenCV's own timeouts (default 30 s) where the backend takes them; a backend that refuses
        # the parameters is tried without them (the watchdog still bounds its reads)
        ms = int(1000 * self.stall_timeout)
        capture = cv2.VideoCapture(device, api, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(1000 * self.open_timeout),
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not capture.isOpened():
            capture.release()
            capture = cv2.VideoCapture(device, api)
        return capture

    def _open(self):
        """A capture (watched when live), or None when opening took longer than ``open_timeout``."""
        if not self.live:
            return self._open_capture()
        opened: queue.SimpleQueue = queue.SimpleQueue()
        abandoned = threading.Event()

        def open_it():
            capture = self._open_capture()
            opened.put(capture)
            if abandoned.is_set():  # too late: nobody will use it
                capture.release()

        threading.Thread(target=open_it, name="capture-open", daemon=True).start()
        deadline = time.monotonic() + self.open_timeout
        while (left := deadline - time.monotonic()) > 0 and not self.stopping():
            try:
                return WatchedCapture(opened.get(timeout=min(left, 0.1)))
            except queue.Empty:
                continue
        abandoned.set()
        with contextlib.suppress(queue.Empty):  # opened between the deadline and now
            opened.get_nowait().release()
        return None

    def _read_once(self) -> tuple[np.ndarray | None, str]:
        """A frame, or None and why not."""
        if not self.live:
            ok, frame = self.capture.read()
            return (frame, "") if ok else (None, "end of file")
        result = self.capture.read(self.stall_timeout, self.stopping)
        if result is None:
            return None, f"stalled: no frame for {self.stall_timeout:g} s"
        ok, frame = result
        return (frame, "") if ok else (None, "read failed")

    def read(self) -> np.ndarray | None:
        frame, why = self._read_once()
        if frame is not None:
            return frame
        if self.live:
            return self._reconnect(why)
        if self.loop:  # start the file again
            self.capture.release()
            self.capture = self._open()
            self.loops += 1
            frame, _ = self._read_once()  # None only for a file without a frame, which must not loop forever
        return frame

    def _reconnect(self, why: str) -> np.ndarray | None:
        """A live source dropped: reopen with exponential back-off; None after ``retries`` failures."""
        for attempt in range(self.retries):
            if self.sleep(0.5 * 2**attempt) or self.stopping():  # the run is ending
                return None
            self.capture.release()
            capture = self._open()
            if capture is None:
                why = f"no answer within {self.open_timeout:g} s when reopening"
                continue
            self.capture = capture
            if not capture.isOpened():
                why = "cannot reopen"
                continue
            frame, why = self._read_once()
            if frame is not None:
                self.reconnects += 1
                return frame
        self.lost = f"no frame after {self.retries} retries (last: {why})"
        return None

    def close(self) -> None:
        self.capture.release()


def open_source(uri: str, retries: int = 5, stall_timeout: float = STALL_TIMEOUT_S, loop: bool = False):
    kind = source_kind(uri)
    if loop and kind not in ("file", "folder"):
        raise SourceError(f"--loop: only for a video file or an image folder, not a {kind} ({uri})")
    if kind == "folder":
        return ImageFolderSource(Path(uri), loop=loop)
    return CaptureSource(uri, kind, retries, stall_timeout=stall_timeout, loop=loop)
