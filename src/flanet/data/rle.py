"""Masks stored inside annotation files: COCO RLE (pycocotools) and CVAT's mask RLE.

A frame of a COCO or CVAT export has no mask file; its mask is an :class:`EncodedMask`, the COCO
compressed RLE of the whole frame, decoded when it is read (``flanet.data.read_mask`` accepts
it wherever it accepts a mask file).

CVAT's mask RLE (the ``rle`` attribute of ``<mask>`` in CVAT XML 1.1) covers the mask's box
``left, top, width, height`` in row-major order; its runs alternate background, lesion,
background, ... and start with background (a leading 0 when the first pixel is lesion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask


@dataclass(frozen=True)
class EncodedMask:
    """The mask of one frame, held in an annotation file.

    Attributes:
        file: the annotation file (COCO JSON or CVAT XML) it was read from.
        frame: what that file calls the frame (a file name or ``frame 12``), for messages.
        height: frame height in pixels.
        width: frame width in pixels.
        counts: COCO compressed RLE counts (``pycocotools.mask.encode``) of the whole frame.
    """

    file: Path
    frame: str
    height: int
    width: int
    counts: bytes

    @property
    def name(self) -> str:
        """``<file name>[<frame>]``, for messages."""
        return f"{self.file.name}[{self.frame}]"

    def decode(self) -> np.ndarray:
        """The mask as bool ``(H, W)``."""
        rle = {"size": [self.height, self.width], "counts": self.counts}
        return coco_mask.decode(rle).astype(bool)


def encode_coco(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": bytes}`` of a 2-D bool/0-1 mask."""
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def coco_runs(counts: str | bytes) -> list[int]:
    """Run lengths of COCO compressed RLE counts (pycocotools' ``rleFrString``, in Python).

    Raises:
        ValueError: for characters outside the encoding or a string that ends inside a number.
    """
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    runs: list[int] = []
    position = 0
    while position < len(data):
        value = shift = 0
        more = True
        while more:
            if position >= len(data):
                raise ValueError("RLE counts end inside a number")
            char = data[position] - 48
            if not 0 <= char < 64:
                raise ValueError(f"RLE counts hold a character outside the encoding ({chr(data[position])!r})")
            value |= (char & 0x1F) << (5 * shift)
            more, position, shift = bool(char & 0x20), position + 1, shift + 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        runs.append(value + runs[-2] if len(runs) > 2 else value)
    return runs


def check_runs(runs: Sequence[int], height: int, width: int) -> None:
    """Raise ValueError unless ``runs`` are non-negative and cover the ``height x width`` frame exactly.

    pycocotools does not check this, and decoding runs that exceed the frame writes past its buffer.
    """
    if any(run < 0 for run in runs):
        raise ValueError("RLE has a negative run length")
    if sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, the {width}x{height} frame has {height * width}")


def merge_coco(rles: Sequence[dict], height: int, width: int) -> bytes:
    """Counts of the union of COCO RLEs of one ``height x width`` frame (an empty mask when none)."""
    if not rles:
        return encode_coco(np.zeros((height, width), np.uint8))["counts"]
    return coco_mask.merge(list(rles))["counts"] if len(rles) > 1 else rles[0]["counts"]


def polygons_to_coco(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """COCO RLE of the union of polygons ``[x1, y1, x2, y2, ...]`` (rasterised as pycocotools does).

    Raises:
        ValueError: for a polygon with fewer than 3 points or a coordinate that is not a finite number.
    """
    for polygon in polygons:
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a polygon needs at least 3 x, y points")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in polygon):
            raise ValueError("polygon coordinates must be finite numbers")
    return coco_mask.merge(coco_mask.frPyObjects([list(p) for p in polygons], height, width))


def encode_cvat(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]] | None:
    """CVAT mask RLE of a 2-D mask: ``(runs, (left, top, width, height))``, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    crop = mask[top:rows[-1] + 1, left:cols[-1] + 1].astype(np.int8)
    flat = crop.ravel()
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return runs, (left, top, crop.shape[1], crop.shape[0])


def decode_cvat(runs: Sequence[int], box: tuple[int, int, int, int], height: int, width: int) -> np.ndarray:
    """Bool ``(height, width)`` mask of CVAT mask RLE ``runs`` over ``box = (left, top, width, height)``.

    Raises:
        ValueError: negative runs, runs that do not cover the box exactly, or a box outside the frame.
    """
    left, top, box_width, box_height = box
    if box_width <= 0 or box_height <= 0 or left < 0 or top < 0:
        raise ValueError(f"mask box left={left} top={top} width={box_width} height={box_height} is not valid")
    if left + box_width > width or top + box_height > height:
        raise ValueError(f"mask box left={left} top={top} width={box_width} height={box_height} "
                         f"lies outside the {width}x{height} frame")
    counts = np.asarray(runs, dtype=np.int64)
    if counts.size == 0 or (counts < 0).any() or int(counts.sum()) != box_width * box_height:
        raise ValueError(f"mask rle covers {int(counts.sum()) if counts.size else 0} pixels, "
                         f"its box {box_width}x{box_height} has {box_width * box_height}")
    values = np.repeat(np.arange(counts.size) % 2 == 1, counts)
    out = np.zeros((height, width), dtype=bool)
    out[top:top + box_height, left:left + box_width] = values.reshape(box_height, box_width)
    return out
