"""Camera geometry: a pinhole camera over flat ground, with the road's centreline bent in image space.

Owns ``Camera`` (world metres -> image pixels, still or driving) and the helpers that turn ground
strips, ground polygons and upright rectangles into image polygons. Nothing here draws or samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def laps(cam: Camera, span: float) -> int:
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
