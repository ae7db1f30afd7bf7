"""Per-frame lesion statistics, overlay drawing and the writers of ``flanet predict``."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from flanet.colours import HEATMAP_RGB, PREDICTION_RGB, bgr
from flanet.csvcells import escape_row
from flanet.fileio import named_os_error
from flanet.inference.core.segmenter import FrameResult

__all__ = ["FrameStats", "frame_stats", "lesion_extent", "draw_overlay", "FrameTableWriter"]

# Heatmap peaks below this value are not drawn (the target is a unit Gaussian, 0 = no lesion).
HEATMAP_PEAK_MIN = 0.5
CONTOUR_COLOUR_BGR = bgr(PREDICTION_RGB)  # flanet.colours: prediction red, heatmap yellow
PEAK_COLOUR_BGR = bgr(HEATMAP_RGB)


@dataclass(frozen=True)
class FrameStats:
    """One row of the per-frame CSV; pixel coordinates of the input frame.

    ``mean_probability`` is the mean lesion probability inside the predicted mask
    (NaN without a lesion), ``max_probability`` the frame's maximum. The heatmap columns are
    NaN for models without a localisation branch; bbox and centroid are NaN without a lesion.
    """

    frame: int
    source: str
    lesion_present: bool
    area_px: int
    bbox_x1: float
    bbox_y1: float
    bbox_x2: float
    bbox_y2: float
    centroid_x: float
    centroid_y: float
    mean_probability: float
    max_probability: float
    heatmap_peak_x: float
    heatmap_peak_y: float
    heatmap_peak_value: float
    context_frames: int


def lesion_extent(mask: np.ndarray) -> tuple[int, tuple[int, int, int, int] | None, tuple[float, float]]:
    """Area, inclusive bbox ``(x1, y1, x2, y2)`` and centroid ``(x, y)`` of the lesion pixels of a bool mask.

    From the row and column counts (two passes over the mask, no coordinate arrays): the centroid is the
    exact integer sum of the coordinates over the area, the same float64 as the mean of ``np.nonzero``'s
    coordinates. None and NaN without a lesion.
    """
    rows, cols = mask.sum(axis=1), mask.sum(axis=0)
    area = int(rows.sum())
    if not area:
        return 0, None, (math.nan, math.nan)
    filled_rows, filled_cols = np.flatnonzero(rows), np.flatnonzero(cols)
    bbox = (int(filled_cols[0]), int(filled_rows[0]), int(filled_cols[-1]), int(filled_rows[-1]))
    x_sum = int(np.dot(cols, np.arange(cols.size, dtype=cols.dtype)))
    y_sum = int(np.dot(rows, np.arange(rows.size, dtype=rows.dtype)))
    return area, bbox, (x_sum / area, y_sum / area)


def frame_stats(result: FrameResult, source: str = "") -> FrameStats:
    """Compute the lesion statistics of one prediction (vectorised over pixels).

    The bbox is inclusive (x2, y2 are the last lesion column/row); the centroid is the mean
    of the lesion pixels' coordinates.
    """
    mask = result.mask
    area, box, centroid = lesion_extent(mask)
    nan = math.nan
    bbox = (nan, nan, nan, nan)
    mean_prob = nan
    if box is not None:
        bbox = tuple(float(v) for v in box)
        inside = (slice(box[1], box[3] + 1), slice(box[0], box[2] + 1))  # the same pixels, in the same order
        mean_prob = float(result.probability[inside][mask[inside]].mean())
    peak = (nan, nan, nan)
    if result.heatmap_full is not None:
        flat = int(np.argmax(result.heatmap_full))
        y, x = divmod(flat, result.heatmap_full.shape[1])
        peak = (float(x), float(y), float(result.heatmap_full.flat[flat]))
    return FrameStats(
        result.index, source, area > 0, area, *bbox, *centroid, mean_prob,
        float(result.probability.max()), *peak, result.context_frames,
    )


def draw_overlay(rgb: np.ndarray, result: FrameResult, stats: FrameStats) -> np.ndarray:
    """Draw the lesion contour, the heatmap peak and the frame number on a BGR copy.

    Args:
        rgb: the input frame, RGB uint8 (H, W, 3); not modified.
        result: the frame's prediction.
        stats: the frame's statistics (for the peak).

    Returns:
        BGR uint8 (H, W, 3), ready for ``cv2.VideoWriter``.
    """
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 200))
    contours, _ = cv2.findContours(
        result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(canvas, contours, -1, CONTOUR_COLOUR_BGR, thickness)
    if stats.heatmap_peak_value >= HEATMAP_PEAK_MIN:
        centre = (int(stats.heatmap_peak_x), int(stats.heatmap_peak_y))
        marker = max(8, min(height, width) // 20)
        cv2.drawMarker(canvas, centre, PEAK_COLOUR_BGR, cv2.MARKER_CROSS, marker, thickness)
    label = f"frame {stats.source}"  # the frame's one name (flanet.data.videoset.frame_name), as CSV and viewer
    scale = max(0.4, min(height, width) / 600)
    origin = (5, 5 + int(22 * scale))
    cv2.putText(canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2)
    cv2.putText(canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)
    return canvas


class FrameTableWriter:
    """CSV writer of :class:`FrameStats` rows (header = the dataclass's field names, then ``extra_fields``)."""

    def __init__(self, path: Path, extra_fields: list[str] | tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        names = [f.name for f in fields(FrameStats)] + list(extra_fields)
        self._writer = csv.DictWriter(self._file, fieldnames=names)
        self._writer.writeheader()

    def write(self, stats: FrameStats, extra: dict[str, float] | None = None) -> None:
        """Append one row (``extra``: values of the extra fields); NaN is written as an empty cell."""
        values = {**asdict(stats), **(extra or {})}
        row = {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
        try:
            self._writer.writerow(escape_row(row))  # a frame name never runs as a spreadsheet formula
        except OSError as error:  # a full disk: the error line names the CSV
            raise named_os_error(error, self.path) from error

    def flush(self) -> None:
        """Push the rows written so far to the file (live runs: the CSV can be followed as it grows)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        try:
            self._file.close()
        except OSError as error:
            raise named_os_error(error, self.path) from error

    def __enter__(self) -> FrameTableWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
