"""A small B-mode ultrasound simulator for synthetic breast-lesion videos.

Model (per video): a tissue echogenicity map in world coordinates (skin, subcutaneous fat
with Cooper's ligaments, fibroglandular tissue, muscle with fibrillar striations), a 3-D-ish
hypo-echoic lesion (irregular star-shaped boundary whose cross-section grows and shrinks as
the probe moves in elevation), posterior acoustic enhancement (benign) or shadowing
(malignant), and a fixed field of complex Gaussian scatterers. Per frame: the probe window
slides smoothly over the world, the scatterer field partly decorrelates with elevational
motion, the scattering amplitude ``sqrt(echo) * n`` is filtered by an anisotropic Gaussian
point-spread function (axial/lateral correlation; wider away from the focus), the Rayleigh
envelope ``|.|`` is attenuated with depth and imperfectly compensated by TGC, and log-compressed
to 8 bits (50 dB dynamic range). Some frames are "hard": heavy motion blur, an almost
iso-echoic lesion (low contrast) or a dropout band from lost probe contact, in which the
lesion is hard to find from that frame alone but easy from the frames around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HARD_KINDS: tuple[str, ...] = ("blur", "low_contrast", "dropout")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _smooth_path(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """Smooth random trajectory: two random sinusoids, ``(frames,)``."""
    t = np.linspace(0.0, 1.0, frames)
    path = np.zeros(frames)
    for freq in (rng.uniform(0.3, 0.8), rng.uniform(0.9, 1.8)):
        path += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return amplitude * path / (np.abs(path).max() + 1e-6)


@dataclass
class VideoPlan:
    """Random choices for one synthetic video."""

    malignant: bool
    aln: bool
    tissue: np.ndarray  # (Hw, Ww) echogenicity in world coordinates
    scatter_a: np.ndarray  # (Hw, Ww) complex64 scatterers
    scatter_b: np.ndarray
    lesion_xy: tuple[float, float]  # world coordinates
    radii: tuple[float, float]  # lateral, axial semi-axes in pixels
    harmonics: np.ndarray  # (K, 3): order, amplitude, phase
    lesion_echo: float
    posterior: float  # >1 enhancement, <1 shadowing
    probe_x: np.ndarray  # (F,) int window offsets
    probe_y: np.ndarray
    elevation: np.ndarray  # (F,) in units of the lesion's elevational radius
    hard: list[str]  # per frame: "" or one of HARD_KINDS
    focus: float  # focal depth as a fraction of the image height
    attenuation: float


def _tissue_map(rng: np.random.Generator, height: int, width: int, size: int) -> np.ndarray:
    """Layered breast echogenicity (world): skin, fat, fibroglandular tissue, muscle."""
    y = np.arange(height, dtype=np.float32)[:, None] / size
    x = np.arange(width, dtype=np.float32)[None, :] / size

    def boundary(base: float, amp: float) -> np.ndarray:
        wave = amp * np.sin(2 * np.pi * x * rng.uniform(0.4, 1.2) + rng.uniform(0, 6.3))
        return base + wave + 0.02 * _smooth_noise(rng, (1, width), size / 8)

    skin, fat, gland, muscle = boundary(0.05, 0.005), boundary(rng.uniform(0.18, 0.26), 0.03), \
        boundary(rng.uniform(0.68, 0.76), 0.04), boundary(rng.uniform(0.8, 0.86), 0.02)
    echo = np.where(y < skin, 1.5, np.where(y < fat, 0.12, np.where(y < gland, 1.0, np.where(y < muscle, 0.1, 0.2))))
    echo = echo.astype(np.float32)
    texture = np.exp(0.6 * _smooth_noise(rng, (height, width), size / 40))
    fibres = y * rng.uniform(25, 35) + 0.3 * _smooth_noise(rng, (1, width), size / 5)
    striation = 1.0 + 0.9 * np.sin(2 * np.pi * fibres)
    echo *= np.where(y > muscle, striation, texture).astype(np.float32)
    skin_line = np.exp(-(((y - skin) * size / 1.2) ** 2))
    echo += (2.5 * skin_line).astype(np.float32)
    ligaments = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        xs = np.linspace(rng.uniform(-0.2, 1.2) * width, rng.uniform(-0.2, 1.2) * width, 6)
        ys = np.linspace(0.06 * size, rng.uniform(0.2, 0.3) * size, 6) + rng.normal(0, 0.02 * size, 6)
        cv2.polylines(ligaments, [np.stack([xs, ys], 1).astype(np.int32)], False, 1.0, max(1, size // 150))
    echo += 1.5 * cv2.GaussianBlur(ligaments, (0, 0), 0.6) * (y < fat)
    return echo


def plan_video(rng: np.random.Generator, frames: int, size: int) -> VideoPlan:
    """Draw the anatomy, lesion, motion and hard frames of one video."""
    height, width = int(size * 1.1), int(size * 1.7)
    malignant = bool(rng.random() < 0.4)
    aln = bool(rng.random() < (0.5 if malignant else 0.1))
    tissue = _tissue_map(rng, height, width, size)
    parts = rng.standard_normal((2, height, width, 2), dtype=np.float32) * np.float32(0.7071)
    scatter = parts.view(np.complex64)[..., 0]  # (2, Hw, Ww) unit-variance circular complex Gaussian
    radius = rng.uniform(0.11, 0.17) * size
    aspect = rng.uniform(1.2, 1.5) if malignant else rng.uniform(0.5, 0.75)  # axial / lateral: taller / wider than tall
    orders = np.arange(2, 15 if malignant else 6)
    amps = rng.uniform(0, 1, orders.size) * (0.25 if malignant else 0.08) / np.sqrt(orders)
    offset = rng.uniform(-0.6, 0.6) if rng.random() < 0.3 else 0.0  # some videos sweep off the lesion
    elevation = _smooth_path(rng, frames, rng.uniform(0.3, 0.6)) + offset
    hard = [""] * frames
    for index in range(2, frames):
        if not hard[index - 1] and rng.random() < 0.25:
            hard[index] = str(rng.choice(HARD_KINDS))
    return VideoPlan(
        malignant=malignant,
        aln=aln,
        tissue=tissue,
        scatter_a=scatter[0],
        scatter_b=scatter[1],
        lesion_xy=(width / 2 + rng.uniform(-0.05, 0.05) * size, rng.uniform(0.42, 0.52) * size),
        radii=(radius, radius * aspect),
        harmonics=np.stack([orders, amps, rng.uniform(0, 2 * np.pi, orders.size)], 1),
        lesion_echo=float(rng.uniform(0.006, 0.03)),
        posterior=float(rng.uniform(0.08, 0.2) if malignant else rng.uniform(2.0, 3.5)),
        probe_x=np.round((width - size) / 2 + _smooth_path(rng, frames, 0.2 * size)).astype(int),
        probe_y=np.round(0.04 * size + _smooth_path(rng, frames, 0.03 * size)).astype(int),
        elevation=elevation,
        hard=hard,
        focus=float(rng.uniform(0.4, 0.6)),
        attenuation=float(rng.uniform(0.3, 0.7)),
    )


def _lesion_mask(plan: VideoPlan, index: int, size: int) -> np.ndarray:
    """Soft lesion occupancy in [0, 1] of frame ``index`` in view coordinates ``(S, S)``."""
    scale = np.sqrt(max(0.0, 1.0 - plan.elevation[index] ** 2))
    if scale < 0.15:
        return np.zeros((size, size), np.float32)
    cx = plan.lesion_xy[0] - plan.probe_x[index]
    cy = plan.lesion_xy[1] - plan.probe_y[index]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = (x - cx) / plan.radii[0], (y - cy) / plan.radii[1]
    rho, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    drift = 0.4 * plan.elevation[index]
    order, amplitude, phase = (plan.harmonics[:, k, None, None] for k in range(3))
    boundary = 1.0 + np.sum(amplitude * np.cos(order * theta + phase + drift), axis=0)
    edge = 1.0 / max(plan.radii[0], 1.0)
    return np.clip((scale * boundary - rho) / edge + 0.5, 0.0, 1.0).astype(np.float32)


def render_frame(plan: VideoPlan, index: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render frame ``index``: uint8 grayscale image ``(S, S)`` and bool lesion mask ``(S, S)``."""
    hard = plan.hard[index]
    x0, y0 = plan.probe_x[index], plan.probe_y[index]
    echo = plan.tissue[y0:y0 + size, x0:x0 + size].copy()
    lesion = _lesion_mask(plan, index, size)
    contrast = {"low_contrast": rng.uniform(0.75, 0.9), "blur": rng.uniform(0.55, 0.75)}.get(hard, plan.lesion_echo)
    posterior_gain = plan.posterior if hard != "low_contrast" else 1.0
    covered = np.maximum.accumulate(lesion, axis=0)  # lesion at or above each pixel
    column = cv2.GaussianBlur(lesion.max(axis=0, keepdims=True), (0, 0), size / 60)
    depth_below = np.cumsum(covered > 0.5, axis=0).astype(np.float32) - np.cumsum(lesion > 0.5, axis=0)
    decay = np.exp(-depth_below / (0.3 * size)) if posterior_gain > 1 else np.ones_like(depth_below)
    posterior = 1.0 + (posterior_gain - 1.0) * column * (covered - lesion).clip(0, 1) * decay
    lesion_texture = 1.0 + 0.5 * (plan.tissue[y0:y0 + size, x0:x0 + size] > 1.4)
    echo = echo * (1.0 - lesion + lesion * contrast * lesion_texture) * posterior
    if plan.malignant and hard != "low_contrast":  # echogenic halo around an infiltrating margin
        echo *= 1.0 + 1.2 * np.clip(cv2.GaussianBlur(lesion, (0, 0), size / 80) - lesion, 0, 1)
    phase = 1.2 * plan.elevation[index]
    scatter = np.cos(phase) * plan.scatter_a + np.sin(phase) * plan.scatter_b
    field = np.sqrt(echo) * scatter[y0:y0 + size, x0:x0 + size]
    pair = np.ascontiguousarray(np.stack([field.real, field.imag], axis=-1))
    sigma_lat, sigma_ax = max(1.1, size / 170), max(0.6, size / 400)
    sharp = cv2.GaussianBlur(pair, (0, 0), sigma_lat, sigmaY=sigma_ax) * np.sqrt(4 * np.pi * sigma_lat * sigma_ax)
    wide = cv2.GaussianBlur(pair, (0, 0), 2 * sigma_lat, sigmaY=sigma_ax) * np.sqrt(8 * np.pi * sigma_lat * sigma_ax)
    depth = (np.arange(size, dtype=np.float32)[:, None] + 0.5) / size
    defocus = np.clip(np.abs(depth - plan.focus) * 2.0, 0, 1)[..., None]
    envelope = np.hypot(*np.moveaxis(sharp * (1 - defocus) + wide * defocus, -1, 0))
    envelope *= np.exp(-plan.attenuation * depth) * (1.0 + 0.25 * np.exp(-((depth - plan.focus) / 0.15) ** 2))
    if hard == "blur":
        envelope = cv2.GaussianBlur(envelope, (0, 0), size / 30, sigmaY=size / 70)
    if hard == "dropout":
        centre = plan.lesion_xy[0] - x0 + rng.uniform(-0.1, 0.1) * size
        half = rng.uniform(0.12, 0.2) * size
        xs = np.arange(size, dtype=np.float32)[None, :]
        band = np.clip((np.abs(xs - centre) - half) / (0.04 * size), 0, 1)
        envelope *= 0.015 + 0.985 * band
    in_phase, quadrature = (rng.standard_normal((size, size), np.float32) for _ in range(2))
    noise_floor = 0.02 * np.hypot(in_phase, quadrature)  # electronic noise, Rayleigh too
    db = 20 * np.log10(envelope + noise_floor + 1e-4)
    image = np.clip((db + 32.0) / 42.0, 0, 1) ** 1.3 * 255
    return image.astype(np.uint8), lesion > 0.5
