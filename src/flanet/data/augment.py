"""Clip augmentation: one random transform drawn per clip and applied to every frame and target.

Geometry (horizontal flip, scale, translation, small rotation) is one affine matrix in output
coordinates, applied with ``cv2.warpAffine`` to every frame after its resize to the model size
(so boxes map through ``geometry @ resize``, see :func:`frame_matrix`); the photometric
part (brightness, contrast, gamma, speckle-like noise) runs vectorised on the whole clip
``(T, S, S, 3)``. Noise is drawn independently per frame (like real acquisition noise) with one
shared strength. Vertical flips are off by default: depth has a direction in ultrasound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random clip augmentation (all applied identically across a clip).

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        scale: zoom range (>1 zooms in).
        translate: maximum shift as a fraction of the image size.
        rotate: maximum rotation in degrees.
        brightness: maximum additive brightness change (image in [0, 1]).
        contrast: contrast factor range (about the clip mean).
        gamma: gamma range.
        noise_std: maximum std of additive Gaussian noise (image in [0, 1]).
        noise_p: probability of adding noise.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    scale: tuple[float, float] = (0.85, 1.2)
    translate: float = 0.08
    rotate: float = 10.0
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_std: float = 0.03
    noise_p: float = 0.5


@dataclass(frozen=True)
class ClipTransform:
    """One drawn augmentation: ``geometry`` maps S x S output pixel-edge coordinates to themselves."""

    geometry: np.ndarray  # (3, 3) affine in output space, pixel-edge coordinates
    brightness: float = 0.0
    contrast: float = 1.0
    gamma: float = 1.0
    noise_std: float = 0.0

    @property
    def is_identity(self) -> bool:
        """True when the transform changes nothing (evaluation)."""
        photometric = (self.brightness, self.contrast, self.gamma, self.noise_std) == (0.0, 1.0, 1.0, 0.0)
        return photometric and bool(np.allclose(self.geometry, np.eye(3)))


IDENTITY = ClipTransform(np.eye(3))


def sample_transform(rng: np.random.Generator, size: int, config: AugmentConfig) -> ClipTransform:
    """Draw one clip transform for an ``size x size`` output."""
    centre = size / 2.0
    flip_x = -1.0 if rng.random() < config.hflip else 1.0
    flip_y = -1.0 if rng.random() < config.vflip else 1.0
    zoom = rng.uniform(*config.scale)
    angle = math.radians(rng.uniform(-config.rotate, config.rotate))
    shift = rng.uniform(-config.translate, config.translate, size=2) * size
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    linear = np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip_x, flip_y])
    geometry = np.eye(3)
    geometry[:2, :2] = linear
    geometry[:2, 2] = centre + shift - linear @ np.array([centre, centre])
    noisy = rng.random() < config.noise_p
    return ClipTransform(
        geometry=geometry,
        brightness=float(rng.uniform(-config.brightness, config.brightness)),
        contrast=float(rng.uniform(*config.contrast)),
        gamma=float(math.exp(rng.uniform(math.log(config.gamma[0]), math.log(config.gamma[1])))),
        noise_std=float(rng.uniform(0.0, config.noise_std)) if noisy else 0.0,
    )


def frame_matrix(transform: ClipTransform, height: int, width: int, size: int) -> np.ndarray:
    """(3, 3) affine from an original ``height x width`` frame's pixel-edge coordinates to the output's."""
    resize = np.diag([size / width, size / height, 1.0])
    return transform.geometry @ resize


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply a pixel-edge affine ``matrix`` with bilinear sampling and a black border."""
    # OpenCV maps pixel centres (integer indices): index = edge - 0.5 on both sides.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    centred = (unshift @ matrix @ shift)[:2]
    return cv2.warpAffine(image, centred, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def transform_box(
    box: tuple[float, float, float, float], matrix: np.ndarray, size: int
) -> tuple[float, float, float, float] | None:
    """Axis-aligned envelope of a transformed box, clipped to the output; None when it leaves the image."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1.0], [x2, y1, 1.0], [x1, y2, 1.0], [x2, y2, 1.0]]) @ matrix[:2].T
    lo = np.clip(corners.min(axis=0), 0.0, size)
    hi = np.clip(corners.max(axis=0), 0.0, size)
    if hi[0] <= lo[0] or hi[1] <= lo[1]:
        return None
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def apply_photometric(clip: np.ndarray, transform: ClipTransform) -> np.ndarray:
    """Brightness, contrast (about the clip mean) and gamma on a uint8 clip ``(T, S, S, 3)``.

    The three are one monotone map of grey values, applied as a 256-entry lookup table.
    """
    mean = float(clip.mean()) / 255.0
    values = np.arange(256, dtype=np.float64) / 255.0
    values = np.clip((values - mean) * transform.contrast + mean + transform.brightness, 0.0, 1.0) ** transform.gamma
    table = np.round(values * 255.0).astype(np.uint8)
    flat = clip.reshape(-1, clip.shape[-2], clip.shape[-1])
    return cv2.LUT(flat, table).reshape(clip.shape)


def add_noise(clip: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add grey Gaussian noise of ``std`` (image in [0, 1]) to a uint8 clip ``(T, S, S, 3)``, saturating.

    The noise is the same on the three channels and fresh per frame. It is drawn by OpenCV
    (``cv2.randn``, 4x faster than numpy here) after seeding OpenCV's RNG from ``rng``.
    """
    if std <= 0:
        return clip
    frames, height, width, channels = clip.shape
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    noise = np.empty((frames * height, width), np.int16)
    cv2.randn(noise, 0.0, std * 255.0)
    noisy = cv2.add(clip.reshape(frames * height, width, channels), cv2.merge([noise] * channels), dtype=cv2.CV_8U)
    return noisy.reshape(clip.shape)
