"""Finding videos on disk: layout detection and one reader per public layout.

Layouts (checked in this order, see docs/data.md):

- ``authors``: ``img_list/<video>/<frame>``, ``mask_list/<video>/<frame>``, optional ``bbox.json``.
- ``buv2022``: ``images/<video>/<frame>``, ``labels/<video>/<frame>.png``.
- ``video-polyp``: ``<split>/Frame/<case>/`` + ``<split>/GT/<case>/`` at any depth up to 5 (CVC-300-TV,
  CVC-612, SUN-SEG, MICCAI-VPS test), or ``<split>/<case>/{Frame,GT}/`` (one MICCAI-VPS train variant).
- ``cvat``: CVAT-for-video exports, ``annotations.xml`` + ``images/`` in the root (one video) or in
  each ``<video>/`` sub-folder.
- ``coco``: a COCO export, ``annotations/*.json`` + ``images/<video>/<frame>``.
- ``cva-net``: CVA-Net's ``rawframes/<video>/<frame>`` + COCO box files ``*.json`` in the root (box-only).
- ``vtus``: ``<split>/<video>/<frame>`` with masks in ``<split>_GT/<video>/`` (VTUS thyroid videos).
- ``video-files``: ``*.mp4``/``*.avi``/... in the root, optional masks in ``masks/<video stem>/``.
- ``dicom``: DICOM cine files ``*.dcm`` in the root, optional masks in ``masks/<file stem>/`` (as video files).
- ``frame-folders``: ``<video>/<frame>``, or frames directly in the root (one video); unlabelled, for inference.

Split lists ``<split>_list.csv`` at the root apply to every layout (and take precedence over
split folders); labels come from ``video_labels.csv`` / ``labels.csv`` at the root.
"""

from __future__ import annotations

import re
from pathlib import Path

from natsort import natsorted

from flanet.data.annotation_layouts import cvat_task_folders, read_coco_layout, read_cvat_layout
from flanet.data.bboxes import read_bbox_json
from flanet.data.dicom import DICOM_SUFFIXES
from flanet.data.errors import DataError, Problem
from flanet.data.labels import find_label_file, folder_labels, merged_labels, read_labels
from flanet.data.listing import list_dir, match_masks, paired_videos, video_folders
from flanet.data.splits import read_split_lists, with_aliases
from flanet.data.video_io import VIDEO_EXTENSIONS, VIDEO_FILE_SUFFIXES
from flanet.data.videoset import Video, VideoSet

__all__ = ["VIDEO_EXTENSIONS", "MixedFolderError", "discover"]
_MAX_POLYP_DEPTH = 5


def _find_polyp_splits(root: Path, notes: list[Problem]) -> list[tuple[str, list[Video]]]:
    """Search ``Frame``/``GT`` folder pairs up to depth 5; returns ``(split path, videos)`` pairs."""
    found: list[tuple[str, list[Video]]] = []
    per_sequence: dict[Path, list[Video]] = {}

    def walk(folder: Path, depth: int) -> None:
        frame_dir = folder / "Frame"
        if frame_dir.is_dir() and (folder / "GT").is_dir():
            subfolders, images = list_dir(frame_dir, notes)
            if images:  # <split>/<case>/{Frame,GT}/<frame>
                video = Video(folder.name, images, match_masks(folder.name, images, folder / "GT", notes))
                if folder == root:
                    found.append(("", [video]))
                else:
                    per_sequence.setdefault(folder.parent, []).append(video)
            elif subfolders:  # <split>/{Frame,GT}/<case>/<frame>
                split = folder.relative_to(root).as_posix()
                found.append((split if split != "." else "", paired_videos(frame_dir, folder / "GT", notes)))
            return
        if depth < _MAX_POLYP_DEPTH:
            for sub in list_dir(folder, [])[0]:
                walk(sub, depth + 1)

    walk(root, 0)
    for parent, videos in per_sequence.items():
        split = parent.relative_to(root).as_posix()
        found.append((split if split != "." else "", natsorted(videos, key=lambda v: v.id)))
    return found


def _read_polyp(found: list[tuple[str, list[Video]]]) -> tuple[list[Video], dict[str, list[str]]]:
    """Prefix video ids with their split folder; add ``train``/``val``/``test`` aliases of split folders."""
    videos: list[Video] = []
    splits: dict[str, list[str]] = {}
    for split, split_videos in found:
        for video in split_videos:
            video.id = f"{split}/{video.id}" if split else video.id
        videos.extend(split_videos)
        if split:
            splits.setdefault(split, []).extend(video.id for video in split_videos)
    return videos, with_aliases(splits)


def _vtus_splits(root: Path) -> list[str]:
    """Split folders ``<split>`` of ``root`` that have a mask folder ``<split>_GT`` beside them."""
    names = {folder.name for folder in list_dir(root, [])[0]}
    return natsorted(name for name in names if f"{name}_GT" in names)


def _read_vtus(root: Path, splits: list[str], notes: list[Problem]) -> tuple[list[Video], dict[str, list[str]]]:
    """``<split>/<video>/`` frames with ``<split>_GT/<video>/`` masks; ids ``<split>/<video>``."""
    found = [(split, paired_videos(root / split, root / f"{split}_GT", notes)) for split in splits]
    return _read_polyp(found)


def _video_number(path: Path) -> int | None:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def _read_video_files(root: Path, files: list[Path], notes: list[Problem]) -> list[Video]:
    videos = []
    for path in files:
        try:
            video = Video.from_file(path)
        except DataError as error:
            notes.append(Problem("error", path, f"unreadable video: {error}"))
            continue
        frame_count, masks = video.num_frames, video.masks  # one None per declared frame
        mask_dir = root / "masks" / path.stem
        if mask_dir.is_dir():
            for mask in list_dir(mask_dir, notes)[1]:
                index = _video_number(mask)
                if index is None or not 0 <= index < frame_count:
                    message = f"mask name gives no frame number in 0..{frame_count - 1}, ignored"
                    notes.append(Problem("warning", mask, message))
                else:
                    masks[index] = mask
        videos.append(video)
    return videos


class MixedFolderError(DataError):
    """A folder whose loose frames sit beside other videos: no reader can tell which video they are."""


def _refuse_mixed_frames(root: Path, loose: list[Path], files: list[Path],
                         listed: list[tuple[str, list[Path]]]) -> None:
    """Frames loose in a root that also holds videos or frame folders: which video are they? Refused, named."""
    if loose and (files or listed):
        others = [p.name for p in files[:2]] + [f"{name}/" for name, _ in listed[:2]]
        raise MixedFolderError(f"holds frames directly ({loose[0].name}, ...) beside other videos ({', '.join(others)}, ...): "
                        "move the loose frames into a folder of their own (one folder per video)", root)


def _refuse_shared_ids(root: Path, videos: list[Video]) -> None:
    """Two inputs giving one video id (``a.mp4`` and ``a.dcm``, or ``a.mp4`` and ``a/``) would share outputs."""
    seen: dict[str, Video] = {}
    for video in videos:
        if video.id in seen:
            first, second = (v.video_file.name if v.video_file else f"{v.id}/" for v in (seen[video.id], video))
            raise DataError(f"{first} and {second} both give video id {video.id!r}: rename one", root)
        seen[video.id] = video


def discover(root: str | Path, labels_csv: str | Path | None = None) -> VideoSet:
    """Detect the layout of ``root`` and list its videos, masks, bboxes, splits and labels.

    Reads only directory listings and the small JSON/CSV files; images are read later.

    Args:
        root: the data set folder.
        labels_csv: a video-labels CSV; default ``<root>/video_labels.csv`` or ``<root>/labels.csv``.

    Raises:
        DataError: naming ``root`` when it is missing or matches no known layout, or a
            malformed labels CSV / split list.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError("not a folder", root)
    notes: list[Problem] = []
    folder_splits: dict[str, list[str]] = {}
    coco_files: dict[str, Path] = {}
    if (root / "img_list").is_dir():
        layout = "authors"
        videos = paired_videos(root / "img_list", root / "mask_list", notes)
        if not (root / "mask_list").is_dir():
            notes.append(Problem("warning", root / "mask_list", "no mask_list folder: frames have no masks"))
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        layout = "buv2022"
        videos = paired_videos(root / "images", root / "labels", notes)
    elif (root / "annotations.xml").is_file() or cvat_task_folders(root):
        layout = "cvat"
        videos = read_cvat_layout(root, notes)
    elif (root / "annotations").is_dir() and (root / "images").is_dir():
        layout = "coco"
        videos, folder_splits, coco_files = read_coco_layout(root, root / "images", root / "annotations", notes)
    elif (root / "rawframes").is_dir() and any(root.glob("*.json")):
        layout = "cva-net"
        videos, folder_splits, coco_files = read_coco_layout(root, root / "rawframes", root, notes)
    elif vtus := _vtus_splits(root):
        layout = "vtus"
        videos, folder_splits = _read_vtus(root, vtus, notes)
    elif found := _find_polyp_splits(root, notes):
        layout = "video-polyp"
        videos, folder_splits = _read_polyp(found)
    else:
        subfolders, loose_images = video_folders(root, [])
        files = [p for p in root.iterdir() if p.suffix.lower() in VIDEO_FILE_SUFFIXES and p.is_file()]
        files = natsorted(files, key=lambda p: p.name)
        mask_folder = "masks" if files else None  # masks/<video stem>/ of video files is no video
        listed = [(name, frames) for name, folder in subfolders if name != mask_folder
                  for frames in [list_dir(folder, notes)[1]] if frames]
        _refuse_mixed_frames(root, loose_images, files, listed)
        if loose_images:  # the root itself is one video's frames
            listed = [(root.name, loose_images)]
        if files or listed:
            dicom = all(p.suffix.lower() in DICOM_SUFFIXES for p in files)
            layout = ("mixed" if files and listed else "frame-folders" if listed
                      else "dicom" if dicom else "video-files")
            videos = _read_video_files(root, files, notes) + [Video(name, frames, [None] * len(frames))
                                                              for name, frames in listed]
            _refuse_shared_ids(root, videos)
        else:
            raise DataError(
                "no known data layout: expected img_list/ + mask_list/ (authors), images/ + labels/ (BUV2022), "
                "<split>/Frame/<case> + <split>/GT/<case> (video polyp), annotations.xml + images/ (CVAT), "
                "annotations/*.json + images/ (COCO), rawframes/ + *.json (CVA-Net), <split>/ + <split>_GT/ (VTUS), "
                "video files (.mp4/.avi), DICOM cine files (.dcm), "
                "or one folder of frames per video (see docs/data.md)",
                root,
            )
    videos = natsorted(videos, key=lambda video: video.id) if layout not in ("video-polyp", "vtus") else videos
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
