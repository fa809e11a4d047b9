"""One frame from start to finish, and the random streams that make frames reproducible.

``render_world`` draws the world a generator's stream describes, seen from some distance along it;
``render_scene`` is a still scene; ``render_frame`` seeds a dataset frame from ``(seed, split, index)``
and ``render_drive`` renders one world from a camera moving forward along the road.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from roadseg.train.synthetic.backdrop import draw_buildings, draw_far_field, draw_sky, draw_tree_line
from roadseg.train.synthetic.camera import ground_polygon, laps
from roadseg.train.synthetic.canvas import Canvas
from roadseg.train.synthetic.effects import apply_camera, apply_texture, draw_shadows
from roadseg.train.synthetic.ground import draw_markings, draw_road, draw_sides
from roadseg.train.synthetic.scene import (
    drift_bend,
    sample_camera,
    sample_cars,
    sample_road,
    sample_roadside,
    sample_side,
)
from roadseg.train.synthetic.things import Sun, draw_ego_hood

SPLIT_IDS = {"train": 0, "val": 1}
# A drive is its own random stream next to the splits'.
DRIVE_STREAM = 2
DRIVE_SPEED = 0.8  # metres per frame: about 43 km/h at 15 fps


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
    for lap in range(laps(cam, stretch)):
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
