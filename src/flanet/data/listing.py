"""Listing frame folders: sub-folders and images in natural order, masks paired with frames by stem."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from natsort import natsorted

from flanet.data.errors import Problem
from flanet.data.images import is_image_file
from flanet.data.labels import CLASS_FOLDERS
from flanet.data.videoset import Video

STRAY_NAMES: frozenset[str] = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})


def _is_loop(entry: os.DirEntry) -> bool:
    """True for a symbolic link that resolves to itself (directly or through other links)."""
    if not entry.is_symlink():
        return False
    try:
        entry.stat()
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def list_dir(folder: Path, notes: list[Problem]) -> tuple[list[Path], list[Path]]:
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
            elif _is_loop(entry):
                notes.append(Problem("error", path, "symbolic link loop, ignored"))
            elif entry.is_dir():
                folders.append(path)
            elif is_image_file(path):
                images.append(path)
            else:
                notes.append(Problem("note", path, "not an image file, ignored"))
    return natsorted(folders, key=lambda p: p.name), natsorted(images, key=lambda p: p.name)


def frame_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, natural order (``frame_2`` before ``frame_10``): one video's
    frames, listed as every layout lists them (:func:`list_dir`: hidden and stray system files left out)."""
    return list_dir(folder, [])[1]


def match_masks(video_id: str, frames: list[Path], mask_dir: Path | None, notes: list[Problem]) -> list[Path | None]:
    """Pair each frame with the mask of the same file stem in ``mask_dir``."""
    if mask_dir is None or not mask_dir.is_dir():
        return [None] * len(frames)
    _, mask_files = list_dir(mask_dir, notes)
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


def is_class_folder(folder: Path, notes: list[Problem]) -> bool:
    """True for a ``benign/`` or ``malignant/`` folder that holds video folders and no frames (docs/data.md)."""
    if folder.name.lower() not in CLASS_FOLDERS:
        return False
    subfolders, images = list_dir(folder, [])
    return bool(subfolders) and not images


def video_folders(root: Path, notes: list[Problem]) -> tuple[list[tuple[str, Path]], list[Path]]:
    """``(video id, folder)`` of every video folder under ``root`` and the loose images of ``root``.

    A class folder (:func:`is_class_folder`) is a level above its videos: ``benign/case1/`` is
    video ``benign/case1`` (its label comes from the folder name, :func:`flanet.data.labels.folder_labels`).
    """
    folders, loose = list_dir(root, notes)
    found: list[tuple[str, Path]] = []
    for folder in folders:
        if is_class_folder(folder, notes):
            found += [(f"{folder.name}/{sub.name}", sub) for sub in list_dir(folder, notes)[0]]
        else:
            found.append((folder.name, folder))
    return found, loose


def paired_videos(image_root: Path, mask_root: Path, notes: list[Problem]) -> list[Video]:
    """Videos ``image_root/<video>/`` with masks in ``mask_root/<video>/`` (``<video>`` may be ``benign/<name>``)."""
    folders, loose = video_folders(image_root, notes)
    for path in loose:
        notes.append(Problem("warning", path, "image outside any video folder, ignored"))
    videos = []
    for video_id, folder in folders:
        _, frames = list_dir(folder, notes)
        mask_dir = mask_root / video_id
        if not mask_dir.is_dir():
            message = f"no mask folder for video {video_id!r}: its frames have no masks"
            notes.append(Problem("warning", mask_dir, message))
        videos.append(Video(video_id, frames, match_masks(video_id, frames, mask_dir, notes)))
    if mask_root.is_dir():
        image_names = {video_id for video_id, _ in folders}
        for video_id, folder in video_folders(mask_root, [])[0]:
            if video_id not in image_names:
                notes.append(Problem("warning", folder, "mask folder without a frame folder, ignored"))
    return videos
