"""Bounding boxes: ``bbox.json`` (authors' layout) and boxes from masks.

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates: pixel ``i`` covers ``[i, i+1)``, so the
box of a mask spans ``[min col, max col + 1)`` and its centre is the centre of the lesion's
extent. ``bbox.json`` boxes are read with the same convention.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from flanet.data.errors import Problem
from flanet.data.videoset import BBox, Video

NO_BOX: tuple[float, float, float, float] = (-1.0, -1.0, -1.0, -1.0)


def mask_bbox(mask: np.ndarray) -> BBox | None:
    """Box of the True pixels of a 2-D mask (pixel-edge coordinates), None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_iou(a: BBox, b: BBox) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _parse_box(value: object) -> tuple[BBox | None, str | None]:
    """Box from a JSON value; ``(None, None)`` for an empty entry, ``(None, why)`` when malformed."""
    if value is None or value == []:
        return None, None
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or len(value) != 4:
        return None, f"expected [x1, y1, x2, y2], got {json.dumps(value)[:60]}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None, f"box values must be finite numbers, got {json.dumps(value)[:60]}"
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 <= x1 or y2 <= y1:
        return None, f"degenerate box {value} (needs x2 > x1 and y2 > y1)"
    if min(x1, y1) < 0:
        return None, f"box {value} has negative coordinates"
    return (x1, y1, x2, y2), None


def read_bbox_json(path: Path, videos: list[Video], problems: list[Problem]) -> None:
    """Attach ``bbox.json`` boxes to ``videos`` (sets ``video.bboxes``); malformed parts become problems.

    Format: ``{"<video id>": {"<frame file name>": [x1, y1, x2, y2]}}``; frame keys match the
    file name or its stem; ``null``/``[]`` means no lesion.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        problems.append(Problem("error", path, f"malformed bbox.json: {error.msg} ({where})"))
        return
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem("error", path, f"cannot read bbox.json ({error})"))
        return
    if not isinstance(data, dict) or not all(isinstance(entry, dict) for entry in data.values()):
        expected = '{"<video>": {"<frame name>": [x1, y1, x2, y2]}}'
        problems.append(Problem("error", path, f"malformed bbox.json: expected {expected}"))
        return
    by_id = {video.id: video for video in videos}
    for video_id, entries in data.items():
        video = by_id.get(video_id)
        if video is None:
            problems.append(Problem("warning", path, f"bbox.json names video {video_id!r}, which does not exist"))
            continue
        index = {frame.name: i for i, frame in enumerate(video.frames)}
        index.update({frame.stem: i for i, frame in enumerate(video.frames)})
        boxes: list[BBox | None] = [None] * len(video.frames)
        for frame_name, value in entries.items():
            box, why = _parse_box(value)
            if frame_name not in index:
                problems.append(Problem("warning", path, f"bbox.json: video {video_id!r} has no frame {frame_name!r}"))
            elif why is not None:
                problems.append(Problem("error", path, f"malformed box for {video_id}/{frame_name}: {why}"))
            else:
                boxes[index[frame_name]] = box
        video.bboxes = boxes
