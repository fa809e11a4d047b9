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
(``retries`` attempts, waiting 0.5, 1, 2, ... seconds); files and folders simply end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from roadseg.models.core.cli import ToolError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


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

    def __init__(self, folder: Path):
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"--source {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.index, self.fps, self.uri = 0, 0.0, str(folder)

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    @property
    def current_name(self) -> str:
        return self.paths[self.index - 1].name

    def read(self) -> np.ndarray | None:
        if self.index >= len(self.paths):
            return None
        path = self.paths[self.index]
        self.index += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"--source {path}: cannot be read as an image")
        return frame

    def close(self) -> None:
        pass


class CaptureSource:
    """A cv2.VideoCapture: video file, camera, network stream or GStreamer pipeline."""

    def __init__(self, uri: str, kind: str, retries: int = 5, sleep: Callable[[float], bool | None] = time.sleep):
        self.uri, self.kind, self.retries, self.sleep = uri, kind, retries, sleep
        self.live = kind != "file"
        self.reconnects = 0
        if kind == "file" and not Path(uri).is_file():
            raise SourceError(f"--source {uri}: no such file or folder (expected a video file, image folder, "
                              "camera index, rtsp/http URL or GStreamer pipeline)")
        self.capture = self._open()
        if not self.capture.isOpened():
            raise SourceError(f"--source {uri}: OpenCV cannot open this {kind}"
                              + (" (is OpenCV built with GStreamer?)" if kind == "gstreamer" else ""))
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if kind == "file" and count > 0 else None

    def _open(self) -> cv2.VideoCapture:
        if self.kind == "camera":
            device = int(self.uri) if self.uri.isdigit() else self.uri
            return cv2.VideoCapture(device, cv2.CAP_V4L2) if isinstance(device, str) else cv2.VideoCapture(device)
        if self.kind == "gstreamer":
            return cv2.VideoCapture(self.uri, cv2.CAP_GSTREAMER)
        if self.kind == "stream":
            return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG)
        return cv2.VideoCapture(self.uri)

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        if ok:
            return frame
        if not self.live:
            return None  # end of file
        return self._reconnect()

    def _reconnect(self) -> np.ndarray | None:
        """A live source dropped: reopen with exponential back-off; None after ``retries`` failures."""
        for attempt in range(self.retries):
            if self.sleep(0.5 * 2**attempt):  # the pipeline's stop event: true when the run is ending
                return None
            self.capture.release()
            self.capture = self._open()
            if self.capture.isOpened():
                ok, frame = self.capture.read()
                if ok:
                    self.reconnects += 1
                    return frame
        return None

    def close(self) -> None:
        self.capture.release()


def open_source(uri: str, retries: int = 5):
    kind = source_kind(uri)
    if kind == "folder":
        return ImageFolderSource(Path(uri))
    return CaptureSource(uri, kind, retries)
