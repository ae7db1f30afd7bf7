"""Layouts read from annotation files: ``cvat`` (CVAT for video 1.1 tasks) and ``coco`` / ``cva-net`` (COCO files).

Each reader (:func:`read_cvat`, :func:`read_coco`, :func:`read_cva_net`) is registered in
:data:`flanet.data.layouts.LAYOUTS` and returns None for a root that is not its layout (docs/data.md):

- ``cvat``: CVAT-for-video exports, ``annotations.xml`` + ``images/`` in the root (one video) or in
  each ``<video>/`` sub-folder.
- ``coco``: a COCO export, ``annotations/*.json`` + ``images/<video>/<frame>``.
- ``cva-net``: CVA-Net's ``rawframes/<video>/<frame>`` + COCO box files ``*.json`` in the root (box-only).

The rules of each are in :mod:`flanet.data.cvat`, :mod:`flanet.data.coco` and docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

from natsort import natsorted

from flanet.data.coco import FrameLabel, read_coco_file, split_name
from flanet.data.cvat import read_cvat_video
from flanet.data.errors import DataError, Problem
from flanet.data.listing import list_dir
from flanet.data.splits import with_aliases
from flanet.data.videoset import LayoutRead, Video


def read_cvat(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """CVAT for video: ``annotations.xml`` + ``images/`` in the root or in each ``<video>/`` sub-folder."""
    if not ((root / "annotations.xml").is_file() or cvat_task_folders(root)):
        return None
    return LayoutRead("cvat", read_cvat_layout(root, notes))


def read_coco(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """A COCO export: ``annotations/*.json`` + ``images/<video>/<frame>``."""
    if not ((root / "annotations").is_dir() and (root / "images").is_dir()):
        return None
    return LayoutRead("coco", *read_coco_layout(root, root / "images", root / "annotations", notes))


def read_cva_net(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """CVA-Net's detection set: ``rawframes/<video>/<frame>`` + COCO box files ``*.json`` in the root."""
    if not ((root / "rawframes").is_dir() and any(root.glob("*.json"))):
        return None
    return LayoutRead("cva-net", *read_coco_layout(root, root / "rawframes", root, notes))


def cvat_task_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding a CVAT task export (``annotations.xml``)."""
    return [folder for folder in list_dir(root, [])[0] if (folder / "annotations.xml").is_file()]


def read_cvat_layout(root: Path, notes: list[Problem]) -> list[Video]:
    """One video per CVAT task: ``root`` itself (named after it) or each ``<video>/`` sub-folder."""
    tasks = [root] if (root / "annotations.xml").is_file() else cvat_task_folders(root)
    videos = []
    for folder in tasks:
        images = folder / "images"
        if not images.is_dir():
            raise DataError("a CVAT task export needs its frames in images/ next to annotations.xml", images)
        _, frames = list_dir(images, notes)
        if [frame.name for frame in frames] != sorted(frame.name for frame in frames):
            notes.append(Problem("warning", images, "frame names sort differently in natural order (used here: "
                                                    "img_2 before img_10) and in CVAT's default lexicographic "
                                                    "order: make sure the task was created with natural sorting"))
        masks = read_cvat_video(folder / "annotations.xml", frames, notes)
        videos.append(Video(folder.name, frames, list(masks)))
    return videos


def read_coco_layout(
    root: Path, frames_root: Path, json_dir: Path, notes: list[Problem]
) -> tuple[list[Video], dict[str, list[str]], dict[str, Path]]:
    """Videos of COCO files ``json_dir/*.json`` over ``frames_root``; two or more files are splits."""
    files = natsorted(json_dir.glob("*.json"), key=lambda p: p.name)
    if not files:
        raise DataError("no COCO annotation file (*.json)", json_dir)
    per_video: dict[str, dict[str, FrameLabel]] = {}
    box_videos: set[str] = set()
    source: dict[str, Path] = {}
    splits: dict[str, list[str]] = {}
    split_files: dict[str, Path] = {}
    for path in files:
        labels, box_file = read_coco_file(path, notes)
        if len(files) > 1:
            splits[split_name(path)], split_files[split_name(path)] = [], path
        for video_id, frames in labels.items():
            if video_id in source:
                notes.append(Problem("error", path, f"video {video_id or root.name!r} is also in {source[video_id].name}"))
                continue
            source[video_id] = path
            per_video[video_id] = frames
            if box_file:
                box_videos.add(video_id)
            if len(files) > 1:
                splits[split_name(path)].append(video_id or root.name)
    videos = []
    for video_id, labels in per_video.items():
        folder = frames_root / video_id if video_id else frames_root
        if not folder.is_dir():
            notes.append(Problem("warning", source[video_id], f"video {video_id!r} has no frame folder {folder}, ignored"))
            continue
        _, frames = list_dir(folder, notes)
        names = {frame.name for frame in frames}
        missing = [name for name in labels if name not in names]
        if missing:
            notes.append(Problem("warning", source[video_id], f"{len(missing)} listed frame(s) of video "
                                 f"{video_id or root.name!r} have no file in {folder}, ignored: {', '.join(missing[:5])}"))
        found = [labels.get(frame.name) for frame in frames]
        boxes = lesion_free = None
        if video_id in box_videos:  # a listed frame without a box is lesion-free
            boxes = [label.box if label else None for label in found]
            lesion_free = [label is not None and label.box is None for label in found]
        masks = [label.mask if label else None for label in found]
        videos.append(Video(video_id or root.name, frames, masks, boxes, lesion_free=lesion_free))
    return videos, with_aliases(splits), split_files
