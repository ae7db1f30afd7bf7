"""Reading COCO annotation files of video frames: masks (COCO RLE / polygons) or boxes only.

Used by the ``coco`` layout (a COCO export: ``annotations/*.json`` + ``images/``) and the
``cva-net`` layout (CVA-Net's ``rawframes/`` + ``*.json`` boxes). Rules (see docs/data.md):

- ``file_name`` of an image is relative to the frames folder; its folder part is the video
  (``<video>/<frame>``); a bare file name belongs to one video named after the data set root.
- Every image listed in a file is a labelled frame: its annotations are its lesion, no
  annotation means no lesion. Frames on disk that no file lists are context frames.
- A file in which some annotation has a ``segmentation`` (compressed or uncompressed RLE, or
  polygons) is a mask file: a frame's mask is the union of its annotations' segmentations.
  A file without any segmentation is a box file: a frame's box (``bbox = [x, y, w, h]``) is the
  union of its annotations' boxes, and the frame has no mask.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flanet.data.errors import DataError, Problem
from flanet.data.rle import EncodedMask, check_runs, coco_runs, merge_coco, polygons_to_coco
from flanet.data.videoset import BBox


@dataclass(frozen=True)
class FrameLabel:
    """The label of one listed frame: its mask (mask files) or its box (box files, None = no lesion)."""

    mask: EncodedMask | None
    box: BBox | None


#: labels per video id (the folder part of ``file_name``, ``""`` for bare names), then per frame file name
CocoLabels = dict[str, dict[str, FrameLabel]]


def _load(path: Path) -> tuple[list[dict], list[dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"malformed COCO file: {error.msg} (line {error.lineno}, column {error.colno})", path) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read COCO file ({error})", path) from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError('not a COCO file: expected an object with "images" and "annotations" lists', path)
    for position, image in enumerate(data["images"]):
        ok = isinstance(image, dict) and isinstance(image.get("file_name"), str) and all(
            isinstance(image.get(key), int) and not isinstance(image.get(key), bool) for key in ("id", "width", "height"))
        if not ok or image["width"] <= 0 or image["height"] <= 0:
            raise DataError(f"malformed COCO file: images[{position}] needs an integer id, a file_name and "
                            "positive integer width and height", path)
    if not all(isinstance(annotation, dict) for annotation in data["annotations"]):
        raise DataError("malformed COCO file: every annotation must be an object", path)
    return data["images"], data["annotations"]


def _segmentation(value: object, height: int, width: int) -> dict:
    """COCO RLE of one annotation's segmentation (raises ValueError/TypeError/KeyError when malformed)."""
    if isinstance(value, list):
        if not all(isinstance(polygon, list) for polygon in value):
            raise ValueError("polygons must be lists of x, y coordinates")
        return polygons_to_coco(value, height, width)
    if not isinstance(value, dict) or list(value.get("size", [])) != [height, width]:
        raise ValueError(f"an RLE needs size [{height}, {width}] (the image's height, width)")
    counts = value["counts"]
    if isinstance(counts, list):
        if not all(isinstance(run, int) and not isinstance(run, bool) for run in counts):
            raise TypeError("uncompressed RLE counts must be integers")
        check_runs(counts, height, width)
        from pycocotools import mask as coco_mask

        return coco_mask.frPyObjects(value, height, width)
    if not isinstance(counts, str):
        raise TypeError("RLE counts must be a string or a list of integers")
    check_runs(coco_runs(counts), height, width)
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _box(value: object) -> BBox:
    if not (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise ValueError(f"bbox must be [x, y, width, height], got {json.dumps(value)[:60]}")
    x, y, w, h = (float(v) for v in value)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"bbox {value} needs width, height > 0 and x, y >= 0")
    return x, y, x + w, y + h


def _union(boxes: list[BBox]) -> BBox | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def read_coco_file(path: Path, notes: list[Problem]) -> tuple[CocoLabels, bool]:
    """Labels of every image listed in one COCO file, and whether it is a box file.

    Raises:
        DataError: naming the file, when it is not valid JSON or not a COCO file.
    """
    images, annotations = _load(path)
    by_id = {image["id"]: image for image in images}
    box_file = not any(annotation.get("segmentation") for annotation in annotations)
    shapes: dict[int, list] = {image_id: [] for image_id in by_id}
    for annotation in annotations:
        image = by_id.get(annotation.get("image_id"))
        where = f"annotation {annotation.get('id', '?')}"
        if image is None:
            notes.append(Problem("error", path, f"{where} names image_id {annotation.get('image_id')!r}, "
                                                "which no image has"))
            continue
        try:
            if box_file:
                shapes[image["id"]].append(_box(annotation.get("bbox")))
            elif annotation.get("segmentation"):
                shapes[image["id"]].append(_segmentation(annotation["segmentation"], image["height"], image["width"]))
            else:
                notes.append(Problem("warning", path, f"{where} ({image['file_name']}) has no segmentation: "
                                                      "it adds nothing to its frame's mask"))
        except (ValueError, TypeError, KeyError) as error:
            notes.append(Problem("error", path, f"malformed {where} ({image['file_name']}): {error}"))
    labels: CocoLabels = {}
    for image_id, image in by_id.items():
        name = PurePosixPath(image["file_name"])
        video = "" if str(name.parent) == "." else name.parent.as_posix()
        if name.name in labels.get(video, {}):
            notes.append(Problem("error", path, f"two images have the file_name {image['file_name']!r}"))
            continue
        if box_file:
            if len(shapes[image_id]) > 1:
                notes.append(Problem("note", path, f"{image['file_name']}: {len(shapes[image_id])} boxes, "
                                                   "their union is the frame's box"))
            label = FrameLabel(None, _union(shapes[image_id]))
        else:
            counts = merge_coco(shapes[image_id], image["height"], image["width"])
            label = FrameLabel(EncodedMask(path, image["file_name"], image["height"], image["width"], counts), None)
        labels.setdefault(video, {})[name.name] = label
    return labels, box_file


def split_name(path: Path) -> str:
    """Split named by a COCO file: its stem without an ``instances_`` prefix (``instances_val`` -> ``val``)."""
    stem = path.stem
    return stem[len("instances_"):] if stem.startswith("instances_") and len(stem) > len("instances_") else stem
