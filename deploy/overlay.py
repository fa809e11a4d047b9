"""Drawing the road on a frame (numpy + OpenCV): blended overlay, mask only, or side by side, and
the status line (model FPS, end-to-end FPS, running road IoU).

    shown = render(frame_bgr, classes, mode="blend", alpha=0.5)
    draw_status(shown, "model 95 FPS | e2e 90 FPS | road IoU 96.1")
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

MODES = ("blend", "mask", "side")
ROAD_BGR = (255, 0, 255)  # magenta: visible on asphalt, vegetation and sky alike


@functools.lru_cache(maxsize=4)
def _plane(shape: tuple[int, ...], colour: tuple[int, int, int]) -> np.ndarray:
    """A frame-sized plane of one colour, made once per frame size (filling it costs more than blending)."""
    plane = np.empty(shape, np.uint8)
    plane[:] = colour
    plane.flags.writeable = False
    return plane


def blend(frame: np.ndarray, road: np.ndarray, alpha: float, colour=ROAD_BGR, in_place: bool = False,
          scratch: np.ndarray | None = None) -> np.ndarray:
    """Road pixels become (1 - alpha) * frame + alpha * colour; all others keep the frame's value.
    ``in_place`` draws on ``frame`` itself; ``scratch`` (frame-sized) holds the blended plane, so a video
    loop that passes both allocates nothing per frame."""
    mixed = cv2.addWeighted(frame, 1.0 - alpha, _plane(frame.shape, tuple(colour)), alpha, 0.0, dst=scratch)
    out = frame if in_place else frame.copy()
    cv2.copyTo(mixed, road.view(np.uint8), out)
    return out


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"overlay mode must be one of {MODES}, got {mode!r}")


def render(frame: np.ndarray, classes: np.ndarray, mode: str = "blend", alpha: float = 0.5,
           road_class: int = 1) -> np.ndarray:
    road = classes == road_class
    if mode == "blend":
        return blend(frame, road, alpha)
    if mode == "mask":
        out = np.zeros_like(frame)
        out[road] = ROAD_BGR
        return out
    if mode == "side":
        return np.hstack([frame, blend(frame, road, alpha)])
    check_mode(mode)  # not one of them: says which are


class FrameRenderer:
    """``render`` for a video loop that owns its frames: blends on the decoded frame itself, through one
    scratch plane kept between frames. A fresh frame-sized array per frame is page-faulted in anew each
    time (glibc hands large blocks back to the kernel): at 960x540 that made the blend 3x slower
    (1.5 against 0.5 ms on one core, measured in deploy/results/pipeline_stages.md)."""

    def __init__(self, mode: str = "blend", alpha: float = 0.5):
        check_mode(mode)
        self.mode, self.alpha = mode, alpha
        self._scratch: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, classes: np.ndarray, road_class: int = 1) -> np.ndarray:
        if self.mode != "blend":
            return render(frame, classes, self.mode, self.alpha, road_class)
        if self._scratch is None or self._scratch.shape != frame.shape:
            self._scratch = np.empty_like(frame)
        return blend(frame, classes == road_class, self.alpha, in_place=True, scratch=self._scratch)


def draw_status(frame: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark band along the top of ``frame`` (in place), scaled to the frame."""
    scale = max(frame.shape[1] / 1600, 0.35)
    thickness = max(int(round(2 * scale)), 1)
    (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = text_h + baseline + 8
    frame[:band] = (frame[:band].astype(np.uint16) * 2 // 5).astype(np.uint8)
    cv2.putText(frame, text, (6, text_h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return frame
