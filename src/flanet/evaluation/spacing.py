"""Pixel spacing of evaluated videos, for the localisation error in millimetres (docs/metrics.md).

A video's spacing comes from its own file when the file carries a calibration (a DICOM cine: the
ultrasound region's ``PhysicalDeltaX/Y``, else ``PixelSpacing``; see :mod:`flanet.data.dicom`),
else from the caller (``flanet evaluate --pixel-spacing``, or ``pixel_spacing=`` of the evaluate
functions); a video with neither is reported in pixels only. Which one each video used is written
to ``per_video.csv`` and counted in ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flanet.data import Video
from flanet.evaluation.scoring import EvaluationResult

log = logging.getLogger(__name__)

#: What a caller may give: one ``(row mm, column mm)`` for every video, or one per video id.
GivenSpacing = tuple[float, float] | Mapping[str, tuple[float, float]] | None
GIVEN = "given"


@dataclass(frozen=True)
class Spacing:
    """Millimetres per pixel of one video: ``row_mm`` between rows (y), ``column_mm`` between columns (x)."""

    row_mm: float
    column_mm: float
    source: str


def _checked(value: tuple[float, float], video: str) -> tuple[float, float]:
    row, column = (float(v) for v in value)
    if not (math.isfinite(row) and math.isfinite(column) and row > 0 and column > 0):
        raise ValueError(f"pixel spacing of {video!r} must be two positive millimetre values, got {value!r}")
    return row, column


def resolve_spacing(videos: Sequence[Video], given: GivenSpacing = None) -> dict[str, Spacing]:
    """The spacing of every video that has one: its file's calibration first, else the given one.

    Args:
        videos: the data set's videos (``Video.pixel_spacing`` is the file's calibration).
        given: ``(row mm, column mm)`` for every video without a calibration of its own, or
            ``{video id: (row mm, column mm)}``, or None.

    Raises:
        ValueError: for a given spacing that is not two positive finite numbers.
    """
    resolved: dict[str, Spacing] = {}
    kept_own = 0
    for video in videos:
        wanted = given.get(video.id) if isinstance(given, Mapping) else given
        if video.pixel_spacing is not None:
            resolved[video.id] = Spacing(*_checked(video.pixel_spacing, video.id), f"DICOM {video.spacing_source}")
            kept_own += wanted is not None
        elif wanted is not None:
            resolved[video.id] = Spacing(*_checked(wanted, video.id), GIVEN)
    if kept_own:
        log.warning("%d video(s) keep the pixel spacing of their own DICOM calibration, not the given one", kept_own)
    return resolved


def as_pairs(spacing: Mapping[str, Spacing]) -> dict[str, tuple[float, float]]:
    """``video id -> (row mm, column mm)``, what :meth:`EvaluationScorer.result` takes."""
    return {video: (s.row_mm, s.column_mm) for video, s in spacing.items()}


def annotate(result: EvaluationResult, spacing: Mapping[str, Spacing]) -> EvaluationResult:
    """State each scored video's spacing in its ``per_video`` row and count the sources in ``metrics``.

    Rows get ``spacing_row_mm``, ``spacing_column_mm`` and ``spacing_source`` (blank: pixels only);
    ``metrics["video_behaviour"]["localisation"]`` gets ``videos_with_spacing`` and ``spacing_sources``.
    """
    sources: Counter[str] = Counter()
    for row in result.per_video:
        found = spacing.get(row["video"])
        row.update(spacing_row_mm=found.row_mm if found else "", spacing_column_mm=found.column_mm if found else "",
                   spacing_source=found.source if found else "")
        sources[found.source if found else "none"] += 1
    localisation = result.metrics["video_behaviour"]["localisation"]
    localisation["videos_with_spacing"] = len(result.per_video) - sources["none"]
    localisation["spacing_sources"] = dict(sorted(sources.items()))
    return result
