"""What ``flanet predict`` reads: a video file, a DICOM cine, a folder of frames, or a dataset root."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flanet.data import DataError, Video, discover
from flanet.data.dicom import DicomInfo
from flanet.data.file_layouts import MixedFolderError
from flanet.data.listing import frame_files
from flanet.data.video_io import VIDEO_EXTENSIONS, is_video_file

__all__ = ["VideoSource", "resolve_sources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSource:
    """One video to segment: a :class:`~flanet.data.Video` (the one frame reader) and what predict adds to it.

    Attributes:
        id: name used for the output sub-folder (the video id or the input's stem).
        location: the file or folder the frames come from (for error messages).
        fps: frame rate of the overlay video (the input's, or the default for frame folders).
        frame_count: number of frames if known in advance (progress bar), else None.
        frame_names: file stem of every frame for frame folders (names of the mask PNGs),
            or None for video files (masks are then numbered).
        video: the video, which decodes the frames lazily one at a time.
    """

    id: str
    location: Path
    fps: float
    frame_count: int | None
    frame_names: list[str] | None
    video: Video = field(repr=False)

    @property
    def dicom(self) -> DicomInfo | None:
        """What a DICOM cine's header says (region, calibration, withheld tags), else None."""
        return self.video.dicom

    def frames(self) -> Iterator[np.ndarray]:
        """Iterate the RGB uint8 (H, W, 3) frames, one decoded at a time."""
        return self.video.iter_frames()


def _source(video: Video, location: Path, default_fps: float) -> VideoSource:
    """The source of ``video``: a frame list at ``default_fps``; a file at its stated rate (DICOM header values
    set aside are logged), else ``default_fps``."""
    if video.video_file is None:
        return VideoSource(video.id, location, default_fps, len(video.frames), video.frame_names, video)
    info = video.info  # DataError for unreadable / truncated files; frames are decoded lazily
    if info.dicom is not None:
        for problem in info.dicom.problems:  # header values set aside (region, calibration, rate), named
            log.warning("%s: %s", video.video_file, problem)
        if info.dicom.fps is None:
            log.warning("%s states no frame rate (FrameTime, CineRate, RecommendedDisplayFrameRate); "
                        "using %g frames/s (--fps)", video.video_file, default_fps)
    fps = float(info.fps) if info.fps > 0 else default_fps
    count = info.frame_count if info.frame_count > 0 else None
    return VideoSource(video.id, Path(video.video_file), fps, count, None, video)


def is_frame_folder(path: Path) -> bool:
    """True for a folder that is itself one video's frames.

    A data set root holding a stray image (e.g. the contact sheet of ``flanet data synth``) next to
    ``img_list/``, ``images/``, split folders or video files is a data set, not a frame folder.
    """
    if not path.is_dir() or not frame_files(path):
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
        if not is_video_file(path):
            raise ValueError(
                f"{path}: unsupported input file type {path.suffix!r}; give a video "
                f"({', '.join(sorted(VIDEO_EXTENSIONS))}), a DICOM cine (.dcm), a folder of frames or a dataset root"
            )
        return [_source(Video.from_file(path), path, fps)]
    if split is None and is_frame_folder(path):
        frames = frame_files(path)
        return [_source(Video(path.name, frames, [None] * len(frames)), path, fps)]
    video_set = discover(path)
    videos = video_set.subset(split) if split else list(video_set.videos)
    if not videos:
        where = f"split {split!r} of " if split else ""
        raise ValueError(f"{path}: {where}dataset holds no videos")
    return [_source(video, Path(video.frames[0]).parent if video.frames else path, fps) for video in videos]
