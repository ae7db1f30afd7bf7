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

import os
import re
from pathlib import Path

from natsort import natsorted

from flanet.data.bboxes import read_bbox_json
from flanet.data.coco import FrameLabel, read_coco_file, split_name
from flanet.data.cvat import read_cvat_video
from flanet.data.dicom import DICOM_SUFFIXES
from flanet.data.errors import DataError, Problem
from flanet.data.images import is_image_file
from flanet.data.labels import find_label_file, read_labels
from flanet.data.splits import read_split_lists
from flanet.data.videoset import Video, VideoSet

STRAY_NAMES: frozenset[str] = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"})
_MAX_POLYP_DEPTH = 5


def _list_dir(folder: Path, notes: list[Problem]) -> tuple[list[Path], list[Path]]:
    """Sub-folders and image files of ``folder`` (natural order); notes ignored entries."""
    folders: list[Path] = []
    images: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if entry.name.lower() in STRAY_NAMES or entry.name.startswith("._"):
                notes.append(Problem("note", path, "stray system file, ignored"))
            elif entry.name.startswith("."):
                continue
            elif entry.is_dir():
                folders.append(path)
            elif is_image_file(path):
                images.append(path)
            else:
                notes.append(Problem("note", path, "not an image file, ignored"))
    return natsorted(folders, key=lambda p: p.name), natsorted(images, key=lambda p: p.name)


def _match_masks(video_id: str, frames: list[Path], mask_dir: Path | None, notes: list[Problem]) -> list[Path | None]:
    """Pair each frame with the mask of the same file stem in ``mask_dir``."""
    if mask_dir is None or not mask_dir.is_dir():
        return [None] * len(frames)
    _, mask_files = _list_dir(mask_dir, notes)
    by_stem: dict[str, Path] = {}
    for mask in mask_files:
        if mask.stem in by_stem:
            kept = by_stem[mask.stem].name
            notes.append(Problem("warning", mask, f"two masks share the name {mask.stem!r}; using {kept}"))
            continue
        by_stem[mask.stem] = mask
    frame_stems = {frame.stem for frame in frames}
    for stem, mask in by_stem.items():
        if stem not in frame_stems:
            notes.append(Problem("warning", mask, f"mask without a frame in video {video_id!r}, ignored"))
    return [by_stem.get(frame.stem) for frame in frames]


def _paired_videos(image_root: Path, mask_root: Path, notes: list[Problem]) -> list[Video]:
    """Videos ``image_root/<video>/`` with masks in ``mask_root/<video>/``."""
    folders, loose = _list_dir(image_root, notes)
    for path in loose:
        notes.append(Problem("warning", path, "image outside any video folder, ignored"))
    videos = []
    for folder in folders:
        _, frames = _list_dir(folder, notes)
        mask_dir = mask_root / folder.name
        if not mask_dir.is_dir():
            message = f"no mask folder for video {folder.name!r}: its frames have no masks"
            notes.append(Problem("warning", mask_dir, message))
        videos.append(Video(folder.name, frames, _match_masks(folder.name, frames, mask_dir, notes)))
    if mask_root.is_dir():
        image_names = {folder.name for folder in folders}
        for folder in _list_dir(mask_root, notes)[0]:
            if folder.name not in image_names:
                notes.append(Problem("warning", folder, "mask folder without a frame folder, ignored"))
    return videos


def _find_polyp_splits(root: Path, notes: list[Problem]) -> list[tuple[str, list[Video]]]:
    """Search ``Frame``/``GT`` folder pairs up to depth 5; returns ``(split path, videos)`` pairs."""
    found: list[tuple[str, list[Video]]] = []
    per_sequence: dict[Path, list[Video]] = {}

    def walk(folder: Path, depth: int) -> None:
        frame_dir = folder / "Frame"
        if frame_dir.is_dir() and (folder / "GT").is_dir():
            subfolders, images = _list_dir(frame_dir, notes)
            if images:  # <split>/<case>/{Frame,GT}/<frame>
                video = Video(folder.name, images, _match_masks(folder.name, images, folder / "GT", notes))
                if folder == root:
                    found.append(("", [video]))
                else:
                    per_sequence.setdefault(folder.parent, []).append(video)
            elif subfolders:  # <split>/{Frame,GT}/<case>/<frame>
                split = folder.relative_to(root).as_posix()
                found.append((split if split != "." else "", _paired_videos(frame_dir, folder / "GT", notes)))
            return
        if depth < _MAX_POLYP_DEPTH:
            for sub in _list_dir(folder, [])[0]:
                walk(sub, depth + 1)

    walk(root, 0)
    for parent, videos in per_sequence.items():
        split = parent.relative_to(root).as_posix()
        found.append((split if split != "." else "", natsorted(videos, key=lambda v: v.id)))
    return found


def _split_alias(split_path: str) -> str | None:
    """``train``/``val``/``test`` for folder names such as ``TrainDataset`` or ``CVC-ClinicDB-612-Valid``."""
    lower = split_path.lower()
    if "train" in lower:
        return "train"
    if re.search(r"(^|[^a-z])(val|valid|validation)([^a-z]|$)", lower):
        return "val"
    if "test" in lower:
        return "test"
    return None


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
    return videos, _with_aliases(splits)


def _with_aliases(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """Add ``train``/``val``/``test`` aliases of split names such as ``Train`` or ``imagenet_vid_val``."""
    aliases: dict[str, list[str]] = {}
    for split, ids in splits.items():
        alias = _split_alias(split)
        if alias is not None and alias not in splits:
            aliases.setdefault(alias, []).extend(ids)
    return {**splits, **aliases}


def _cvat_task_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding a CVAT task export (``annotations.xml``)."""
    return [folder for folder in _list_dir(root, [])[0] if (folder / "annotations.xml").is_file()]


def _read_cvat(root: Path, notes: list[Problem]) -> list[Video]:
    """One video per CVAT task: ``root`` itself (named after it) or each ``<video>/`` sub-folder."""
    tasks = [root] if (root / "annotations.xml").is_file() else _cvat_task_folders(root)
    videos = []
    for folder in tasks:
        images = folder / "images"
        if not images.is_dir():
            raise DataError("a CVAT task export needs its frames in images/ next to annotations.xml", images)
        _, frames = _list_dir(images, notes)
        masks = read_cvat_video(folder / "annotations.xml", frames, notes)
        videos.append(Video(folder.name, frames, list(masks)))
    return videos


def _read_coco(
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
        _, frames = _list_dir(folder, notes)
        names = {frame.name for frame in frames}
        missing = [name for name in labels if name not in names]
        if missing:
            notes.append(Problem("warning", source[video_id], f"{len(missing)} listed frame(s) of video "
                                 f"{video_id or root.name!r} have no file in {folder}, ignored: {', '.join(missing[:5])}"))
        found = [labels.get(frame.name) for frame in frames]
        boxes = [label.box if label else None for label in found] if video_id in box_videos else None
        videos.append(Video(video_id or root.name, frames, [label.mask if label else None for label in found], boxes))
    return videos, _with_aliases(splits), split_files


def _vtus_splits(root: Path) -> list[str]:
    """Split folders ``<split>`` of ``root`` that have a mask folder ``<split>_GT`` beside them."""
    names = {folder.name for folder in _list_dir(root, [])[0]}
    return natsorted(name for name in names if f"{name}_GT" in names)


def _read_vtus(root: Path, splits: list[str], notes: list[Problem]) -> tuple[list[Video], dict[str, list[str]]]:
    """``<split>/<video>/`` frames with ``<split>_GT/<video>/`` masks; ids ``<split>/<video>``."""
    found = [(split, _paired_videos(root / split, root / f"{split}_GT", notes)) for split in splits]
    return _read_polyp(found)


def _video_number(path: Path) -> int | None:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def _read_video_files(root: Path, files: list[Path], notes: list[Problem]) -> list[Video]:
    from flanet.data.video_io import probe_video

    videos = []
    for path in files:
        try:
            info = probe_video(path)
        except DataError as error:
            notes.append(Problem("error", path, f"unreadable video: {error}"))
            continue
        masks: list[Path | None] = [None] * info.frame_count
        mask_dir = root / "masks" / path.stem
        if mask_dir.is_dir():
            for mask in _list_dir(mask_dir, notes)[1]:
                index = _video_number(mask)
                if index is None or not 0 <= index < info.frame_count:
                    message = f"mask name gives no frame number in 0..{info.frame_count - 1}, ignored"
                    notes.append(Problem("warning", mask, message))
                else:
                    masks[index] = mask
        videos.append(Video(path.stem, [], masks, video_file=path))
    return videos


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
        videos = _paired_videos(root / "img_list", root / "mask_list", notes)
        if not (root / "mask_list").is_dir():
            notes.append(Problem("warning", root / "mask_list", "no mask_list folder: frames have no masks"))
    elif (root / "images").is_dir() and (root / "labels").is_dir():
        layout = "buv2022"
        videos = _paired_videos(root / "images", root / "labels", notes)
    elif (root / "annotations.xml").is_file() or _cvat_task_folders(root):
        layout = "cvat"
        videos = _read_cvat(root, notes)
    elif (root / "annotations").is_dir() and (root / "images").is_dir():
        layout = "coco"
        videos, folder_splits, coco_files = _read_coco(root, root / "images", root / "annotations", notes)
    elif (root / "rawframes").is_dir() and any(root.glob("*.json")):
        layout = "cva-net"
        videos, folder_splits, coco_files = _read_coco(root, root / "rawframes", root, notes)
    elif vtus := _vtus_splits(root):
        layout = "vtus"
        videos, folder_splits = _read_vtus(root, vtus, notes)
    elif found := _find_polyp_splits(root, notes):
        layout = "video-polyp"
        videos, folder_splits = _read_polyp(found)
    else:
        subfolders, loose_images = _list_dir(root, [])
        suffixes = VIDEO_EXTENSIONS | DICOM_SUFFIXES
        files = [p for p in root.iterdir() if p.suffix.lower() in suffixes and p.is_file()]
        files = natsorted(files, key=lambda p: p.name)
        listed = [(folder.name, _list_dir(folder, notes)[1]) for folder in subfolders]
        if loose_images:  # the root itself is one video's frames
            listed = [(root.name, loose_images)]
        if files:
            layout = "dicom" if all(p.suffix.lower() in DICOM_SUFFIXES for p in files) else "video-files"
            videos = _read_video_files(root, files, notes)
        elif any(frames for _, frames in listed):
            layout = "frame-folders"
            videos = [Video(name, frames, [None] * len(frames)) for name, frames in listed if frames]
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
    labels = read_labels(label_file) if label_file is not None else {}
    return VideoSet(root, layout, videos, splits, labels, notes, split_files or coco_files)
