"""The flat ground near the road: roadside bands (parking, kerb, pavement, verge), the road surface
and its markings.

Everything here lies on the ground plane and is drawn, in this order, before anything upright.
Repeated features (parking bays, lane dashes) sit at fixed world depths and patches are scattered
once per stretch of road (``camera.laps``), so that a drive streams past the same ones frame after frame.
"""

from __future__ import annotations

import numpy as np

from roadseg.train.synthetic.camera import Camera, ground_polygon, ground_strip, laps
from roadseg.train.synthetic.canvas import GROUND, PARKING, ROAD, SIDEWALK, TERRAIN, Canvas, jitter, mix
from roadseg.train.synthetic.scene import Road, Side


def draw_sides(canvas: Canvas, rng: np.random.Generator, cam: Camera, road: Road, sides: list[Side],
               terrain: np.ndarray) -> None:
    z_a, z_b = cam.z_near, cam.z_far
    # Paving is sometimes nearly the road's colour so that colour alone cannot separate the two.
    if rng.random() < 0.35:
        walk_colour = road.colour * rng.uniform(0.95, 1.12) + rng.normal(0, 4, 3)
    else:
        walk_colour = jitter(rng, [(165, 165, 160), (185, 150, 135), (150, 140, 120), (120, 120, 125)]
                             [rng.integers(4)], 6)
    curb_colour = mix(walk_colour, (215, 215, 210), rng.uniform(0.1, 0.6))
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
            for lap in range(laps(cam, stretch) if side.verge > 0.8 else 0):
                for _ in range(int(rng.integers(0, 3))):
                    # Bare-earth patches in the grass: an ignored class next to terrain.
                    zc = lap * stretch + cam.z0 * rng.uniform(1.2, 8.0)
                    lat = s * (side.verge_at + rng.uniform(0, max(outer - side.verge_at - 0.5, 0.5)))
                    span, wide = rng.uniform(2, 8), rng.uniform(0.5, 2.5)
                    canvas.fill(ground_polygon(cam, [(zc, lat), (zc + span, lat), (zc + span, lat + s * wide),
                                                     (zc, lat + s * wide)]),
                                jitter(rng, (135, 115, 85), 6), GROUND)


def draw_road(canvas: Canvas, rng: np.random.Generator, cam: Camera, road: Road) -> None:
    r = road.half_width
    canvas.fill(ground_strip(cam, -r, r, cam.z_near, cam.z_far), road.colour, ROAD)
    # Repair patches and wet stains change the colour but not the class.
    stretch = cam.z0 * 5.0
    for lap in range(laps(cam, stretch)):
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
    white = mix(road.colour, (235, 235, 230), wear)
    yellow = mix(road.colour, (225, 185, 60), wear)
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
    for lap in range(laps(cam, stretch)):
        if rng.random() < 0.15:  # zebra crossing
            zc = lap * stretch + cam.z0 * rng.uniform(1.3, 5.0)
            bars = [ground_polygon(cam, [(zc, lat), (zc + 3.5, lat), (zc + 3.5, lat + 0.5), (zc, lat + 0.5)], n=2)
                    for lat in np.arange(-r + 0.4, r - 0.5, 1.0)]
            canvas.fill_disjoint(bars, white, ROAD)
