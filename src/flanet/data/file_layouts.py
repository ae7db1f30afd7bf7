"""Layouts of video files and plain frame folders: ``video-files``, ``dicom``, ``frame-folders`` and ``mixed``.

The last reader of :data:`flanet.data.layouts.LAYOUTS` (docs/data.md):

- ``video-files``: ``*.mp4``/``*.avi``/... in the root, optional masks in ``masks/<video stem>/``.
- ``dicom``: DICOM cine files ``*.dcm`` in the root, optional masks in ``masks/<file stem>/`` (as video files).
- ``frame-folders``: ``<video>/<frame>``, or frames directly in the root (one video); unlabelled, for inference.
- ``mixed``: video or DICOM files beside frame folders: every one is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from natsort import natsorted

from flanet.data.dicom import DICOM_SUFFIXES
from flanet.data.errors import DataError, Problem
from flanet.data.listing import list_dir, video_folders
from flanet.data.video_io import VIDEO_FILE_SUFFIXES
from flanet.data.videoset import LayoutRead, Video


class MixedFolderError(DataError):
    """A folder whose loose frames sit beside other videos: no reader can tell which video they are."""


@dataclass(frozen=True)
class UnreadableVideo(Problem):
    """An unreadable video or DICOM file, left out of the set: :func:`flanet.data.discover` refuses the folder
    for it unless asked to list it (``flanet data check``). ``reason``: the reader's error."""

    reason: str = ""


def read_files(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """Video and DICOM files in ``root`` and folders of frames (one per video, or the root's own frames).

    Raises:
        MixedFolderError: frames loose in the root beside other videos.
        DataError: two inputs giving one video id.
    """
    subfolders, loose_images = video_folders(root, [])
    files = [p for p in root.iterdir() if p.suffix.lower() in VIDEO_FILE_SUFFIXES and p.is_file()]
    files = natsorted(files, key=lambda p: p.name)
    mask_folder = "masks" if files else None  # masks/<video stem>/ of video files is no video
    listed = [(name, frames) for name, folder in subfolders if name != mask_folder
              for frames in [list_dir(folder, notes)[1]] if frames]
    _refuse_mixed_frames(root, loose_images, files, listed)
    if loose_images:  # the root itself is one video's frames
        listed = [(root.name, loose_images)]
    if not (files or listed):
        return None
    dicom = all(p.suffix.lower() in DICOM_SUFFIXES for p in files)
    layout = "mixed" if files and listed else "frame-folders" if listed else "dicom" if dicom else "video-files"
    videos = _read_video_files(root, files, notes) + [Video(name, frames, [None] * len(frames)) for name, frames in listed]
    _refuse_shared_ids(root, videos)
    return LayoutRead(layout, videos)


def _video_number(path: Path) -> int | None:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def _read_video_files(root: Path, files: list[Path], notes: list[Problem]) -> list[Video]:
    videos = []
    for path in files:
        try:
            video = Video.from_file(path)
        except DataError as error:
            notes.append(UnreadableVideo("error", path, f"unreadable video: {error}", str(error)))
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
