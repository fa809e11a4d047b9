"""What stands behind the road: the sky, the far field with its hazy skyline, and along the outer edge
of each side a row of facades with windows or a tree line.

Distant things take on the horizon colour (haze) that ``draw_sky`` returns. In a drive, facades and
crowns begin just ahead of the camera so that what passes leaves through the side of the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadseg.train.synthetic.camera import Camera, ground_polygon, upright_rect
from roadseg.train.synthetic.canvas import BUILDING, GROUND, SKY, TERRAIN, VEGETATION, Canvas, jitter, mix
from roadseg.train.synthetic.scene import Side
from roadseg.train.synthetic.things import Sun

_FACADES = [(190, 175, 150), (150, 150, 150), (160, 90, 70), (215, 210, 200), (120, 100, 85), (95, 95, 100)]


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
    top, low = jitter(rng, top, 6), jitter(rng, low, 6)
    rows = np.clip(np.arange(cam.height) / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    column = (top * (1 - rows) + low * rows).astype(np.float32)
    canvas.rgb = cv2.resize(column, (cam.width, cam.height), interpolation=cv2.INTER_NEAREST)
    canvas.label[:] = SKY
    return np.clip(low, 0, 255)


def draw_far_field(canvas: Canvas, rng: np.random.Generator, cam: Camera, haze: np.ndarray) -> np.ndarray:
    """Ground to the horizon and a hazy distant skyline or tree line; returns the terrain colour."""
    h, w = cam.height, cam.width
    dirt = rng.random() < 0.12
    colour = jitter(rng, (140, 120, 90) if dirt else (95, 125, 60), 8)
    canvas.fill(np.array([[-2, cam.horizon], [w + 2, cam.horizon], [w + 2, h + 2], [-2, h + 2]]),
                mix(colour, haze, 0.3), GROUND if dirt else TERRAIN)
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
        canvas.fill(np.asarray(pts, float), mix(jitter(rng, base, 6), haze, 0.55),
                    BUILDING if city else VEGETATION)
    return colour


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
        colour = mix(jitter(rng, _FACADES[rng.integers(len(_FACADES))], 6), haze, min(0.7, za / 250))
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
    glass = mix(facade, rng.choice([(35, 45, 60), (150, 170, 190), (60, 55, 50)]), rng.uniform(0.6, 0.9))
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
    leaves = mix(jitter(rng, (50, 80, 40), 8), haze, 0.15)
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
