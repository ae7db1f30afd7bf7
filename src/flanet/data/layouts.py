"""Finding videos on disk: the registered layouts, and :func:`discover`, which tries them in order.

A layout is a reader ``read(root, notes) -> LayoutRead | None`` (None: ``root`` is not this layout) in
its own module, and its line in :data:`LAYOUTS` (docs/architecture.md). The layouts, in the order they
are tried (docs/data.md):

- ``authors``, ``buv2022``, ``vtus``, ``video-polyp``: frame folders paired with mask folders
  (:mod:`flanet.data.folder_layouts`);
- ``cvat``, ``coco``, ``cva-net``: frames with annotation files (:mod:`flanet.data.annotation_layouts`);
- ``video-files``, ``dicom``, ``frame-folders``, ``mixed``: video or DICOM files and plain frame folders,
  tried last (:mod:`flanet.data.file_layouts`).

Split lists ``<split>_list.csv`` at the root apply to every layout (and take precedence over
split folders); labels come from ``video_labels.csv`` / ``labels.csv`` at the root.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from natsort import natsorted

from flanet.data.bboxes import read_bbox_json
from flanet.data.errors import DataError, Problem
from flanet.data.labels import find_label_file, folder_labels, merged_labels, read_labels
from flanet.data.splits import read_split_lists
from flanet.data.videoset import LayoutRead, Video, VideoSet

__all__ = ["LAYOUTS", "Layout", "discover", "layout_reader"]


@dataclass(frozen=True)
class Layout:
    """A registered layout: ``reader`` (``module:function``, imported when tried) and what it expects in a root."""

    reader: str
    expects: str


#: The layouts :func:`discover` tries, in this order; the first whose reader returns a result is used.
LAYOUTS: dict[str, Layout] = {
    "authors": Layout("flanet.data.folder_layouts:read_authors", "img_list/ + mask_list/ (authors)"),
    "buv2022": Layout("flanet.data.folder_layouts:read_buv2022", "images/ + labels/ (BUV2022)"),
    "cvat": Layout("flanet.data.annotation_layouts:read_cvat", "annotations.xml + images/ (CVAT)"),
    "coco": Layout("flanet.data.annotation_layouts:read_coco", "annotations/*.json + images/ (COCO)"),
    "cva-net": Layout("flanet.data.annotation_layouts:read_cva_net", "rawframes/ + *.json (CVA-Net)"),
    "vtus": Layout("flanet.data.folder_layouts:read_vtus", "<split>/ + <split>_GT/ (VTUS)"),
    "video-polyp": Layout("flanet.data.folder_layouts:read_video_polyp",
                          "<split>/Frame/<case> + <split>/GT/<case> (video polyp)"),
    "files": Layout("flanet.data.file_layouts:read_files",
                    "video files (.mp4/.avi), DICOM cine files (.dcm), or one folder of frames per video"),
}

Reader = Callable[[Path, list[Problem]], "LayoutRead | None"]


def layout_reader(name: str) -> Reader:
    """The reader of the registered layout ``name`` (imported now).

    Raises:
        ValueError: an unknown layout.
    """
    if name not in LAYOUTS:
        raise ValueError(f"layout {name!r}: expected one of {', '.join(LAYOUTS)}")
    module, function = LAYOUTS[name].reader.split(":")
    return getattr(importlib.import_module(module), function)


def _read_layout(root: Path, notes: list[Problem]) -> LayoutRead:
    """The first registered layout that reads ``root``.

    Raises:
        DataError: no layout reads it (the message lists what each expects).
    """
    for name in LAYOUTS:
        found = layout_reader(name)(root, notes)
        if found is not None:
            return found
    expected = [layout.expects for layout in LAYOUTS.values()]
    raise DataError(f"no known data layout: expected {', '.join(expected)} (see docs/data.md)", root)


def discover(root: str | Path, labels_csv: str | Path | None = None, *, list_unreadable: bool = False) -> VideoSet:
    """Detect the layout of ``root`` and list its videos, masks, bboxes, splits and labels.

    Reads only directory listings and the small JSON/CSV files (and the headers of video and DICOM
    files); images are read later.

    Args:
        root: the data set folder.
        labels_csv: a video-labels CSV; default ``<root>/video_labels.csv`` or ``<root>/labels.csv``.
        list_unreadable: an unreadable video or DICOM file becomes an error in ``notes`` and is left
            out (``flanet data check``, which lists every problem); by default it is refused.

    Raises:
        DataError: naming ``root`` when it is missing or matches no known layout, or a
            malformed labels CSV / split list; naming the file, an unreadable video or DICOM file.
    """
    from flanet.data.file_layouts import UnreadableVideo

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError("not a folder", root)
    notes: list[Problem] = []
    layout, videos, folder_splits, coco_files, keep_order = _read_layout(root, notes)
    unreadable = [note for note in notes if isinstance(note, UnreadableVideo)]
    if unreadable and not list_unreadable:  # issue 22 item 6: a folder was read without it
        raise DataError(f"unreadable video, so the folder cannot be read whole: {unreadable[0].reason}; repair or "
                        "remove it (`flanet data check` lists every problem)", unreadable[0].path)
    folder_splits, coco_files = folder_splits or {}, coco_files or {}
    videos = videos if keep_order else natsorted(videos, key=lambda video: video.id)
    if (root / "bbox.json").is_file():
        read_bbox_json(root / "bbox.json", videos, notes)
    list_splits, split_files = read_split_lists(root)
    splits = list_splits or folder_splits
    if list_splits and folder_splits:
        notes.append(Problem("note", root, "split lists (*_list.csv) take precedence over split folders"))
    label_file = Path(labels_csv) if labels_csv is not None else find_label_file(root)
    labels = merged_labels(read_labels(label_file) if label_file is not None else {},
                           folder_labels([(video.id, _path_parts(root, video)) for video in videos]))
    return VideoSet(root, layout, videos, splits, labels, notes, split_files or coco_files)


def _path_parts(root: Path, video: Video) -> list[str]:
    """The parts of a video's id and of its frames' (or file's) folder below ``root``: where class folders show."""
    source = video.video_file or (video.frames[0] if video.frames else None)
    parts = list(video.id.split("/"))
    if source is not None and source.parent.is_relative_to(root):
        parts = list(source.parent.relative_to(root).parts) + parts
    return parts
