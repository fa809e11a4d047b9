"""The canvas every shape is drawn on, and the Cityscapes label ids the shapes carry.

Owns ``Canvas`` (a float RGB image and a uint8 label image filled with the same polygon, so colour
and label never disagree), the fixed-point conversion for cv2's sub-pixel drawing, the colour
helpers shared by every drawing module, and the label ids, looked up by name in ``cityscapesscripts``.
"""

from __future__ import annotations

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label

ROAD = name2label["road"].id
SIDEWALK = name2label["sidewalk"].id
PARKING = name2label["parking"].id
BUILDING = name2label["building"].id
VEGETATION = name2label["vegetation"].id
TERRAIN = name2label["terrain"].id
SKY = name2label["sky"].id
CAR = name2label["car"].id
POLE = name2label["pole"].id
TRAFFIC_SIGN = name2label["traffic sign"].id
EGO_VEHICLE = name2label["ego vehicle"].id
STATIC = name2label["static"].id
GROUND = name2label["ground"].id

SHIFT = 4  # sub-pixel bits for cv2 drawing, so far-away thin shapes keep their true size
_LIMIT = 1 << 26  # keeps fixed-point coordinates of far off-screen points inside int32


def to_fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(points) * (1 << SHIFT)).clip(-_LIMIT, _LIMIT).astype(np.int32)


class Canvas:
    def __init__(self, height: int, width: int):
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)

    def fill(self, poly: np.ndarray, colour, label_id: int | None = None) -> None:
        self.fill_disjoint([poly], colour, label_id)

    def fill_disjoint(self, polys, colour, label_id: int | None = None) -> None:
        """Fill several polygons (a list, or an (n, k, 2) array) in one call; they must not overlap,
        because cv2 fills them together with an even-odd rule."""
        if not len(polys):
            return
        pts = list(to_fixed(polys)) if isinstance(polys, np.ndarray) else [to_fixed(p) for p in polys]
        cv2.fillPoly(self.rgb, pts, _colour(colour), cv2.LINE_8, SHIFT)
        if label_id is not None:
            cv2.fillPoly(self.label, pts, int(label_id), cv2.LINE_8, SHIFT)

    def ellipses(self, centres: np.ndarray, axes: np.ndarray, colours, label_id: int) -> None:
        """Filled ellipses, drawn in order; centres and axes are (n, 2) arrays in pixels."""
        centres, axes = to_fixed(centres).tolist(), np.maximum(to_fixed(axes), 1).tolist()
        for c, a, colour in zip(centres, axes, colours, strict=True):
            cv2.ellipse(self.rgb, c, a, 0, 0, 360, _colour(colour), -1, cv2.LINE_8, SHIFT)
            cv2.ellipse(self.label, c, a, 0, 0, 360, int(label_id), -1, cv2.LINE_8, SHIFT)


def _colour(colour) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, float(c))) for c in colour)


def jitter(rng: np.random.Generator, colour, spread: float) -> np.ndarray:
    return np.asarray(colour, float) * rng.uniform(0.85, 1.12) + rng.normal(0, spread, 3)


def mix(a, b, w: float) -> np.ndarray:
    return np.asarray(a, float) * (1 - w) + np.asarray(b, float) * w
