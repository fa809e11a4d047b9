"""Image-space passes over a drawn canvas: soft shadows on the ground, per-class surface texture, and
the camera's response (exposure, white balance, tone curve, defocus, sensor noise) down to uint8 RGB.

None of these passes touch the labels: a shadowed or noisy road is still road.
"""

from __future__ import annotations

from statistics import NormalDist

import cv2
import numpy as np

from roadseg.train.synthetic.canvas import (
    BUILDING,
    CAR,
    EGO_VEHICLE,
    GROUND,
    PARKING,
    POLE,
    ROAD,
    SHIFT,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    Canvas,
    to_fixed,
)
from roadseg.train.synthetic.things import Sun

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
            cv2.fillPoly(mask, [to_fixed(poly)], 1.0, cv2.LINE_8, SHIFT)
        cv2.GaussianBlur(mask, (0, 0), soft, dst=mask)
        light *= 1.0 - strength * mask
    # light = 1 - ground * (1 - light): walls, sky and the far skyline keep their brightness.
    np.subtract(1.0, light, out=light)
    light *= cv2.LUT(canvas.label, _GROUND_LUT)
    np.subtract(1.0, light, out=light)
    cv2.multiply(canvas.rgb, _three(light), dst=canvas.rgb)


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
