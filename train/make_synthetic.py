"""Synthetic road scenes in the official Cityscapes layout: the project's embedded default dataset.

This file owns the procedural scene renderer (``render_scene``) and the writer that lays the frames out
exactly like Cityscapes (``write_dataset``), so the demo and the tests need no download:

    python train/make_synthetic.py --out DIR --num N --size H W --seed S [--num-val M]

writes ``N`` train and ``M`` (default ``max(1, N // 4)``) val frames of ``H`` x ``W`` pixels as

    DIR/leftImg8bit/{train,val}/synth/synth_{idx:06d}_000019_leftImg8bit.png   (8-bit RGB)
    DIR/gtFine/{train,val}/synth/synth_{idx:06d}_000019_gtFine_labelIds.png     (8-bit Cityscapes label ids)

Label ids come by name from ``cityscapesscripts``. Scenes vary in horizon height, road curvature, width,
markings, roadside layout, buildings, vegetation, poles, cars and lighting so that a model has to learn
more than "the bottom half is road"; a few classes that Cityscapes ignores in evaluation (ego vehicle,
parking, static, ground) appear on many frames so that downstream ignore handling is exercised.

Each frame's random stream is derived from ``(seed, split, index)`` only, so a frame is byte-identical
whatever ``--num`` is and however many times it is written.

A *drive* (``render_drive``, ``write_drive``) is one such world seen from a camera moving forward along
the road (things approach and pass, lane dashes stream by, the curvature drifts), for demo videos:

    python train/make_synthetic.py --drive --out DIR --num N --size H W --seed S [--fps F]

writes ``DIR/drive.mp4`` ('mp4v', ``F`` fps, default 15) and its frames with labels as one Cityscapes
sequence, in split ``val`` (the dataset readers know only train/val/test) and city ``drive``:

    DIR/leftImg8bit/val/drive/drive_000000_{frame:06d}_leftImg8bit.png
    DIR/gtFine/val/drive/drive_000000_{frame:06d}_gtFine_labelIds.png

so that ``find_samples("cityscapes", DIR, "val")`` lists them in video order.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label
from tqdm import tqdm

from roadseg.models.core.fileio import atomic_write_bytes

CITY = "synth"
SEQUENCE_FRAME = "000019"  # Cityscapes annotates frame 19 of each snippet; keep its file naming
SPLIT_IDS = {"train": 0, "val": 1}
MIN_SIZE = 32
MAX_SIZE = 8192
# A drive (write_drive) is its own random stream next to the splits', and is written as one Cityscapes
# sequence in split "val" (the dataset reader knows only train/val/test) under the city "drive".
DRIVE_STREAM = 2
DRIVE_SPLIT = "val"
DRIVE_CITY = "drive"
DRIVE_VIDEO = "drive.mp4"
DRIVE_SPEED = 0.8  # metres per frame: about 43 km/h at 15 fps
MAX_DRIVE_FRAMES = 999_999  # six digits of frame number in the file names

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

# Shadows are applied after the facades are drawn (before cars), so they must skip non-ground pixels.
_GROUND_LUT = np.zeros(256, np.float32)
_GROUND_LUT[[ROAD, SIDEWALK, PARKING, TERRAIN, GROUND]] = 1.0

# Per-class texture strength (fine grain, coarse blotches) in 0..255 units: grass is rougher than paint.
_TEXTURE = {
    ROAD: (5.0, 7.0), SIDEWALK: (5.0, 6.0), PARKING: (5.0, 7.0), BUILDING: (3.0, 5.0),
    VEGETATION: (16.0, 14.0), TERRAIN: (12.0, 14.0), GROUND: (12.0, 12.0), SKY: (0.5, 5.0),
    CAR: (1.5, 3.0), POLE: (2.0, 2.0), EGO_VEHICLE: (1.0, 2.0),
}
_FINE_LUT = np.full(256, 3.0, np.float32)
_COARSE_LUT = np.full(256, 4.0, np.float32)
for _id, (_fine, _coarse) in _TEXTURE.items():
    _FINE_LUT[_id], _COARSE_LUT[_id] = _fine, _coarse

# Standard normal quantiles of 256 equal-probability bins, rescaled to unit variance.
_GAUSS_TABLE = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
_GAUSS_TABLE /= _GAUSS_TABLE.std()

_SHIFT = 4  # sub-pixel bits for cv2 drawing, so far-away thin shapes keep their true size
_LIMIT = 1 << 26  # keeps fixed-point coordinates of far off-screen points inside int32

_CAR_PAINTS = [
    (225, 225, 225), (180, 182, 186), (40, 40, 44), (150, 20, 25), (30, 55, 120),
    (95, 98, 102), (200, 190, 160), (20, 80, 60), (230, 200, 40),
]
_BOXES = [(40, 90, 50), (90, 90, 95), (150, 120, 60), (60, 60, 65)]
_FACADES = [(190, 175, 150), (150, 150, 150), (160, 90, 70), (215, 210, 200), (120, 100, 85), (95, 95, 100)]


# --------------------------------------------------------------------------------------------------
# Geometry: a pinhole camera over flat ground, with the road's centreline bent in image space.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    height: int
    width: int
    horizon: float  # image row of the horizon (moves with hills / pitch)
    vanish_x: float  # column where a straight road would vanish (moves with yaw)
    cam_height: float  # metres above the road
    px_per_m: float  # pixels per metre at the bottom image row (t = 1)
    z0: float  # depth in metres of the ground at the bottom image row
    road_offset: float  # lateral metres from the camera to the road centre
    bend2: float  # quadratic / cubic bend of the centreline, in image widths at the horizon
    bend3: float
    # A drive: world depth z is seen at distance z - travel; the world is laid out `reach` metres past
    # what a still scene (travel = reach = 0) holds, so that what comes into view is already there.
    travel: float = 0.0
    reach: float = 0.0

    @property
    def near(self) -> float:
        # Geometry starts below the frame so that near shapes reach past the bottom edge.
        return self.z0 / 1.6

    @property
    def far(self) -> float:
        return self.z0 / 0.015

    @property
    def z_near(self) -> float:
        """World depth of the nearest ground drawn now (``near`` and ``far`` are distances from the camera)."""
        return self.travel + self.near

    @property
    def z_far(self) -> float:
        return self.travel + self.far

    def project(self, z, lat, up=0.0) -> np.ndarray:
        """World (depth, lateral from road centre, height), metres -> image (x, y), shape (..., 2)."""
        t = self.z0 / np.maximum(np.subtract(z, self.travel), 1e-3)  # 1 at the bottom row, 0 at the horizon
        d = 1.0 - t
        if self.reach:
            # A drive brings things right up to the camera, where the bend (fitted to the visible ground)
            # would grow without bound; the road runs straight on below the bottom row instead.
            d = np.maximum(d, 0.0)
        scale = self.px_per_m * t
        bend = self.width * d * d * (self.bend2 + self.bend3 * d)
        x = self.vanish_x + bend + scale * np.add(lat, self.road_offset)
        y = self.horizon + scale * np.subtract(self.cam_height, up)
        out = np.empty((*np.broadcast(x, y).shape, 2))
        out[..., 0] = x
        out[..., 1] = y
        return out

    def depths(self, z_a: float, z_b: float, n: int) -> np.ndarray:
        """Depths between z_a and z_b spaced evenly in image rows, where curvature shows."""
        return self.travel + self.z0 / np.linspace(self.z0 / (z_a - self.travel), self.z0 / (z_b - self.travel), n)

    def px(self, metres: float, z: float) -> float:
        return metres * self.px_per_m * self.z0 / (z - self.travel)


def _laps(cam: Camera, span: float) -> int:
    """How many stretches of road ``span`` metres long a drive sees things scattered over (1 for a still scene).

    Things scattered over a stretch ahead of the camera are scattered again, independently, over each
    following stretch, offset by ``lap * span``, so that a drive keeps meeting new ones."""
    return 1 + int(np.ceil(cam.reach / span))


def ground_strip(cam: Camera, lat_a: float, lat_b: float, z_a: float, z_b: float, n: int = 24) -> np.ndarray:
    z = cam.depths(z_a, z_b, n)
    return np.concatenate([cam.project(z, lat_a), cam.project(z[::-1], lat_b)])


def ground_polygon(cam: Camera, corners, n: int = 6) -> np.ndarray:
    """Ground polygon given by (z, lat) corners; edges are split in n so that long ones follow the bend."""
    pts = np.asarray(corners, float)
    if n > 1:
        s = (np.arange(n) / n)[None, :, None]
        pts = (pts[:, None, :] * (1 - s) + np.roll(pts, -1, axis=0)[:, None, :] * s).reshape(-1, 2)
    # Clamping depth keeps points that lie behind the camera far below the frame instead of mirrored.
    return cam.project(np.maximum(pts[:, 0], cam.travel + cam.z0 / 2), pts[:, 1])


def upright_rect(cam: Camera, z: float, lat_a: float, lat_b: float, up_a: float, up_b: float) -> np.ndarray:
    """Rectangle facing the camera (constant depth)."""
    return cam.project(z, [lat_a, lat_b, lat_b, lat_a], [up_a, up_a, up_b, up_b])


def side_rect(cam: Camera, lat: float, z_a: float, z_b: float, up_a: float, up_b: float) -> np.ndarray:
    """Rectangle parallel to the road (constant lateral position)."""
    return cam.project([z_a, z_b, z_b, z_a], lat, [up_a, up_a, up_b, up_b])


# --------------------------------------------------------------------------------------------------
# Canvas: every shape is drawn into the colour image and the label image with the same polygon.
# --------------------------------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(points) * (1 << _SHIFT)).clip(-_LIMIT, _LIMIT).astype(np.int32)


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
        pts = list(_fixed(polys)) if isinstance(polys, np.ndarray) else [_fixed(p) for p in polys]
        cv2.fillPoly(self.rgb, pts, _colour(colour), cv2.LINE_8, _SHIFT)
        if label_id is not None:
            cv2.fillPoly(self.label, pts, int(label_id), cv2.LINE_8, _SHIFT)

    def ellipses(self, centres: np.ndarray, axes: np.ndarray, colours, label_id: int) -> None:
        """Filled ellipses, drawn in order; centres and axes are (n, 2) arrays in pixels."""
        centres, axes = _fixed(centres).tolist(), np.maximum(_fixed(axes), 1).tolist()
        for c, a, colour in zip(centres, axes, colours, strict=True):
            cv2.ellipse(self.rgb, c, a, 0, 0, 360, _colour(colour), -1, cv2.LINE_8, _SHIFT)
            cv2.ellipse(self.label, c, a, 0, 0, 360, int(label_id), -1, cv2.LINE_8, _SHIFT)


def _colour(colour) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, float(c))) for c in colour)


def _jitter(rng: np.random.Generator, colour, spread: float) -> np.ndarray:
    return np.asarray(colour, float) * rng.uniform(0.85, 1.12) + rng.normal(0, spread, 3)


def _mix(a, b, w: float) -> np.ndarray:
    return np.asarray(a, float) * (1 - w) + np.asarray(b, float) * w


# --------------------------------------------------------------------------------------------------
# Scene description: road cross-section and what stands on each side.
# --------------------------------------------------------------------------------------------------


@dataclass
class Road:
    lanes: int
    lane_width: float
    half_width: float
    colour: np.ndarray


@dataclass
class Side:
    sign: int  # -1 left, +1 right of the road centre
    parking: float  # widths in metres; 0 means absent
    curb: float
    walk: float
    verge: float
    backdrop: str  # "buildings", "trees" or "open"
    inner: float = 0.0  # lateral start of each band, filled in by layout()
    walk_at: float = 0.0
    verge_at: float = 0.0
    back_at: float = 0.0

    def layout(self, road_half_width: float) -> None:
        self.inner = road_half_width
        self.walk_at = self.inner + self.parking
        self.verge_at = self.walk_at + self.curb + self.walk
        self.back_at = self.verge_at + self.verge


def sample_road(rng: np.random.Generator) -> Road:
    lanes = int(rng.choice([1, 2, 2, 2, 3, 4]))
    lane_width = rng.uniform(2.7, 3.8)
    half_width = lanes * lane_width / 2 + rng.uniform(0.0, 0.8)
    grey = rng.uniform(55, 140)
    tint = rng.choice(["grey", "grey", "brown", "blue"])
    shift = {"grey": (0, 0, 0), "brown": (10, 4, -8), "blue": (-5, 0, 9)}[tint]
    colour = grey + np.asarray(shift, float) + rng.normal(0, 2, 3)
    return Road(lanes, lane_width, half_width, colour)


def sample_side(rng: np.random.Generator, sign: int, road: Road) -> Side:
    urban = rng.random() < 0.7
    parking = rng.uniform(2.0, 2.6) if urban and rng.random() < 0.22 else 0.0
    curb = rng.uniform(0.15, 0.3) if urban else 0.0
    walk = rng.uniform(1.5, 4.5) if urban else 0.0
    if urban:  # a grass strip between pavement and houses is the exception in town
        verge = rng.uniform(0.0, 2.5) if rng.random() < 0.3 else 0.0
    else:
        verge = rng.uniform(1.0, 8.0)
    if urban:
        backdrop = rng.choice(["buildings", "buildings", "buildings", "trees", "open"])
    else:
        backdrop = rng.choice(["trees", "trees", "open", "buildings"])
    side = Side(sign, parking, curb, walk, verge, str(backdrop))
    side.layout(road.half_width)
    return side


def sample_camera(rng: np.random.Generator, height: int, width: int, road: Road) -> Camera:
    horizon = height * rng.uniform(0.30, 0.55)
    cam_height = rng.uniform(1.3, 2.2)
    px_per_m = (height - horizon) / cam_height
    focal = width * rng.uniform(0.85, 1.2)
    lane = rng.integers(road.lanes)
    cam_lat = -road.lanes * road.lane_width / 2 + (lane + 0.5) * road.lane_width + rng.normal(0, 0.3)
    if rng.random() < 0.3:
        bend2 = bend3 = 0.0
    else:
        bend2 = rng.choice([-1, 1]) * rng.uniform(0.05, 0.45)
        bend3 = rng.uniform(-0.25, 0.25)
    return Camera(
        height=height, width=width, horizon=horizon, vanish_x=width * rng.uniform(0.35, 0.65),
        cam_height=cam_height, px_per_m=px_per_m, z0=focal / px_per_m, road_offset=-cam_lat,
        bend2=bend2, bend3=bend3,
    )


# --------------------------------------------------------------------------------------------------
# Background: sky, far field, distant skyline.
# --------------------------------------------------------------------------------------------------


def draw_sky(canvas: Canvas, rng: np.random.Generator, cam: Camera) -> np.ndarray:
    """Vertical sky gradient; returns the horizon colour, which also tints distant things (haze)."""
    kind = rng.choice(["clear", "clear", "overcast", "dusk"])
    if kind == "clear":
        top, low = (65, 115, 195), (175, 200, 225)
    elif kind == "overcast":
        g = rng.uniform(150, 215)
        top, low = (g - 10, g - 5, g + 2), (g + 15, g + 15, g + 18)
    else:
        top, low = (85, 100, 150), (225, 180, 150)
    top, low = _jitter(rng, top, 6), _jitter(rng, low, 6)
    rows = np.clip(np.arange(cam.height) / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    column = (top * (1 - rows) + low * rows).astype(np.float32)
    canvas.rgb = cv2.resize(column, (cam.width, cam.height), interpolation=cv2.INTER_NEAREST)
    canvas.label[:] = SKY
    return np.clip(low, 0, 255)


def draw_far_field(canvas: Canvas, rng: np.random.Generator, cam: Camera, haze: np.ndarray) -> np.ndarray:
    """Ground to the horizon and a hazy distant skyline or tree line; returns the terrain colour."""
    h, w = cam.height, cam.width
    dirt = rng.random() < 0.12
    colour = _jitter(rng, (140, 120, 90) if dirt else (95, 125, 60), 8)
    canvas.fill(np.array([[-2, cam.horizon], [w + 2, cam.horizon], [w + 2, h + 2], [-2, h + 2]]),
                _mix(colour, haze, 0.3), GROUND if dirt else TERRAIN)
    if rng.random() < 0.75:
        city = rng.random() < 0.5
        n = int(rng.integers(6, 30))
        xs = np.sort(rng.uniform(-0.05 * w, 1.05 * w, n))
        tops = cam.horizon - rng.uniform(0.0, 0.07, n) * h
        if city:  # stepped blocks
            pts = [[-2, cam.horizon + 1]]
            for x0, x1, y in zip(xs[:-1], xs[1:], tops[:-1], strict=True):
                pts += [[x0, y], [x1, y]]
            pts += [[w + 2, cam.horizon + 1]]
        else:  # rounded tree tops
            pts = [[-2, cam.horizon + 1], *zip(xs, tops, strict=True), [w + 2, cam.horizon + 1]]
        base = (120, 120, 125) if city else (60, 90, 55)
        canvas.fill(np.asarray(pts, float), _mix(_jitter(rng, base, 6), haze, 0.55),
                    BUILDING if city else VEGETATION)
    return colour


# --------------------------------------------------------------------------------------------------
# Flat ground: roadside bands, road surface and markings.
# --------------------------------------------------------------------------------------------------


def draw_sides(canvas: Canvas, rng: np.random.Generator, cam: Camera, road: Road, sides: list[Side],
               terrain: np.ndarray) -> None:
    z_a, z_b = cam.z_near, cam.z_far
    # Paving is sometimes nearly the road's colour so that colour alone cannot separate the two.
    if rng.random() < 0.35:
        walk_colour = road.colour * rng.uniform(0.95, 1.12) + rng.normal(0, 4, 3)
    else:
        walk_colour = _jitter(rng, [(165, 165, 160), (185, 150, 135), (150, 140, 120), (120, 120, 125)]
                              [rng.integers(4)], 6)
    curb_colour = _mix(walk_colour, (215, 215, 210), rng.uniform(0.1, 0.6))
    for side in sides:
        s = side.sign
        if side.parking:
            canvas.fill(ground_strip(cam, s * side.inner, s * side.walk_at, z_a, z_b),
                        road.colour * rng.uniform(0.9, 1.1), PARKING)
            # Bay separators keep the parking label, as in Cityscapes.
            first, gap = cam.near + rng.uniform(0, 5), rng.uniform(4.5, 6.0)
            end = min(cam.far, cam.z0 * 25)
            zs = np.arange(first, end + cam.reach, gap)
            zs = zs[(zs + 0.15 > cam.z_near) & (zs < cam.travel + end)]  # those in view now
            bays = [ground_polygon(cam, [(z, s * side.inner), (z + 0.15, s * side.inner),
                                         (z + 0.15, s * side.walk_at), (z, s * side.walk_at)], n=2)
                    for z in zs]
            canvas.fill_disjoint(bays, (200, 200, 195), PARKING)
        if side.curb:
            canvas.fill(ground_strip(cam, s * side.walk_at, s * (side.walk_at + side.curb), z_a, z_b),
                        curb_colour, SIDEWALK)
        if side.walk:
            canvas.fill(ground_strip(cam, s * (side.walk_at + side.curb), s * side.verge_at, z_a, z_b),
                        walk_colour, SIDEWALK)
        outer = side.back_at if side.backdrop != "open" else side.back_at + 60.0
        if outer > side.verge_at:
            canvas.fill(ground_strip(cam, s * side.verge_at, s * outer, z_a, z_b), terrain, TERRAIN)
            stretch = cam.z0 * 6.8
            for lap in range(_laps(cam, stretch) if side.verge > 0.8 else 0):
                for _ in range(int(rng.integers(0, 3))):
                    # Bare-earth patches in the grass: an ignored class next to terrain.
                    zc = lap * stretch + cam.z0 * rng.uniform(1.2, 8.0)
                    lat = s * (side.verge_at + rng.uniform(0, max(outer - side.verge_at - 0.5, 0.5)))
                    span, wide = rng.uniform(2, 8), rng.uniform(0.5, 2.5)
                    canvas.fill(ground_polygon(cam, [(zc, lat), (zc + span, lat), (zc + span, lat + s * wide),
                                                     (zc, lat + s * wide)]),
                                _jitter(rng, (135, 115, 85), 6), GROUND)


def draw_road(canvas: Canvas, rng: np.random.Generator, cam: Camera, road: Road) -> None:
    r = road.half_width
    canvas.fill(ground_strip(cam, -r, r, cam.z_near, cam.z_far), road.colour, ROAD)
    # Repair patches and wet stains change the colour but not the class.
    stretch = cam.z0 * 5.0
    for lap in range(_laps(cam, stretch)):
        for _ in range(int(rng.integers(0, 4))):
            zc, lat = lap * stretch + cam.z0 * rng.uniform(1.0, 6.0), rng.uniform(-r, r)
            span, wide = rng.uniform(1.5, 10), rng.uniform(0.8, 3.5)
            lat_a, lat_b = np.clip([lat - wide / 2, lat + wide / 2], -r, r)
            canvas.fill(ground_polygon(cam, [(zc, lat_a), (zc + span, lat_a), (zc + span, lat_b), (zc, lat_b)]),
                        road.colour * rng.uniform(0.78, 1.15), ROAD)


def draw_markings(canvas: Canvas, rng: np.random.Generator, cam: Camera, road: Road) -> None:
    if rng.random() < 0.15:
        return
    r = road.half_width
    wear = rng.uniform(0.45, 1.0)
    white = _mix(road.colour, (235, 235, 230), wear)
    yellow = _mix(road.colour, (225, 185, 60), wear)
    width = rng.uniform(0.1, 0.2)
    far_end = min(cam.far, cam.z0 * 40)
    z_a, z_b = cam.z_near, cam.travel + far_end
    for s in (-1, 1):
        if rng.random() < 0.6:
            edge = s * (r - 0.3)
            canvas.fill(ground_strip(cam, edge - width / 2, edge + width / 2, z_a, z_b), white, ROAD)
    period, dash = rng.uniform(8, 15), rng.uniform(0.25, 0.5)
    centre_yellow = rng.random() < 0.3
    for i in range(1, road.lanes):
        lat = -road.lanes * road.lane_width / 2 + i * road.lane_width
        colour = yellow if centre_yellow and 2 * i == road.lanes else white
        if 2 * i == road.lanes and rng.random() < 0.3:  # solid centre line
            canvas.fill(ground_strip(cam, lat - width / 2, lat + width / 2, z_a, z_b), colour, ROAD)
            continue
        starts = np.arange(cam.near + rng.uniform(0, period), far_end + cam.reach, period)
        starts = starts[(starts + dash * period > z_a) & (starts < z_b)]  # those in view now
        dashes = [ground_polygon(cam, [(z, lat - width / 2), (z + dash * period, lat - width / 2),
                                       (z + dash * period, lat + width / 2), (z, lat + width / 2)], n=1)
                  for z in starts]
        canvas.fill_disjoint(dashes, colour, ROAD)
    stretch = cam.z0 * 3.7
    for lap in range(_laps(cam, stretch)):
        if rng.random() < 0.15:  # zebra crossing
            zc = lap * stretch + cam.z0 * rng.uniform(1.3, 5.0)
            bars = [ground_polygon(cam, [(zc, lat), (zc + 3.5, lat), (zc + 3.5, lat + 0.5), (zc, lat + 0.5)], n=2)
                    for lat in np.arange(-r + 0.4, r - 0.5, 1.0)]
            canvas.fill_disjoint(bars, white, ROAD)


# --------------------------------------------------------------------------------------------------
# Upright things. Each knows its depth (for back-to-front drawing) and the shadow it casts on the ground.
# --------------------------------------------------------------------------------------------------


@dataclass
class Sun:
    dlat: float  # ground shadow offset per metre of height
    dz: float
    strength: float  # 0 = no visible sun shadows (overcast)


@dataclass
class Car:
    z: float  # depth of the rear bumper
    lat: float
    width: float
    length: float
    height: float
    paint: np.ndarray

    def shadow(self, cam: Camera, sun: Sun) -> tuple[list, list]:
        xl, xr = self.lat - self.width / 2 - 0.2, self.lat + self.width / 2 + 0.2
        za, zb = self.z - 0.25, self.z + self.length + 0.25
        contact = ground_polygon(cam, [(za, xl), (zb, xl), (zb, xr), (za, xr)], n=2)
        ox, oz = sun.dlat * self.height * 0.6, sun.dz * self.height * 0.6
        cast = ground_polygon(cam, [(za + oz, xl + ox), (zb + oz, xl + ox), (zb + oz, xr + ox),
                                    (za + oz, xr + ox)], n=2)
        return [cast], [contact]

    def draw(self, canvas: Canvas, cam: Camera) -> None:
        w, h, z, zf = self.width, self.height, self.z, self.z + self.length
        xl, xr = self.lat - w / 2, self.lat + w / 2
        clear, belt = 0.18 * h, 0.58 * h
        paint, dark, glass = self.paint, self.paint * 0.72, np.array([30.0, 35.0, 45.0])
        tyre = (22.0, 22.0, 24.0)
        # The long side facing the camera axis is visible; the camera sits at lateral -road_offset.
        side = xl if xl + cam.road_offset > 0 else xr if xr + cam.road_offset < 0 else None
        if side is not None:
            canvas.fill(side_rect(cam, side, z, zf, clear, belt), dark, CAR)
            canvas.fill(cam.project([z + 0.3, zf - 0.9, zf - 1.6, z + 0.7], side, [belt, belt, h, h]),
                        dark * 0.9, CAR)
            canvas.fill(cam.project([z + 0.55, zf - 1.15, zf - 1.7, z + 0.85], side,
                                    [belt + 0.06, belt + 0.06, h - 0.08, h - 0.08]), glass, CAR)
            for zw in (z + 0.8, zf - 0.8):
                canvas.fill(side_rect(cam, side, zw - 0.32, zw + 0.32, 0.0, 0.62), tyre, CAR)
        if cam.cam_height > h:  # roof seen from above
            roof = cam.project([z + 0.7, z + 0.7, zf - 1.6, zf - 1.6],
                               [xl + 0.25, xr - 0.25, xr - 0.25, xl + 0.25], h)
            canvas.fill(roof, paint * 1.05, CAR)
        for a, b in ((xl + 0.05, xl + 0.32), (xr - 0.32, xr - 0.05)):
            canvas.fill(upright_rect(cam, z + 0.4, a, b, 0.0, 0.5), tyre, CAR)
        canvas.fill(upright_rect(cam, z, xl, xr, clear, belt), paint, CAR)
        canvas.fill(cam.project(z + 0.3, [xl + 0.1, xr - 0.1, xr - 0.3, xl + 0.3], [belt, belt, h, h]),
                    paint, CAR)
        canvas.fill(cam.project(z + 0.3, [xl + 0.22, xr - 0.22, xr - 0.38, xl + 0.38],
                                [belt + 0.06, belt + 0.06, h - 0.07, h - 0.07]), glass, CAR)
        canvas.fill(upright_rect(cam, z - 0.01, xl, xr, clear, clear + 0.16), dark * 0.6, CAR)
        for a, b in ((xl + 0.05, xl + 0.35), (xr - 0.35, xr - 0.05)):
            canvas.fill(upright_rect(cam, z - 0.01, a, b, belt - 0.2, belt - 0.06), (190, 25, 25), CAR)
        mid = self.lat
        canvas.fill(upright_rect(cam, z - 0.02, mid - 0.26, mid + 0.26, clear + 0.2, clear + 0.32),
                    (215, 215, 205), CAR)


@dataclass
class Tree:
    z: float
    lat: float
    trunk: float  # trunk height, m
    crown: float  # crown radius, m
    leaves: np.ndarray
    blobs: np.ndarray  # (k, 4): lateral offset, height offset, radius scale, shade

    def shadow(self, cam: Camera, sun: Sun) -> tuple[list, list]:
        cz = self.z + sun.dz * (self.trunk + self.crown)
        cl = self.lat + sun.dlat * (self.trunk + self.crown)
        a = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        ring = np.stack([cz + self.crown * np.sin(a), cl + self.crown * np.cos(a)], axis=1)
        return [ground_polygon(cam, ring, n=1)], []

    def draw(self, canvas: Canvas, cam: Camera) -> None:
        canvas.fill(upright_rect(cam, self.z, self.lat - 0.15, self.lat + 0.15, 0.0, self.trunk + self.crown),
                    (70, 55, 40), VEGETATION)
        dl, du, scale, shade = self.blobs.T
        centres = cam.project(self.z, self.lat + dl * self.crown, self.trunk + self.crown * (1 + du))
        r = cam.px(self.crown, self.z) * scale
        canvas.ellipses(centres, np.stack([r, r * 0.9], 1), self.leaves * shade[:, None], VEGETATION)


@dataclass
class Pole:
    z: float
    lat: float
    height: float
    width: float
    arm: float  # signed lateral length of a lamp arm towards the road (0 = none)
    sign: np.ndarray | None  # colour of a traffic sign plate, if any

    def shadow(self, cam: Camera, sun: Sun) -> tuple[list, list]:
        w = self.width / 2
        tip_z, tip_l = self.z + sun.dz * self.height, self.lat + sun.dlat * self.height
        return [ground_polygon(cam, [(self.z, self.lat - w), (tip_z, tip_l - w), (tip_z, tip_l + w),
                                     (self.z, self.lat + w)], n=3)], []

    def draw(self, canvas: Canvas, cam: Camera) -> None:
        w = max(self.width, 1.2 / cam.px(1.0, self.z))  # stay at least ~1 px wide so labels are learnable
        grey = (105, 105, 108)
        canvas.fill(upright_rect(cam, self.z, self.lat - w / 2, self.lat + w / 2, 0.0, self.height),
                    grey, POLE)
        if self.arm:
            canvas.fill(cam.project(self.z, [self.lat, self.lat + self.arm, self.lat + self.arm, self.lat],
                                    [self.height - w, self.height, self.height + w, self.height]), grey, POLE)
            canvas.fill(upright_rect(cam, self.z, self.lat + self.arm - 0.3 * np.sign(self.arm),
                                     self.lat + self.arm + 0.1 * np.sign(self.arm), self.height - 0.15,
                                     self.height + 0.05), (225, 225, 210), POLE)
        if self.sign is not None:
            s = 0.35
            canvas.fill(upright_rect(cam, self.z - 0.05, self.lat - s, self.lat + s, 2.2, 2.2 + 2 * s),
                        self.sign, TRAFFIC_SIGN)
            canvas.fill(upright_rect(cam, self.z - 0.06, self.lat - s / 2, self.lat + s / 2, 2.2 + s / 2,
                                     2.2 + 1.5 * s), (235, 235, 235), TRAFFIC_SIGN)


@dataclass
class Box:
    """Street furniture Cityscapes labels 'static' (bins, boxes, bollards)."""

    z: float
    lat: float
    width: float
    height: float
    colour: np.ndarray

    def shadow(self, cam: Camera, sun: Sun) -> tuple[list, list]:
        return [], []

    def draw(self, canvas: Canvas, cam: Camera) -> None:
        w = self.width / 2
        if cam.cam_height > self.height:
            canvas.fill(cam.project([self.z, self.z, self.z + self.width, self.z + self.width],
                                    [self.lat - w, self.lat + w, self.lat + w, self.lat - w], self.height),
                        self.colour * 1.15, STATIC)
        canvas.fill(upright_rect(cam, self.z, self.lat - w, self.lat + w, 0.0, self.height),
                    self.colour, STATIC)


def lane_paces(rng: np.random.Generator, cam: Camera, road: Road) -> np.ndarray:
    """A drive's traffic speed per lane as a fraction of the camera's: the camera overtakes the other
    lanes, and its own lane drives a little faster than it, so nothing ever runs into the camera."""
    paces = rng.uniform(0.35, 0.9, road.lanes)
    own = (road.lanes * road.lane_width / 2 - cam.road_offset) // road.lane_width
    paces[int(np.clip(own, 0, road.lanes - 1))] = rng.uniform(1.0, 1.1)
    return paces


def sample_cars(rng: np.random.Generator, cam: Camera, road: Road, sides: list[Side]) -> list[Car]:
    """Moving traffic and parked cars. A car's depth is where it starts plus ``pace * cam.travel``; a
    still scene has every pace 0. Cars in one lane share its pace, so their gaps never close."""
    paces = lane_paces(rng, cam, road) if cam.reach else np.zeros(road.lanes)
    slots = []
    stretch = cam.z0 * 13.1
    for lap in range(_laps(cam, stretch)):
        for _ in range(int(rng.integers(0, 5))):  # moving traffic in the lanes
            lane = rng.integers(road.lanes)
            lat = -road.lanes * road.lane_width / 2 + (lane + 0.5) * road.lane_width + rng.normal(0, 0.25)
            slots.append((lat, lap * stretch + cam.z0 / rng.uniform(0.07, 0.85), paces[lane]))
    stretch = cam.z0 * 18.75
    for side in sides:  # parked cars in parking bays
        if side.parking:
            for lap in range(_laps(cam, stretch)):
                for _ in range(int(rng.integers(0, 4))):
                    slots.append((side.sign * (side.inner + side.parking / 2),
                                  lap * stretch + cam.z0 / rng.uniform(0.05, 0.8), 0.0))
    cars: list[Car] = []
    starts: list[tuple[float, float]] = []  # (depth at travel 0, pace) of each car kept
    for lat, z, pace in slots:
        width = rng.uniform(1.65, 1.95)
        length = rng.uniform(3.8, 4.9)
        # Side by side, cars at different paces would meet sooner or later.
        if any(abs(lat - c.lat) < (width + c.width) / 2 + 0.2 and (abs(z - cz) < max(length, c.length) + 1
                                                                   or pace != c_pace)
               for c, (cz, c_pace) in zip(cars, starts, strict=True)):
            continue
        paint = _jitter(rng, _CAR_PAINTS[rng.integers(len(_CAR_PAINTS))], 5)
        cars.append(Car(z + pace * cam.travel, lat, width, length, rng.uniform(1.4, 1.65), paint))
        starts.append((z, pace))
    return cars


def sample_roadside(rng: np.random.Generator, cam: Camera, sides: list[Side]) -> list:
    things: list = []
    z_max = cam.z0 * 30 + cam.reach
    for side in sides:
        s = side.sign
        # Poles on the kerb side of the pavement, or in the verge on rural roads.
        if rng.random() < 0.75:
            if side.walk:
                lat = s * (side.walk_at + side.curb + 0.4)
            else:
                lat = s * (side.verge_at + min(side.verge, 1.5) / 2)
            spacing = rng.uniform(14, 40)
            for z in np.arange(cam.near + rng.uniform(0, spacing), z_max, spacing):
                sign = None
                if rng.random() < 0.25:
                    sign = _jitter(rng, [(20, 70, 170), (200, 30, 30), (240, 200, 30)][rng.integers(3)], 5)
                arm = -s * rng.uniform(0.8, 2.0) if rng.random() < 0.5 else 0.0
                things.append(Pole(z, lat, rng.uniform(4.5, 9.0), rng.uniform(0.12, 0.25), arm, sign))
        tree_room = side.walk > 2.5 or side.verge > 2.0
        if tree_room and rng.random() < 0.55:
            lat = s * (side.verge_at + side.verge / 2 if side.verge > 2.0 else side.verge_at - 0.8)
            leaves = _jitter(rng, (55, 90, 40), 8)
            spacing = rng.uniform(8, 20)
            for z in np.arange(cam.near + rng.uniform(0, spacing), z_max, spacing):
                k = int(rng.integers(3, 7))
                blobs = np.column_stack([rng.normal(0, 0.35, k), rng.normal(0, 0.3, k),
                                         rng.uniform(0.55, 0.95, k), rng.uniform(0.75, 1.2, k)])
                things.append(Tree(z + rng.normal(0, 1), lat, rng.uniform(1.8, 3.5), rng.uniform(1.5, 3.2),
                                   leaves, blobs))
        stretch = cam.z0 * 9.0
        for lap in range(_laps(cam, stretch) if side.walk else 0):
            if rng.random() >= 0.45:
                continue
            for _ in range(int(rng.integers(1, 4))):
                lat = s * rng.uniform(side.walk_at + side.curb + 0.5, max(side.verge_at - 0.5,
                                                                         side.walk_at + side.curb + 0.6))
                colour = _jitter(rng, _BOXES[rng.integers(len(_BOXES))], 6)
                things.append(Box(lap * stretch + cam.z0 * rng.uniform(1.0, 10.0), lat, rng.uniform(0.4, 1.2),
                                  rng.uniform(0.6, 1.3), colour))
    return things


# --------------------------------------------------------------------------------------------------
# Backdrops: facades with windows, or a tree line, along the outer edge of each side.
# --------------------------------------------------------------------------------------------------


def draw_buildings(canvas: Canvas, rng: np.random.Generator, cam: Camera, side: Side, haze: np.ndarray,
                   sun: Sun, sun_polys: list) -> None:
    s, base = side.sign, side.sign * side.back_at
    blocks = []
    z = cam.near
    while z < cam.far * 0.4 + cam.reach:
        length = rng.uniform(8, 35)
        blocks.append((z, z + length, rng.uniform(5, 30)))
        z += length + (rng.uniform(3, 12) if rng.random() < 0.25 else 0.0)
    # Shadows fall across the street only when the sun is behind this row of buildings.
    if sun.strength and np.sign(sun.dlat) == -s:
        for za, zb, h in blocks:
            if not _block_in_view(cam, za, zb):
                continue
            ol, oz = sun.dlat * h, sun.dz * h
            sun_polys.append(ground_polygon(cam, [(za, base), (zb, base), (zb + oz, base + ol),
                                                  (za + oz, base + ol)], n=8))
    for za, zb, h in reversed(blocks):  # far to near, so nearer blocks hide the end walls behind them
        colour = _mix(_jitter(rng, _FACADES[rng.integers(len(_FACADES))], 6), haze, min(0.7, za / 250))
        if _block_in_view(cam, za, zb):
            if za > _backdrop_start(cam):
                canvas.fill(upright_rect(cam, za, base, base + s * 15, 0.0, h), colour * 0.72, BUILDING)
            zs = cam.depths(max(za, _backdrop_start(cam)), zb, 8)
            facade = np.concatenate([cam.project(zs, base, 0.0), cam.project(zs[::-1], base, h)])
            canvas.fill(facade, colour, BUILDING)
        draw_windows(canvas, rng, cam, base, za, zb, h, colour)  # draws its random numbers even out of view


def _backdrop_start(cam: Camera) -> float:
    """World depth where facades and tree lines begin: the near ground limit in a still scene; in a drive,
    just ahead of the camera, so that what passes leaves through the side of the image instead of vanishing."""
    return cam.travel + 0.5 if cam.reach else cam.z_near


def _block_in_view(cam: Camera, za: float, zb: float) -> bool:
    """A block that starts no farther than a still scene's last one and does not lie behind the camera."""
    return zb > _backdrop_start(cam) and za < cam.travel + cam.far * 0.4


def draw_windows(canvas: Canvas, rng: np.random.Generator, cam: Camera, lat: float, za: float, zb: float,
                 h: float, facade: np.ndarray) -> None:
    floor, step = rng.uniform(2.8, 3.6), rng.uniform(2.2, 3.6)
    ww, wh = step * rng.uniform(0.35, 0.7), floor * rng.uniform(0.35, 0.6)
    zs = np.arange(za + step * 0.5, zb - ww, step)
    ups = np.arange(floor * 0.6, h - wh - 0.3, floor)
    if not len(zs) or not len(ups):
        return
    zz, uu = np.meshgrid(zs, ups)
    zz, uu = zz.ravel(), uu.ravel()
    # Skip windows that would stay sub-pixel; a drive keeps those it comes close enough to see. This
    # choice draws random numbers, so it must not depend on where the camera is now.
    nearest = np.maximum(zz + ww - cam.reach, cam.near)
    big_enough = ww * cam.px_per_m * cam.z0 / nearest > 1.5
    zz, uu = zz[big_enough], uu[big_enough]
    if not len(zz):
        return
    glass = _mix(facade, rng.choice([(35, 45, 60), (150, 170, 190), (60, 55, 50)]), rng.uniform(0.6, 0.9))
    shown = (zz > _backdrop_start(cam)) & (cam.px(ww, zz + ww) > 1.5) & _block_in_view(cam, za, zb)
    zz, uu = zz[shown], uu[shown]
    corners = cam.project(np.stack([zz, zz + ww, zz + ww, zz], 1), lat,
                          np.stack([uu, uu, uu + wh, uu + wh], 1))
    canvas.fill_disjoint(corners, glass)


def draw_tree_line(canvas: Canvas, rng: np.random.Generator, cam: Camera, side: Side,
                   haze: np.ndarray) -> None:
    """A hedge or wood along the outer edge: a solid band under a row of rounded crowns."""
    if cam.reach:  # a drive: crowns stand at fixed places along the road, so that they come closer
        zs = np.arange(cam.near, cam.far * 0.5 + cam.reach, 3.0)
    else:  # a still scene: crowns evenly spaced in image rows
        zs = cam.depths(cam.z_near, cam.z_far * 0.5, 40)
    n = len(zs)
    tops = np.convolve(rng.uniform(2.5, 12, n + 4), np.ones(5) / 5, mode="valid")
    radius = tops * rng.uniform(0.2, 0.35, n)
    base = side.sign * side.back_at
    leaves = _mix(_jitter(rng, (50, 80, 40), 8), haze, 0.15)
    shades = leaves * rng.uniform(0.75, 1.15, n)[:, None]
    if cam.reach:
        seen = (zs > _backdrop_start(cam)) & (zs < cam.travel + cam.far * 0.5)
        # Shades reversed like the centres below, so that each crown keeps its shade as the view moves on.
        zs, tops, radius, shades = zs[seen], tops[seen], radius[seen], shades[seen][::-1]
    body = np.concatenate([cam.project(zs, base, 0.0), cam.project(zs[::-1], base, (tops - radius)[::-1])])
    canvas.fill(body, leaves * 0.9, VEGETATION)
    centres = cam.project(zs, base + side.sign * radius * 0.5, tops - radius)[::-1]  # far to near
    r_px = (cam.px(1.0, zs) * radius)[::-1]
    canvas.ellipses(centres, np.stack([r_px * 1.2, r_px], 1), shades, VEGETATION)


def draw_shadows(canvas: Canvas, sun_polys: list, contact_polys: list, sun: Sun, contact: float,
                 soft: float) -> None:
    """Darken ground pixels under shadows; labels are untouched (shadowed road is still road)."""
    h, w = canvas.label.shape
    light = np.ones((h, w), np.float32)
    for polys, strength in ((sun_polys, sun.strength), (contact_polys, contact)):
        if not polys or not strength:
            continue
        mask = np.zeros((h, w), np.float32)
        for poly in polys:  # one call each: shadows overlap, and cv2 would cut holes where they do
            cv2.fillPoly(mask, [_fixed(poly)], 1.0, cv2.LINE_8, _SHIFT)
        cv2.GaussianBlur(mask, (0, 0), soft, dst=mask)
        light *= 1.0 - strength * mask
    # light = 1 - ground * (1 - light): walls, sky and the far skyline keep their brightness.
    np.subtract(1.0, light, out=light)
    light *= cv2.LUT(canvas.label, _GROUND_LUT)
    np.subtract(1.0, light, out=light)
    cv2.multiply(canvas.rgb, _three(light), dst=canvas.rgb)


def draw_ego_hood(canvas: Canvas, rng: np.random.Generator) -> None:
    h, w = canvas.label.shape
    depth, bulge = rng.uniform(0.06, 0.15) * h, rng.uniform(0.2, 0.6)
    xs = np.linspace(-0.1 * w, 1.1 * w, 25)
    edge = h - depth + bulge * depth * ((xs - w / 2) / (0.6 * w)) ** 2
    paint = _jitter(rng, _CAR_PAINTS[rng.integers(len(_CAR_PAINTS))], 5) * 0.7
    canvas.fill(np.concatenate([np.stack([xs, edge], 1), [[1.1 * w, h + 2], [-0.1 * w, h + 2]]]), paint,
                EGO_VEHICLE)
    # A reflection band keeps the hood from being a flat colour; it stays ego vehicle.
    band = np.concatenate([np.stack([xs, edge + 0.25 * depth], 1),
                           np.stack([xs[::-1], edge[::-1] + 0.45 * depth], 1)])
    canvas.fill(band, _mix(paint, (200, 200, 200), 0.25), EGO_VEHICLE)


# --------------------------------------------------------------------------------------------------
# Camera effects and the full scene.
# --------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise, float32, through a 256-entry table: several times faster than standard_normal."""
    return cv2.LUT(rng.integers(0, 256, shape, dtype=np.uint8), _GAUSS_TABLE)


def _three(gray: np.ndarray) -> np.ndarray:
    # cv2 per-pixel ops need matching channels; numpy broadcasting over a last axis of 3 is ~10x slower.
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def apply_texture(canvas: Canvas, rng: np.random.Generator) -> None:
    h, w = canvas.label.shape
    fine = _noise(rng, (h, w))
    coarse = rng.standard_normal((h // 12 + 2, w // 12 + 2), dtype=np.float32)
    coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    fine *= cv2.LUT(canvas.label, _FINE_LUT * np.float32(rng.uniform(0.6, 1.4)))
    coarse *= cv2.LUT(canvas.label, _COARSE_LUT * np.float32(rng.uniform(0.6, 1.4)))
    fine += coarse
    cv2.add(canvas.rgb, _three(fine), dst=canvas.rgb)


def apply_camera(rgb: np.ndarray, rng: np.random.Generator,
                 noise_rng: np.random.Generator | None = None) -> np.ndarray:
    """Global lighting, colour temperature, optional defocus and sensor noise; returns uint8 RGB.

    The sensor noise comes from ``noise_rng`` when given (a fresh one per video frame), else from ``rng``.
    ``rgb`` (float32) is used as scratch space: fresh frame-sized buffers cost page faults that add up
    to more than the arithmetic itself."""
    # Exposure and white balance act on linear values; the tone curve (gamma, contrast) is one 8-bit
    # table, which is much faster than per-pixel powers and is how camera pipelines do it anyway.
    warm = rng.uniform(-0.08, 0.08)
    exposure = rng.uniform(0.7, 1.25)
    cv2.multiply(rgb, ((1 + warm) * exposure, exposure, (1 - warm) * exposure, 0.0), dst=rgb)
    img = cv2.convertScaleAbs(cv2.max(rgb, 0.0, dst=rgb))  # rounds and saturates to uint8
    gamma, contrast = rng.uniform(0.75, 1.35), rng.uniform(0.75, 1.25)
    curve = ((np.arange(256) / 255.0) ** gamma - 0.5) * contrast + 0.5
    cv2.LUT(img, np.clip(curve * 255.0 + 0.5, 0, 255).astype(np.uint8), dst=img)
    if rng.random() < 0.25:
        cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2), dst=img)
    sigma = rng.uniform(1.0, 5.0)
    noise_rng = rng if noise_rng is None else noise_rng
    noisy = cv2.LUT(noise_rng.integers(0, 256, img.shape, dtype=np.uint8), _GAUSS_TABLE * np.float32(sigma),
                    dst=rgb)
    cv2.add(img, noisy, dst=noisy, dtype=cv2.CV_32F)
    return cv2.convertScaleAbs(cv2.max(noisy, 0.0, dst=noisy))


def drift_bend(rng: np.random.Generator, cam: Camera) -> Camera:
    """A drive's curvature wanders slowly with the distance travelled, starting from the sampled one."""
    amp2, amp3 = rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.1)
    wave2, wave3 = rng.uniform(120, 400), rng.uniform(80, 300)  # metres
    phase2, phase3 = rng.uniform(0, 2 * np.pi, 2)
    bend2 = cam.bend2 + amp2 * (np.sin(2 * np.pi * cam.travel / wave2 + phase2) - np.sin(phase2))
    bend3 = cam.bend3 + amp3 * (np.sin(2 * np.pi * cam.travel / wave3 + phase3) - np.sin(phase3))
    return replace(cam, bend2=float(np.clip(bend2, -0.5, 0.5)), bend3=float(np.clip(bend3, -0.3, 0.3)))


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random road scene; returns (RGB uint8 H x W x 3, Cityscapes label ids uint8 H x W)."""
    return render_world(rng, height, width)


def render_world(rng: np.random.Generator, height: int, width: int, travel: float = 0.0, reach: float = 0.0,
                 noise_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the world that ``rng``'s stream of random numbers describes, from ``travel`` metres along it.

    A world is its random stream: every choice is drawn in a fixed order, and no choice depends on
    ``travel``, so the same stream (a new generator from the same seed) drawn at growing ``travel``
    shows one world from a camera driving forward. ``reach`` (> 0 makes a drive) is how far the drive
    goes in all: the world is laid out that much farther, things out of view are skipped, and the
    curvature drifts. ``render_scene`` is the still case, travel = reach = 0."""
    road = sample_road(rng)
    sides = [sample_side(rng, -1, road), sample_side(rng, 1, road)]
    cam = replace(sample_camera(rng, height, width, road), travel=travel, reach=reach)
    if reach:
        cam = drift_bend(rng, cam)
    overcast = rng.random() < 0.3
    sun = Sun(dlat=rng.choice([-1, 1]) * rng.uniform(0.3, 1.6), dz=rng.uniform(-0.8, 0.8),
              strength=rng.uniform(0.05, 0.15) if overcast else rng.uniform(0.3, 0.6))
    canvas = Canvas(height, width)

    haze = draw_sky(canvas, rng, cam)
    terrain = draw_far_field(canvas, rng, cam, haze)
    draw_sides(canvas, rng, cam, road, sides, terrain)
    draw_road(canvas, rng, cam, road)
    draw_markings(canvas, rng, cam, road)

    sun_polys: list = []
    for side in sides:
        if side.backdrop == "buildings":
            draw_buildings(canvas, rng, cam, side, haze, sun, sun_polys)
        elif side.backdrop == "trees":
            draw_tree_line(canvas, rng, cam, side, haze)

    things = sample_roadside(rng, cam, sides) + sample_cars(rng, cam, road, sides)
    if reach:  # a drive: skip what is well behind the camera, or farther than a still scene reaches
        things = [thing for thing in things if -6.0 < thing.z - travel < cam.z0 * 30]
    contact_polys: list = []
    for thing in things:
        if thing.z - travel > cam.z0 * 12:  # farther shadows would be a pixel or two
            continue
        cast, contact = thing.shadow(cam, sun)
        sun_polys += cast
        contact_polys += contact
    stretch = cam.z0 * 7.0
    for lap in range(_laps(cam, stretch)):
        if rng.random() < 0.2:  # a shadow band across the street from something out of view
            za = lap * stretch + cam.z0 * rng.uniform(1.0, 8.0)
            zb = za + rng.uniform(3, 15)
            skew = rng.uniform(-3, 3)
            sun_polys.append(ground_polygon(cam, [(za, -40), (zb, -40), (zb + skew, 40), (za + skew, 40)], n=8))
    draw_shadows(canvas, sun_polys, contact_polys, sun, rng.uniform(0.55, 0.8), rng.uniform(0.6, 1.5))

    for thing in sorted(things, key=lambda item: -item.z):  # back to front
        thing.draw(canvas, cam)
    if rng.random() < 0.3:
        draw_ego_hood(canvas, rng)

    apply_texture(canvas, rng)
    return apply_camera(canvas.rgb, rng, noise_rng), canvas.label


# --------------------------------------------------------------------------------------------------
# Dataset writer and command line.
# --------------------------------------------------------------------------------------------------


def frame_paths(root: str | Path, split: str, idx: int) -> tuple[Path, Path]:
    return _cityscapes_paths(root, split, CITY, f"{CITY}_{idx:06d}_{SEQUENCE_FRAME}")


def drive_frame_paths(root: str | Path, idx: int) -> tuple[Path, Path]:
    # One Cityscapes sequence (000000) whose frame number is the video frame, so names sort in video order.
    return _cityscapes_paths(root, DRIVE_SPLIT, DRIVE_CITY, f"{DRIVE_CITY}_000000_{idx:06d}")


def _cityscapes_paths(root: str | Path, split: str, city: str, stem: str) -> tuple[Path, Path]:
    root = Path(root)
    return (root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")


def render_frame(seed: int, split: str, idx: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    # Seeding from (seed, split, index) alone makes every frame independent of how many are written.
    return render_scene(np.random.default_rng([seed, SPLIT_IDS[split], idx]), height, width)


def render_drive(seed: int, num_frames: int, height: int, width: int,
                 speed: float = DRIVE_SPEED) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``num_frames`` frames (RGB uint8 H x W x 3, Cityscapes label ids uint8 H x W) of one world seen
    from a camera driving ``speed`` metres per frame along the road.

    The world comes from ``seed`` and is laid out for the whole drive, so it depends on ``num_frames * speed``
    too: the same arguments give the same frames. Sensor noise is fresh in every frame."""
    if not (math.isfinite(speed) and speed >= 0):  # checked now, not at the first frame
        raise ValueError(f"speed must be a finite number >= 0, got {speed}")
    reach = speed * max(num_frames - 1, 0)
    return (render_world(np.random.default_rng([seed, DRIVE_STREAM]),  # the same stream each frame: one world
                         height, width, travel=idx * speed, reach=reach,
                         noise_rng=np.random.default_rng([seed, DRIVE_STREAM, idx]))
            for idx in range(num_frames))


def _encode_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a PNG")
    return buf.tobytes()


def check_args(num_train: int, num_val: int, height: int, width: int, seed: int) -> str | None:
    """Return a one-line complaint naming the offending option, or None when everything is valid."""
    if num_train < 1:
        return f"--num must be >= 1, got {num_train}"
    if num_val < 0:
        return f"--num-val must be >= 0, got {num_val}"
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        return f"--size H W must both be between {MIN_SIZE} and {MAX_SIZE}, got {height} {width}"
    if seed < 0:
        return f"--seed must be >= 0, got {seed}"
    return None


def write_dataset(out_dir: str | Path, num_train: int, num_val: int, height: int, width: int,
                  seed: int = 0) -> dict:
    """Render and atomically write all frames; returns the root, per-split counts and the written paths."""
    problem = check_args(num_train, num_val, height, width, seed)
    if problem:
        raise ValueError(problem)
    root = Path(out_dir)
    result = {"root": str(root), "counts": {}, "images": {}, "labels": {}}
    for split, count in (("train", num_train), ("val", num_val)):
        images, labels = [], []
        for idx in tqdm(range(count), desc=f"synth {split}", unit="frame"):
            rgb, label = render_frame(seed, split, idx, height, width)
            image_path, label_path = frame_paths(root, split, idx)
            atomic_write_bytes(image_path, _encode_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
            atomic_write_bytes(label_path, _encode_png(label))
            images.append(str(image_path))
            labels.append(str(label_path))
        result["counts"][split] = count
        result["images"][split] = images
        result["labels"][split] = labels
    return result


def check_drive_args(num_frames: int, height: int, width: int, seed: int, fps: float) -> str | None:
    """Like ``check_args``, for ``--drive``."""
    problem = check_args(num_frames, 0, height, width, seed)
    if problem:
        return problem
    if num_frames > MAX_DRIVE_FRAMES:
        return f"--num must be <= {MAX_DRIVE_FRAMES} with --drive, got {num_frames}"
    if height % 2 or width % 2:  # the MPEG-4 encoder would silently crop the video by a pixel
        return f"--size H W must both be even with --drive, got {height} {width}"
    if not (math.isfinite(fps) and fps > 0):
        return f"--fps must be > 0, got {fps}"
    return None


@contextmanager
def _atomic_video(path: Path, fps: float, height: int, width: int) -> Iterator[cv2.VideoWriter]:
    """An 'mp4v' cv2.VideoWriter on a temporary file next to ``path``, renamed to ``path`` when the block
    ends without error; on error the temporary file is removed and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the suffix: OpenCV picks the container from it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    writer = cv2.VideoWriter(tmp_name, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        if not writer.isOpened():
            raise RuntimeError(f"{path}: cv2.VideoWriter cannot write 'mp4v' video at {width}x{height} (WxH), "
                               f"{fps:g} fps; this OpenCV build ({cv2.__version__}) may lack an MPEG-4 encoder")
        yield writer
        writer.release()
        with open(tmp_name, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        writer.release()
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_drive(out: str | Path, num_frames: int, height: int, width: int, seed: int, fps: float = 15.0,
                speed: float = DRIVE_SPEED) -> dict:
    """Render a drive (``render_drive``) and write it as ``out/drive.mp4`` and, frame by frame with labels, in
    the Cityscapes layout as split ``val``, city ``drive`` (``drive_frame_paths``; name order = video order).

    Give it its own ``out``: next to a synthetic dataset, its frames would join that dataset's val split."""
    problem = check_drive_args(num_frames, height, width, seed, fps)
    if problem:
        raise ValueError(problem)
    root = Path(out)
    video = root / DRIVE_VIDEO
    images, labels = [], []
    with _atomic_video(video, fps, height, width) as writer:
        frames = render_drive(seed, num_frames, height, width, speed)
        for idx, (rgb, label) in enumerate(tqdm(frames, total=num_frames, desc="synth drive", unit="frame")):
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            image_path, label_path = drive_frame_paths(root, idx)
            atomic_write_bytes(image_path, _encode_png(bgr))
            atomic_write_bytes(label_path, _encode_png(label))
            writer.write(bgr)
            images.append(str(image_path))
            labels.append(str(label_path))
    return {"root": str(root), "video": str(video), "frames": num_frames, "size": [height, width], "fps": fps,
            "speed": speed, "seed": seed, "split": DRIVE_SPLIT, "city": DRIVE_CITY, "images": images,
            "labels": labels}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write synthetic road scenes in the Cityscapes layout (leftImg8bit + gtFine labelIds), "
                    "or with --drive one drive: a video and its frames with labels.")
    parser.add_argument("--out", required=True, help="dataset root to write into")
    parser.add_argument("--num", type=int, default=64,
                        help="number of train frames, or of video frames with --drive (default 64)")
    parser.add_argument("--num-val", type=int, default=None,
                        help="number of val frames (default max(1, num // 4))")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"),
                        help="frame height and width in pixels (default 256 512)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--drive", action="store_true",
                        help=f"write one drive instead: OUT/{DRIVE_VIDEO} and its frames with labels as "
                             f"OUT/{{leftImg8bit,gtFine}}/{DRIVE_SPLIT}/{DRIVE_CITY}/")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of the --drive video (default 15)")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.drive:
        return main_drive(args)
    if args.fps is not None:
        raise SystemExit("make_synthetic.py: error: --fps only applies with --drive")
    num_val = max(1, args.num // 4) if args.num_val is None else args.num_val
    height, width = args.size
    problem = check_args(args.num, num_val, height, width, args.seed)
    if problem:
        raise SystemExit(f"make_synthetic.py: error: {problem}")
    result = write_dataset(args.out, args.num, num_val, height, width, args.seed)
    counts = result["counts"]
    print(f"wrote {counts['train']} train + {counts['val']} val frames ({height}x{width}) "
          f"to {result['root']}")
    return 0


def main_drive(args: argparse.Namespace) -> int:
    if args.num_val is not None:
        raise SystemExit("make_synthetic.py: error: --num-val does not apply with --drive")
    fps = 15.0 if args.fps is None else args.fps
    height, width = args.size
    problem = check_drive_args(args.num, height, width, args.seed, fps)
    if problem:
        raise SystemExit(f"make_synthetic.py: error: {problem}")
    result = write_drive(args.out, args.num, height, width, args.seed, fps)
    print(f"wrote a {result['frames']}-frame drive ({height}x{width}, {fps:g} fps) to {result['video']} "
          f"and {Path(result['root']) / '{leftImg8bit,gtFine}' / DRIVE_SPLIT / DRIVE_CITY}")
    return 0


if __name__ == "__main__":
    main(get_args_parser().parse_args())
