"""Localisation targets: the Gaussian heatmap at the lesion's bbox centre (paper Section 3.2).

The heatmap is computed at the training resolution, after resizing and augmentation, as
``exp(-d^2 / (2 sigma^2))`` with ``d`` the distance from a pixel centre to the bbox centre
(std 5 px by default, as in the paper; the authors' code uses 10). Its peak is 1 when the centre
falls on a pixel centre. A frame without a lesion gets an all-zero heatmap.
"""

from __future__ import annotations

import numpy as np

from flanet.data.videoset import BBox


def gaussian_heatmap(center: tuple[float, float] | None, height: int, width: int, sigma: float = 5.0) -> np.ndarray:
    """Unnormalised Gaussian ``(H, W)`` float32 with its peak at ``center = (cx, cy)``.

    Coordinates are pixel-edge coordinates (pixel ``i`` spans ``[i, i+1)``, its centre is ``i + 0.5``).
    Returns zeros when ``center`` is None (no lesion).
    """
    if center is None:
        return np.zeros((height, width), np.float32)
    if sigma <= 0:
        raise ValueError(f"heatmap sigma must be positive, got {sigma}")
    cx, cy = center
    scale = -0.5 / (sigma * sigma)
    gx = np.exp(scale * (np.arange(width, dtype=np.float32) + 0.5 - cx) ** 2)
    gy = np.exp(scale * (np.arange(height, dtype=np.float32) + 0.5 - cy) ** 2)
    return np.outer(gy, gx).astype(np.float32, copy=False)


def bbox_center(box: BBox) -> tuple[float, float]:
    """Centre ``(cx, cy)`` of an ``(x1, y1, x2, y2)`` box."""
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
