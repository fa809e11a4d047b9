"""Where rendered frames go, given as URIs: a video file, an image folder, or a window.

    out.mp4 | out.avi | out.mkv     a video file (written under a temporary name, renamed when closed)
    frames/                         a folder of PNG frames (each written atomically)
    display://0                     an OpenCV window (needs a display; q or Esc stops the run)

Outputs never mix or clobber: ``check_output`` (run before any work) refuses an existing video file,
or a folder that already holds frames, unless ``overwrite``; then a folder's old frames are removed
when the sink opens, so it never holds new and stale frames side by side, and an old video stays
until the new one is complete.

The browser live view (``--serve``) is deploy.live_view.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from roadseg.deploy.sources import VIDEO_SUFFIXES
from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import atomic_write_bytes, require_output_folder

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".webm": "VP80"}


class VideoFileSink:
    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps if fps > 0 else 30.0
        self.writer, self.frames = None, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix}")

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:  # the size is known only with the first frame
            fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.path.suffix.lower(), "mp4v"))
            self.writer = cv2.VideoWriter(str(self.partial), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise ToolError(f"--output {self.path}: OpenCV cannot write this video format")
        self.writer.write(frame)
        self.frames += 1

    def close(self, commit: bool = True) -> None:
        """Finish the file; ``commit=False`` (a failed run) discards it instead of leaving half a video."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            if commit and self.partial.exists():
                os.replace(self.partial, self.path)  # readers never see a half-written file
        self.partial.unlink(missing_ok=True)


def old_frames(folder: Path) -> list[Path]:
    """The frames an earlier run left in ``folder`` (the names ImageFolderSink writes)."""
    return sorted(folder.glob("frame_[0-9]*.png")) if folder.is_dir() else []


class ImageFolderSink:
    def __init__(self, folder: Path, overwrite: bool = False):
        self.folder, self.frames = folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for path in old_frames(folder):
                path.unlink(missing_ok=True)

    def write(self, frame: np.ndarray) -> None:
        ok, data = cv2.imencode(".png", frame)
        if not ok:
            raise ToolError(f"--output {self.folder}: cannot encode frame {self.frames} as PNG")
        atomic_write_bytes(self.folder / f"frame_{self.frames:06d}.png", data.tobytes())
        self.frames += 1

    def close(self, commit: bool = True) -> None:
        pass  # each frame was written atomically; a failed run keeps the frames it finished


class WindowSink:
    def __init__(self, title: str = "roadseg"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ToolError("--output display://: no display here (DISPLAY is not set); "
                            "use --serve 127.0.0.1:8080 for a browser view or write a video file")
        self.title, self.frames, self.closed_by_user = title, 0, False

    def write(self, frame: np.ndarray) -> None:
        cv2.imshow(self.title, frame)
        self.frames += 1
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed_by_user = True

    def close(self, commit: bool = True) -> None:
        if self.frames:  # OpenCV raises for a window that was never shown
            cv2.destroyWindow(self.title)


def check_output(uri: str, overwrite: bool = False) -> None:
    """Refuse ``--output uri`` when it cannot be written or would replace or mix with earlier results
    (unless ``overwrite``); one line naming it. Changes nothing."""
    if uri.startswith("display://"):
        return
    path = Path(uri)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if path.is_dir():
            raise ToolError(f"--output {uri}: is a folder; expected the path of a video file")
        require_output_folder(path.parent, "--output")
        if path.exists() and not overwrite:
            raise ToolError(f"--output {uri}: already exists; pass --overwrite to replace it (the old video "
                            "stays until the new one is complete)")
    elif path.suffix:
        raise ToolError(f"--output {uri}: expected a video file ({', '.join(VIDEO_SUFFIXES)}), a folder, "
                        "or display://0")
    else:
        require_output_folder(path, "--output")
        if not overwrite and (old := old_frames(path)):
            raise ToolError(f"--output {uri}: already holds {len(old)} frames ({old[0].name}, ...); pass "
                            "--overwrite to remove them first, or choose an empty folder")


def open_sink(uri: str, fps: float, overwrite: bool = False):
    check_output(uri, overwrite)
    if uri.startswith("display://"):
        return WindowSink()
    path = Path(uri)
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return VideoFileSink(path, fps)
        return ImageFolderSink(path, overwrite)
    except OSError as err:  # no permission, a full disk, ...
        raise ToolError(f"--output {uri}: cannot write there ({err.strerror or err})") from None
