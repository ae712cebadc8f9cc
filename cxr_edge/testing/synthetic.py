"""Synthetic radiograph-like pictures for tests, sample data and tiny test models.

The project may not ship or commit any image of the real dataset, so everything that needs
a chest-X-ray-shaped picture without a patient (tests, ``sample_data/``, the tiny models
in ``tests/assets/``) draws one here: dark lung fields, a bright mediastinum, spine and
heart, curved ribs, soft noise, and optionally bright blurred "lesion" blobs inside the
lung fields. Nothing here is medical; it only looks the part.

Every random choice comes from one generator seeded by ``seed`` and is drawn in a fixed
order whether or not lesions are asked for, so ``synthetic_xray(s, lesion=True)`` differs
from ``synthetic_xray(s)`` only by the blobs: a heatmap test can check that explanations
point at :func:`lesion_locations`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageFilter

MAX_LESIONS = 3
_RIBS = 9


@dataclasses.dataclass(frozen=True)
class Lesion:
    """A lesion blob in pixel coordinates of the generated image."""

    x: float
    y: float
    radius: float  # the blob's Gaussian sigma is radius / 2

    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the blob's visible extent."""
        r = self.radius
        return (int(self.x - r), int(self.y - r), int(np.ceil(self.x + r)), int(np.ceil(self.y + r)))


@dataclasses.dataclass(frozen=True)
class _Anatomy:
    """Per-seed shape parameters, in coordinates normalised to 0..1."""

    lung_x: float
    lung_y: float
    lung_w: float
    lung_h: float
    heart_w: float
    exposure: float
    contrast: float
    rib_phase: float
    noise_seed: int
    lesions: tuple[tuple[int, float, float, float, float], ...]  # (side, ru, rv, radius, strength)


def _draw_anatomy(seed: int) -> _Anatomy:
    rng = np.random.default_rng(seed)
    anatomy = dict(
        lung_x=rng.uniform(0.20, 0.24),
        lung_y=rng.uniform(0.44, 0.50),
        lung_w=rng.uniform(0.13, 0.16),
        lung_h=rng.uniform(0.28, 0.33),
        heart_w=rng.uniform(0.16, 0.20),
        exposure=rng.uniform(-18, 18),
        contrast=rng.uniform(0.85, 1.15),
        rib_phase=rng.uniform(0, 1),
        noise_seed=int(rng.integers(2**31)),
    )
    lesions = tuple(
        (
            int(rng.integers(2)),  # left or right lung
            rng.uniform(-0.45, 0.45),  # position inside the lung, as a fraction of its half-axes
            rng.uniform(-0.45, 0.45),
            rng.uniform(0.06, 0.09),  # radius, fraction of the image width
            rng.uniform(70, 95),  # brightness added at the centre
        )
        for _ in range(MAX_LESIONS)
    )
    return _Anatomy(**anatomy, lesions=lesions)


def _soft_ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float, edge: float = 0.08):
    """1 inside the ellipse, 0 outside, with a soft edge (fraction of the radius)."""
    d = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2)
    return 1.0 / (1.0 + np.exp((d - 1.0) / edge))


def _lesion_geometry(a: _Anatomy, count: int, width: int, height: int) -> list[tuple[Lesion, float]]:
    out = []
    for side, ru, rv, radius, strength in a.lesions[:count]:
        cu = a.lung_x if side == 0 else 1.0 - a.lung_x
        cv = a.lung_y + rv * a.lung_h
        out.append((Lesion(x=(cu + ru * a.lung_w) * width, y=cv * height, radius=radius * width), strength))
    return out


def _render(a: _Anatomy, width: int, height: int, count: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (u + 0.5) / width
    v = (v + 0.5) / height
    body = _soft_ellipse(u, v, 0.5, 0.55, 0.47, 0.62, edge=0.03)
    lungs = _soft_ellipse(u, v, a.lung_x, a.lung_y, a.lung_w, a.lung_h) + _soft_ellipse(
        u, v, 1.0 - a.lung_x, a.lung_y, a.lung_w, a.lung_h
    )
    mediastinum = _soft_ellipse(u, v, 0.5, 0.45, 0.07, 0.45, edge=0.15)
    heart = _soft_ellipse(u, v, 0.55, 0.64, a.heart_w, 0.15, edge=0.2)
    spine = np.exp(-(((u - 0.5) / 0.03) ** 2)) / (1.0 + np.exp(-(v - 0.06) / 0.02))
    abdomen = 1.0 / (1.0 + np.exp(-(v - (a.lung_y + a.lung_h * 0.95)) / 0.02))
    rib_v = v - 0.10 * ((u - 0.5) / 0.4) ** 2  # ribs curve down towards the sides
    ribs = np.exp(-(np.sin(np.pi * (rib_v * _RIBS + a.rib_phase)) ** 2) / 0.04)
    ribs *= np.clip(lungs * 1.2, 0, 1) * (np.abs(u - 0.5) > 0.06)

    img = 25 + 85 * body  # air outside, soft tissue inside
    img -= 55 * np.clip(lungs, 0, 1) * (1 - abdomen)
    img += 60 * np.maximum(mediastinum, heart) + 55 * spine + 40 * abdomen * body + 30 * ribs
    for lesion, strength in _lesion_geometry(a, count, width, height):
        sigma = lesion.radius / 2
        img += strength * np.exp(-((u * width - lesion.x) ** 2 + (v * height - lesion.y) ** 2) / (2 * sigma**2))
    img = (img - 100) * a.contrast + 100 + a.exposure
    noise = np.random.default_rng(a.noise_seed).normal(0, 5, size=img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _count(lesion: bool, n_lesions: int) -> int:
    if not lesion:
        return 0
    if not 1 <= n_lesions <= MAX_LESIONS:
        raise ValueError(f"n_lesions must be 1..{MAX_LESIONS}, not {n_lesions}")
    return n_lesions


def synthetic_xray(
    seed: int, size: tuple[int, int] = (224, 224), lesion: bool = False, n_lesions: int = 1
) -> Image.Image:
    """A deterministic radiograph-like grayscale picture (mode ``L``) of ``size`` = (w, h).

    With ``lesion`` it carries ``n_lesions`` bright blurred blobs in the lung fields, at
    :func:`lesion_locations` ``(seed, size, n_lesions)``; the rest of the picture is the
    same as without.
    """
    width, height = size
    pixels = _render(_draw_anatomy(seed), width, height, _count(lesion, n_lesions))
    # A light blur gives the soft, film-like texture and smooths the noise.
    return Image.fromarray(pixels, mode="L").filter(ImageFilter.GaussianBlur(radius=max(width, height) / 400))


def lesion_locations(seed: int, size: tuple[int, int] = (224, 224), n_lesions: int = 1) -> list[Lesion]:
    """Where :func:`synthetic_xray` ``(seed, size, lesion=True, n_lesions)`` puts its blobs."""
    width, height = size
    return [lesion for lesion, _ in _lesion_geometry(_draw_anatomy(seed), _count(True, n_lesions), width, height)]
