"""Reading video files (mp4, avi, ...) and folders of frames, one frame at a time; the suffixes of video files.

Frames come out as uint8 RGB ``(H, W, 3)``. Decoding uses OpenCV's FFmpeg backend; DICOM cine
files (``.dcm``) are decoded by pydicom (:mod:`flanet.data.dicom`). Callers read a video through
:class:`flanet.data.Video` (``iter_frames``, ``read_frame``, ``info``), which calls these.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from pydicom.dataset import Dataset

from flanet.data.dicom import (
    DICOM_SUFFIXES,
    DicomInfo,
    is_dicom_file,
    iter_dicom_frames,
    probe_dicom,
    read_dicom,
    read_dicom_frame,
)
from flanet.data.errors import DataError
from flanet.data.images import read_image

log = logging.getLogger(__name__)

#: Containers OpenCV's FFmpeg backend decodes (by content: the suffix only says which files are videos).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"})
#: Every suffix a video file is listed by in a folder: the containers and DICOM cines.
VIDEO_FILE_SUFFIXES: frozenset[str] = VIDEO_EXTENSIONS | DICOM_SUFFIXES


def is_video_file(path: Path) -> bool:
    """True for a file named as a video or DICOM cine, or a suffix-less file with DICOM's ``DICM`` marker."""
    return path.suffix.lower() in VIDEO_FILE_SUFFIXES or is_dicom_file(path)


class VideoInfo(NamedTuple):
    """What a video says about itself.

    Attributes:
        fps: the stated frame rate, 0.0 when it states none (a frame list, a container without one).
        frame_count: the container's (or header's) count of frames, 0 when unknown; a frame list's length.
        width, height: the frame size in pixels.
        dicom: a DICOM cine's header (region, calibration, burned-in text, withheld tags), else None.
    """

    fps: float
    frame_count: int
    width: int
    height: int
    dicom: DicomInfo | None = None


def _open(path: str | Path) -> tuple[Path, cv2.VideoCapture]:
    path = Path(path)
    if not path.is_file():
        raise DataError("video file not found", path)
    if path.stat().st_size == 0:
        raise DataError("empty video file (0 bytes)", path)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError("cannot open video (unknown format or corrupt file)", path)
    return path, capture


def probe_video(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and size of a video file.

    Raises:
        DataError: for a missing, empty or unreadable file, or one without frames.
    """
    if is_dicom_file(Path(path)):
        dicom = probe_dicom(path)
        return VideoInfo(dicom.fps or 0.0, dicom.frame_count, dicom.width, dicom.height, dicom)
    path, capture = _open(path)
    try:
        info = VideoInfo(
            fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
            frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()
    if info.width <= 0 or info.height <= 0:
        raise DataError("video has no decodable frames", path)
    return info


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video file (or a folder of frames, natural order) one RGB uint8 frame at a time.

    A video file that ends before the frame count its container declares (a truncated copy) is
    read up to its last decodable frame, with a warning giving the count read.

    Raises:
        DataError: for a missing, empty or unreadable file, or a video without any frame.
    """
    path = Path(path)
    if path.is_dir():
        from flanet.data.listing import frame_files

        frames = frame_files(path)
        if not frames:
            raise DataError("folder holds no image frames", path)
        for frame in frames:
            yield read_image(frame)
        return
    if is_dicom_file(path):
        yield from iter_dicom_frames(path)
        return
    path, capture = _open(path)
    try:
        declared, count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if count == 0:
            raise DataError("video has no decodable frames", path)
        if count < declared:
            log.warning("%s: read %d of the %d frames the container declares; the file is probably truncated",
                        path, count, declared)
    finally:
        capture.release()


class VideoFrameReader:
    """Random access to frames of video files (seeks; keeps one capture open per file).

    Used by :class:`flanet.data.ClipDataset` for the ``video-files`` layout. Not picklable
    state is dropped on pickling, so it works in DataLoader workers.
    """

    def __init__(self, max_open: int = 8) -> None:
        self.max_open = max_open
        self._captures: dict[Path, tuple[cv2.VideoCapture, int]] = {}  # least recently used first
        self._dicoms: dict[Path, Dataset] = {}  # open pydicom data sets, least recently used first

    def read(self, path: Path, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) of ``path`` as RGB uint8.

        Raises:
            DataError: for an unreadable file or a frame that cannot be decoded.
        """
        if is_dicom_file(path):
            return self._read_dicom(path, index)
        capture, next_index = self._captures.pop(path, None) or (_open(path)[1], 0)
        if index != next_index:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        if not ok:
            capture.release()
            raise DataError(f"cannot decode frame {index}", path)
        self._captures[path] = (capture, index + 1)
        while len(self._captures) > self.max_open:
            oldest = next(iter(self._captures))
            self._captures.pop(oldest)[0].release()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_dicom(self, path: Path, index: int) -> np.ndarray:
        ds = self._dicoms.pop(path, None)
        self._dicoms[path] = ds if ds is not None else read_dicom(path)[0]
        while len(self._dicoms) > self.max_open:
            self._dicoms.pop(next(iter(self._dicoms)))
        return read_dicom_frame(self._dicoms[path], index, path)

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open, "_captures": {}, "_dicoms": {}}
