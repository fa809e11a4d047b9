"""Upright things on the ground: cars, trees, poles with lamps and signs, street furniture.

Each thing knows its depth (so the renderer can draw back to front), how to draw itself and the
shadows it casts under the ``Sun``. Where things stand is decided in ``scene``; the ego vehicle's
hood, drawn over everything last, lives here too because it shares the car paints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadseg.train.synthetic.camera import Camera, ground_polygon, side_rect, upright_rect
from roadseg.train.synthetic.canvas import (
    CAR,
    EGO_VEHICLE,
    POLE,
    STATIC,
    TRAFFIC_SIGN,
    VEGETATION,
    Canvas,
    jitter,
    mix,
)

CAR_PAINTS = [
    (225, 225, 225), (180, 182, 186), (40, 40, 44), (150, 20, 25), (30, 55, 120),
    (95, 98, 102), (200, 190, 160), (20, 80, 60), (230, 200, 40),
]


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


def draw_ego_hood(canvas: Canvas, rng: np.random.Generator) -> None:
    h, w = canvas.label.shape
    depth, bulge = rng.uniform(0.06, 0.15) * h, rng.uniform(0.2, 0.6)
    xs = np.linspace(-0.1 * w, 1.1 * w, 25)
    edge = h - depth + bulge * depth * ((xs - w / 2) / (0.6 * w)) ** 2
    paint = jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))], 5) * 0.7
    canvas.fill(np.concatenate([np.stack([xs, edge], 1), [[1.1 * w, h + 2], [-0.1 * w, h + 2]]]), paint,
                EGO_VEHICLE)
    # A reflection band keeps the hood from being a flat colour; it stays ego vehicle.
    band = np.concatenate([np.stack([xs, edge + 0.25 * depth], 1),
                           np.stack([xs[::-1], edge[::-1] + 0.45 * depth], 1)])
    canvas.fill(band, mix(paint, (200, 200, 200), 0.25), EGO_VEHICLE)
