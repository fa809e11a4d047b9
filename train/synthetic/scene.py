"""What a scene holds: the road's cross-section, what lines each side, the camera, traffic and props.

Owns the random choices that are not drawn immediately: ``sample_road``, ``sample_side``,
``sample_camera`` (and ``drift_bend``, a drive's slowly wandering curvature), ``sample_cars`` and
``sample_roadside``. Each draws from the generator in a fixed order, which is what keeps a seed's
frames byte-identical; reorder nothing here without expecting every synthetic image to change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from roadseg.train.synthetic.camera import Camera, laps
from roadseg.train.synthetic.canvas import jitter
from roadseg.train.synthetic.things import CAR_PAINTS, Box, Car, Pole, Tree

_BOXES = [(40, 90, 50), (90, 90, 95), (150, 120, 60), (60, 60, 65)]


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


def drift_bend(rng: np.random.Generator, cam: Camera) -> Camera:
    """A drive's curvature wanders slowly with the distance travelled, starting from the sampled one."""
    amp2, amp3 = rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.1)
    wave2, wave3 = rng.uniform(120, 400), rng.uniform(80, 300)  # metres
    phase2, phase3 = rng.uniform(0, 2 * np.pi, 2)
    bend2 = cam.bend2 + amp2 * (np.sin(2 * np.pi * cam.travel / wave2 + phase2) - np.sin(phase2))
    bend3 = cam.bend3 + amp3 * (np.sin(2 * np.pi * cam.travel / wave3 + phase3) - np.sin(phase3))
    return replace(cam, bend2=float(np.clip(bend2, -0.5, 0.5)), bend3=float(np.clip(bend3, -0.3, 0.3)))


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
    for lap in range(laps(cam, stretch)):
        for _ in range(int(rng.integers(0, 5))):  # moving traffic in the lanes
            lane = rng.integers(road.lanes)
            lat = -road.lanes * road.lane_width / 2 + (lane + 0.5) * road.lane_width + rng.normal(0, 0.25)
            slots.append((lat, lap * stretch + cam.z0 / rng.uniform(0.07, 0.85), paces[lane]))
    stretch = cam.z0 * 18.75
    for side in sides:  # parked cars in parking bays
        if side.parking:
            for lap in range(laps(cam, stretch)):
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
        paint = jitter(rng, CAR_PAINTS[rng.integers(len(CAR_PAINTS))], 5)
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
                    sign = jitter(rng, [(20, 70, 170), (200, 30, 30), (240, 200, 30)][rng.integers(3)], 5)
                arm = -s * rng.uniform(0.8, 2.0) if rng.random() < 0.5 else 0.0
                things.append(Pole(z, lat, rng.uniform(4.5, 9.0), rng.uniform(0.12, 0.25), arm, sign))
        tree_room = side.walk > 2.5 or side.verge > 2.0
        if tree_room and rng.random() < 0.55:
            lat = s * (side.verge_at + side.verge / 2 if side.verge > 2.0 else side.verge_at - 0.8)
            leaves = jitter(rng, (55, 90, 40), 8)
            spacing = rng.uniform(8, 20)
            for z in np.arange(cam.near + rng.uniform(0, spacing), z_max, spacing):
                k = int(rng.integers(3, 7))
                blobs = np.column_stack([rng.normal(0, 0.35, k), rng.normal(0, 0.3, k),
                                         rng.uniform(0.55, 0.95, k), rng.uniform(0.75, 1.2, k)])
                things.append(Tree(z + rng.normal(0, 1), lat, rng.uniform(1.8, 3.5), rng.uniform(1.5, 3.2),
                                   leaves, blobs))
        stretch = cam.z0 * 9.0
        for lap in range(laps(cam, stretch) if side.walk else 0):
            if rng.random() >= 0.45:
                continue
            for _ in range(int(rng.integers(1, 4))):
                lat = s * rng.uniform(side.walk_at + side.curb + 0.5, max(side.verge_at - 0.5,
                                                                         side.walk_at + side.curb + 0.6))
                colour = jitter(rng, _BOXES[rng.integers(len(_BOXES))], 6)
                things.append(Box(lap * stretch + cam.z0 * rng.uniform(1.0, 10.0), lat, rng.uniform(0.4, 1.2),
                                  rng.uniform(0.6, 1.3), colour))
    return things
