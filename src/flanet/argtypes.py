"""argparse value types that refuse impossible values by name (argparse then exits with status 2)."""

from __future__ import annotations

import argparse
import math

from flanet.limits import MAX_FPS, MAX_IMAGE_SIZE, MAX_SYNTH_SIZE


def unit_interval(text: str) -> float:
    """A finite number in [0, 1] (a probability threshold)."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from error
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (e.g. a frame rate)."""
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from error
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def frame_rate(text: str) -> float:
    """A frame rate: a finite number > 0 and at most :data:`flanet.limits.MAX_FPS` frames/s."""
    value = positive_float(text)
    if value > MAX_FPS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_FPS:g} frames/s, got {text}")
    return value


def _int_at_least(text: str, minimum: int, expected: str, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from error
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
    return value


def image_size(text: str) -> int:
    """A model input side in pixels: 1 to :data:`flanet.limits.MAX_IMAGE_SIZE`."""
    return _int_at_least(text, 1, "a positive integer", MAX_IMAGE_SIZE)


def synth_size(text: str) -> int:
    """A synthetic frame side in pixels: 32 to :data:`flanet.limits.MAX_SYNTH_SIZE`."""
    return _int_at_least(text, 32, "an integer", MAX_SYNTH_SIZE)


def positive_int(text: str) -> int:
    """An integer >= 1 (e.g. an image size)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. a count of untimed warm-up runs)."""
    return _int_at_least(text, 0, "an integer >= 0")


def pixel_spacing(text: str) -> tuple[float, float]:
    """``MM`` (square pixels) or ``ROW_MM,COLUMN_MM`` (DICOM PixelSpacing order): millimetres per pixel."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected MM or ROW_MM,COLUMN_MM, got {text!r}")
    values = tuple(positive_float(part.strip()) for part in parts)
    return (values[0], values[-1])


#: Largest coordinate a ``--keep-region`` may name (frames are far smaller).
MAX_REGION_PIXELS = 1 << 16


def keep_region(text: str) -> tuple[int, int, int, int]:
    """``X0,Y0,X1,Y1``: a rectangle of frame pixels, columns ``x0..x1`` and rows ``y0..y1`` inclusive (as a
    DICOM ultrasound region), ``0 <= x0 <= x1`` and ``0 <= y0 <= y1``."""
    parts = text.split(",")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (whole pixels), got {text!r}") from error
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected four numbers X0,Y0,X1,Y1, got {text!r}")
    x0, y0, x1, y1 = values
    if min(values) < 0 or x1 < x0 or y1 < y0 or max(values) > MAX_REGION_PIXELS:
        raise argparse.ArgumentTypeError(f"needs 0 <= X0 <= X1 and 0 <= Y0 <= Y1 (at most {MAX_REGION_PIXELS}), got {text}")
    return x0, y0, x1, y1
