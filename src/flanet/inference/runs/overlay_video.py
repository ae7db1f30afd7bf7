"""``overlay.mp4``: the overlay video, written as H.264 so that browsers, players and slides open it.

H.264 (``libx264``, 8-bit 4:2:0, ``+faststart`` so a browser can play it while it loads) through
PyAV, whose wheels carry FFmpeg with the x264 encoder (GPL; PyAV itself is BSD-licensed: a user who
redistributes flanet with PyAV's wheel redistributes x264 under the GPL). Where PyAV or its encoder
is missing, the writer falls back to OpenCV's MPEG-4 Part 2 (``mp4v``), which desktop players open
but Chromium refuses (``MEDIA_ERR_SRC_NOT_SUPPORTED``); it says so once, and :attr:`OverlayVideoWriter.codec`
(recorded in ``summary.json``) names the codec used.

4:2:0 needs an even width and height: an odd side is padded by one black row or column at the
bottom / right, so no pixel of the frame is lost or resampled.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

__all__ = ["H264", "MP4V", "OverlayVideoWriter"]

log = logging.getLogger(__name__)

H264 = "h264 (libx264, PyAV)"
MP4V = "mp4v (MPEG-4 Part 2, OpenCV)"
_CRF = "23"  # x264's default quality: visually clean contours at a few hundred kB per minute


def _h264_stream(path: Path, fps: float, size_wh: tuple[int, int]) -> tuple[Any, Any] | None:
    """An open PyAV container and its H.264 stream, or None without PyAV or x264."""
    try:
        import av
    except ImportError:
        return None
    if "libx264" not in av.codecs_available:
        return None
    container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = size_wh[0] + size_wh[0] % 2, size_wh[1] + size_wh[1] % 2, "yuv420p"
    stream.options = {"crf": _CRF, "preset": "veryfast"}
    return container, stream


class OverlayVideoWriter:
    """mp4 writer at the input's size and frame rate: H.264 when PyAV has x264, else ``mp4v``; a context manager.

    Attributes:
        codec: :data:`H264` or :data:`MP4V`, the codec the file is written with.
    """

    _warned = False

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size_wh = size_wh
        self._av = _h264_stream(self.path, fps, size_wh)
        self._cv: cv2.VideoWriter | None = None
        self.codec = H264 if self._av is not None else MP4V
        if self._av is None:
            if not OverlayVideoWriter._warned:
                OverlayVideoWriter._warned = True
                log.warning("PyAV with the x264 encoder is not installed: overlay.mp4 is written as mp4v, which "
                            "browsers do not play (pip install av)")
            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size_wh)
            if not self._cv.isOpened():
                raise OSError(f"{path}: OpenCV cannot open an mp4v video writer at {size_wh}, {fps} fps")

    def write(self, bgr: np.ndarray) -> None:
        """Append one BGR uint8 frame of the writer's size."""
        if self._cv is not None:
            self._cv.write(bgr)
            return
        import av

        container, stream = self._av  # type: ignore[misc]
        pad = ((0, stream.height - bgr.shape[0]), (0, stream.width - bgr.shape[1]), (0, 0))
        frame = av.VideoFrame.from_ndarray(np.pad(bgr, pad) if any(p[1] for p in pad) else bgr, format="bgr24")
        for packet in stream.encode(frame):
            container.mux(packet)

    def close(self) -> None:
        """Finish the file (flush the encoder, write the index)."""
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        elif self._av is not None:
            container, stream = self._av
            self._av = None
            for packet in stream.encode():
                container.mux(packet)
            container.close()

    def __enter__(self) -> OverlayVideoWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
