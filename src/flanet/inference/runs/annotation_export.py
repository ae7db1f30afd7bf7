"""``flanet predict --export coco cvat``: the predicted masks as annotation files for CVAT (or any COCO tool).

Written per video, from the finished ``masks/*.png`` of that video (so the exports hold exactly
the masks predict wrote), into ``<video output>/export/``:

- ``coco.json``: COCO instances, one image per frame (``file_name`` = ``<video id>/<frame file>``,
  ``frame_000123.png`` for frames decoded from a video or DICOM file, as CVAT names them), one
  annotation per frame with a lesion (category ``lesion``, ``segmentation`` = COCO compressed
  RLE of the whole mask, ``bbox`` ``[x, y, w, h]``, ``area`` in pixels). A frame without a lesion
  has no annotation.
- ``cvat.xml``: "CVAT for video 1.1" (one CVAT task = the video), a ``lesion`` label of type
  ``mask``, and for every frame with a lesion a single-frame track holding a ``<mask>`` (CVAT's
  RLE over the mask's box, exact) followed by an ``outside`` shape on the next frame, as CVAT
  itself exports mask shapes (CVAT does not interpolate masks).

Both are read back by the ``coco`` and ``cvat`` layouts of :func:`flanet.data.discover`, pixel
for pixel, so corrected annotations come back as training data (docs/inference.md).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from flanet.data import read_mask
from flanet.data.listing import frame_files
from flanet.data.rle import encode_coco, encode_cvat
from flanet.data.videoset import frame_name
from flanet.fileio import atomic_write_bytes, atomic_write_text
from flanet.inference.runs.sources import VideoSource

__all__ = ["EXPORT_FORMATS", "LESION_LABEL", "export_frames", "export_video", "write_annotation_exports",
           "coco_document", "cvat_document"]

EXPORT_FORMATS: tuple[str, ...] = ("coco", "cvat")
LESION_LABEL = "lesion"
_LESION_COLOUR = "#fa3253"


def export_frames(source: VideoSource, count: int) -> list[tuple[str, str]]:
    """``(mask name, frame file name)`` of the ``count`` frames predict wrote for ``source``.

    Mask names are those of ``masks/<name>.png`` (:func:`flanet.data.videoset.frame_name`); frame file
    names are the input's (frame folders) or CVAT's own 0-based ``frame_<index:06d>.png`` (frames decoded
    from a video or DICOM file).
    """
    if source.frame_names is None:
        return [(frame_name(None, index), f"frame_{index:06d}.png") for index in range(count)]
    files = {path.stem: path.name for path in frame_files(source.location)} if source.location.is_dir() else {}
    return [(name, files.get(name, f"{name}.png")) for name in source.frame_names[:count]]


def coco_document(video_id: str, frames: Sequence[str], masks: Sequence[np.ndarray]) -> dict:
    """COCO instances of one video: ``frames[i]`` is the file name of ``masks[i]`` (bool ``(H, W)``)."""
    images, annotations = [], []
    for index, (frame, mask) in enumerate(zip(frames, masks), start=1):
        height, width = mask.shape
        images.append({"id": index, "file_name": f"{video_id}/{frame}", "width": width, "height": height,
                       "frame_id": index - 1})
        if mask.any():
            rle = encode_coco(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": index, "category_id": 1, "iscrowd": 0,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": float(coco_mask.area(rle)), "bbox": [float(v) for v in coco_mask.toBbox(rle)],
            })
    return {
        "info": {"description": f"flanet predict: {video_id}", "version": "1.0"},
        "licenses": [],
        "categories": [{"id": 1, "name": LESION_LABEL, "supercategory": ""}],
        "images": images,
        "annotations": annotations,
    }


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def cvat_document(video_id: str, masks: Sequence[np.ndarray]) -> bytes:
    """"CVAT for video 1.1" XML of one video's masks (bool ``(H, W)`` per frame)."""
    height, width = masks[0].shape if masks else (0, 0)
    root = ET.Element("annotations")
    _text(root, "version", "1.1")
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for tag, value in (("id", "0"), ("name", video_id), ("size", str(len(masks))), ("mode", "interpolation"),
                       ("overlap", "0"), ("start_frame", "0"), ("stop_frame", str(max(len(masks) - 1, 0))),
                       ("frame_filter", "")):
        _text(task, tag, value)
    label = ET.SubElement(ET.SubElement(task, "labels"), "label")
    for tag, value in (("name", LESION_LABEL), ("color", _LESION_COLOUR), ("type", "mask")):
        _text(label, tag, value)
    ET.SubElement(label, "attributes")
    size = ET.SubElement(task, "original_size")
    _text(size, "width", str(width))
    _text(size, "height", str(height))
    track_id = 0
    for frame, mask in enumerate(masks):
        encoded = encode_cvat(mask)
        if encoded is None:
            continue
        runs, (left, top, box_width, box_height) = encoded
        track = ET.SubElement(root, "track", {"id": str(track_id), "label": LESION_LABEL, "source": "auto"})
        shape = {"keyframe": "1", "outside": "0", "occluded": "0", "rle": ", ".join(map(str, runs)),
                 "left": str(left), "top": str(top), "width": str(box_width), "height": str(box_height),
                 "z_order": "0"}
        ET.SubElement(track, "mask", {"frame": str(frame), **shape})
        if frame + 1 < len(masks):
            ET.SubElement(track, "mask", {"frame": str(frame + 1), **shape, "outside": "1"})
        track_id += 1
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_annotation_exports(
    video_dir: Path, video_id: str, frames: Sequence[tuple[str, str]], formats: Sequence[str]
) -> list[Path]:
    """Write ``video_dir/export/coco.json`` and/or ``cvat.xml`` from ``video_dir/masks/*.png``.

    Args:
        video_dir: a video's predict output (with its ``masks/`` folder complete).
        video_id: the video's name in the exports (COCO file names, CVAT task name).
        frames: ``(mask name, frame file name)`` per frame, in order (see :func:`export_frames`).
        formats: any of :data:`EXPORT_FORMATS`.

    Returns:
        The files written.
    """
    masks = [read_mask(video_dir / "masks" / f"{name}.png") for name, _ in frames]
    written = []
    if "coco" in formats:
        document = coco_document(video_id, [frame for _, frame in frames], masks)
        written.append(atomic_write_text(video_dir / "export" / "coco.json", json.dumps(document, indent=1) + "\n"))
    if "cvat" in formats:
        written.append(atomic_write_bytes(video_dir / "export" / "cvat.xml", cvat_document(video_id, masks)))
    return written


def export_video(source: VideoSource, video_dir: Path, frame_count: int, formats: Sequence[str]) -> list[str]:
    """Write the exports of one predicted video (none when ``formats`` is empty).

    Returns:
        The files written, relative to ``video_dir`` (for the video's summary entry).
    """
    if not formats:
        return []
    frames = export_frames(source, frame_count)
    return [path.relative_to(video_dir).as_posix()
            for path in write_annotation_exports(video_dir, source.id, frames, formats)]
