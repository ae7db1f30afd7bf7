"""What ``flanet predict`` reads: a video file, a DICOM cine, a folder of frames, or a dataset root."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from natsort import natsorted

from flanet.data import DataError, Video, discover
from flanet.data.dicom import DicomInfo, is_dicom_file, iter_dicom_frames, probe_dicom
from flanet.data.images import is_image_file
from flanet.data.layouts import VIDEO_EXTENSIONS, MixedFolderError
from flanet.data.video_io import iter_video_frames, probe_video
from flanet.data.videoset import check_unique_stems

__all__ = ["VideoSource", "resolve_sources"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class VideoSource:
    """One video to segment, decoded lazily one frame at a time.

    Attributes:
        id: name used for the output sub-folder (the video id or the input's stem).
        location: the file or folder the frames come from (for error messages).
        fps: frame rate of the overlay video (the input's, or the default for frame folders).
        frame_count: number of frames if known in advance (progress bar), else None.
        frame_names: file stem of every frame for frame folders (names of the mask PNGs),
            or None for video files (masks are then numbered).
        dicom: what a DICOM cine's header says (region, calibration, withheld tags), else None.
    """

    id: str
    location: Path
    fps: float
    frame_count: int | None
    frame_names: list[str] | None
    _open: Callable[[], Iterator[np.ndarray]] = field(repr=False)
    dicom: DicomInfo | None = None

    def frames(self) -> Iterator[np.ndarray]:
        """Iterate the RGB uint8 (H, W, 3) frames, one decoded at a time."""
        return self._open()


def _dicom_source(path: Path, video_id: str, default_fps: float) -> VideoSource:
    info = probe_dicom(path)  # DataError for unreadable / truncated files; frames are decoded lazily
    for problem in info.problems:  # header values set aside (region, calibration, rate), named
        log.warning("%s: %s", path, problem)
    if info.fps is None:
        log.warning("%s states no frame rate (FrameTime, CineRate, RecommendedDisplayFrameRate); "
                    "using %g frames/s (--fps)", path, default_fps)
    fps = info.fps or default_fps
    return VideoSource(video_id, path, fps, info.frame_count, None, lambda: iter_dicom_frames(path), info)


def _video_file_source(path: Path, video_id: str, default_fps: float) -> VideoSource:
    if is_dicom_file(path):
        return _dicom_source(path, video_id, default_fps)
    info = probe_video(path)  # DataError for unreadable / zero-byte files
    fps = float(info.fps) if info.fps and info.fps > 0 else default_fps
    count = int(info.frame_count) if info.frame_count and info.frame_count > 0 else None
    return VideoSource(video_id, path, fps, count, None, lambda: iter_video_frames(path))


def _frame_list_source(frames: list[Path], video_id: str, location: Path, fps: float) -> VideoSource:
    check_unique_stems(frames)
    video = Video(video_id, frames, [None] * len(frames))
    return VideoSource(video_id, location, fps, len(frames), video.frame_names, video.iter_frames)


def _dataset_video_source(video: Video, root: Path, fps: float) -> VideoSource:
    if video.video_file is not None:
        return _video_file_source(Path(video.video_file), video.id, fps)
    location = Path(video.frames[0]).parent if video.frames else root
    return VideoSource(video.id, location, fps, len(video.frames), video.frame_names, video.iter_frames)


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, in natural order (frame_2 before frame_10)."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and is_image_file(p) and not p.name.startswith(".")
    ]
    return natsorted(files, key=lambda p: p.name)


def is_frame_folder(path: Path) -> bool:
    """True for a folder that is itself one video's frames.

    A data set root holding a stray image (e.g. the contact sheet of ``flanet data synth``) next to
    ``img_list/``, ``images/``, split folders or video files is a data set, not a frame folder.
    """
    if not path.is_dir() or not image_files(path):
        return False
    try:
        return discover(path).layout == "frame-folders"  # loose frames at the root make it one video
    except MixedFolderError:
        raise  # loose frames beside other videos: refused, never a part of the folder read
    except DataError:
        return True


def resolve_sources(input_path: Path, fps: float = 25.0, split: str | None = None) -> list[VideoSource]:
    """Turn the INPUT of ``flanet predict`` into the videos to segment.

    Args:
        input_path: a video file (mp4/avi/mov/mkv/m4v), a DICOM file, a folder holding frame images
            directly, or a dataset root in any layout ``flanet.data.discover`` reads.
        fps: frame rate given to frame folders and to video files that do not state one.
        split: for a dataset root, the split to segment (None = every video).

    Raises:
        FileNotFoundError: the input does not exist.
        ValueError: unsupported file type, empty folder, or an empty split.
        flanet.data.DataError: unreadable video or dataset (raised by flanet.data).
    """
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: input does not exist")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS and not is_dicom_file(path):
            raise ValueError(
                f"{path}: unsupported input file type {path.suffix!r}; give a video "
                f"({', '.join(sorted(VIDEO_EXTENSIONS))}), a DICOM cine (.dcm), a folder of frames or a dataset root"
            )
        return [_video_file_source(path, path.stem, fps)]
    if split is None and is_frame_folder(path):
        return [_frame_list_source(image_files(path), path.name, path, fps)]
    video_set = discover(path)
    videos = video_set.subset(split) if split else list(video_set.videos)
    if not videos:
        where = f"split {split!r} of " if split else ""
        raise ValueError(f"{path}: {where}dataset holds no videos")
    return [_dataset_video_source(video, path, fps) for video in videos]
