"""Clinical geometry of a prediction: the imaging region the model sees, and lesion size in millimetres.

A DICOM ultrasound frame holds the scanner's text, rulers and ECG trace around the image. With
an imaging region (``SequenceOfUltrasoundRegions``, see :mod:`flanet.data.dicom`) the model sees
only the region; its probability map is pasted back into a full-frame map of zeros, so masks,
overlay and CSV stay in full-frame pixel coordinates. With a calibration (mm per pixel) the CSV
gets the lesion area in mm^2, its largest diameter in mm (largest Feret diameter of a connected
lesion, over the pixel squares) and its centroid in mm from the centre of the region's top-left
pixel; without one, the same columns are in pixels and end in ``_px`` / ``_px2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from flanet.data.dicom import Region
from flanet.inference.core.segmenter import FrameResult
from flanet.inference.runs.outputs import lesion_extent
from flanet.inference.runs.sources import VideoSource

__all__ = ["FrameGeometry", "MeasurementLog", "feret_diameter", "source_geometry"]

_CORNERS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float64)  # (4, 2) pixel square


def feret_diameter(mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Largest Feret diameter of any connected lesion of ``mask``, in the units of ``spacing``.

    Measured over the pixel squares (a single pixel is ``sqrt(dx^2 + dy^2)``, a ``w x h`` rectangle
    ``sqrt((w dx)^2 + (h dy)^2)``): the convex hull of the corners of each lesion's boundary pixels,
    then the largest distance between two hull vertices. 0 for an empty mask.

    Args:
        mask: (H, W) bool.
        spacing: ``(x, y)`` size of a pixel.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.asarray(spacing, np.float64)
    best = 0.0
    for contour in contours:  # one per connected lesion
        corners = (contour.reshape(-1, 1, 2).astype(np.float64) + _CORNERS).reshape(-1, 2)
        hull = cv2.convexHull(corners.astype(np.float32)).reshape(-1, 2).astype(np.float64) * scale
        distances = np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(axis=2))
        best = max(best, float(distances.max()))
    return best


@dataclass(frozen=True)
class FrameGeometry:
    """Where the model looks inside a frame, and how big a pixel is.

    Attributes:
        region: the imaging region the model sees (None: the whole frame).
        spacing_mm: ``(x, y)`` millimetres per pixel, or None (measurements in pixels).
    """

    region: Region | None = None
    spacing_mm: tuple[float, float] | None = None

    @property
    def unit(self) -> str:
        """``"mm"`` with a calibration, else ``"px"``."""
        return "px" if self.spacing_mm is None else "mm"

    @property
    def columns(self) -> list[str]:
        """Names of the measurement columns of the per-frame CSV."""
        unit = self.unit
        return [f"area_{unit}2", f"max_diameter_{unit}", f"centroid_x_{unit}", f"centroid_y_{unit}"]

    def model_frames(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The part of each frame the model sees."""
        region = self.region
        if region is None:
            yield from frames
            return
        for frame in frames:
            yield np.ascontiguousarray(frame[region.y0 : region.y1 + 1, region.x0 : region.x1 + 1])

    def full_frame(self, result: FrameResult, height: int, width: int) -> FrameResult:
        """Paste a prediction made on the region back into a full ``height x width`` frame (zeros outside)."""
        region = self.region
        if region is None:
            return result
        window = (slice(region.y0, region.y1 + 1), slice(region.x0, region.x1 + 1))
        probability = np.zeros((height, width), np.float32)
        probability[window] = result.probability
        heatmap = None
        if result.heatmap_full is not None:
            heatmap = np.zeros((height, width), np.float32)
            heatmap[window] = result.heatmap_full
        return replace(result, probability=probability, heatmap_full=heatmap)

    def measure(self, mask: np.ndarray) -> dict[str, float]:
        """Area, largest diameter and centroid of a full-frame mask, in mm (or pixels); NaN without lesion."""
        dx, dy = self.spacing_mm or (1.0, 1.0)
        x0, y0 = (self.region.x0, self.region.y0) if self.region is not None else (0, 0)
        area, _, (x, y) = lesion_extent(mask)
        centroid = ((x - x0) * dx, (y - y0) * dy) if area else (math.nan, math.nan)
        values = (area * dx * dy, feret_diameter(mask, (dx, dy)) if area else math.nan, *centroid)
        return dict(zip(self.columns, values))

    def summary(self) -> dict[str, object]:
        """The geometry for ``summary.json``."""
        region = self.region
        return {
            "model_region": None if region is None else [region.x0, region.y0, region.x1, region.y1],
            "measurement_unit": self.unit,
            "mm_per_pixel": None if self.spacing_mm is None else list(self.spacing_mm),
        }


def source_geometry(source: VideoSource, use_region: bool = True) -> FrameGeometry:
    """The geometry of a source: its DICOM imaging region (unless ``use_region`` is False) and calibration."""
    info = source.dicom
    if info is None:
        return FrameGeometry()
    return FrameGeometry(info.region if use_region else None, info.spacing_mm)


class MeasurementLog:
    """The largest lesion area and diameter over a video's frames, for ``summary.json``."""

    def __init__(self, geometry: FrameGeometry) -> None:
        self.geometry = geometry
        self.largest: dict[str, tuple[float, int] | None] = {name: None for name in geometry.columns[:2]}

    def add(self, index: int, measures: dict[str, float]) -> None:
        """Record one frame's measurements."""
        for name, best in self.largest.items():
            value = measures[name]
            if not math.isnan(value) and value > 0 and (best is None or value > best[0]):
                self.largest[name] = (value, index)

    def summary(self, source: VideoSource) -> dict[str, object]:
        """Geometry, largest area and diameter (value and frame), and the DICOM facts of ``source``."""
        out: dict[str, object] = dict(self.geometry.summary())
        for name, best in self.largest.items():
            out[f"largest_{name}"] = None if best is None else best[0]
            out[f"largest_{name}_frame"] = None if best is None else best[1]
        if source.dicom is not None:
            out["dicom"] = source.dicom.summary()
        return out
