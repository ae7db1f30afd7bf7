"""Live capture for ``flanet predict --source``: a camera, a network stream, or a file played in real time.

A reader thread takes frames from an OpenCV ``VideoCapture`` as fast as the source delivers
them and keeps only the newest one (a one-frame slot). When the model is slower than the
source, the frames that arrive while a frame is being segmented replace each other in the
slot: the model always gets the newest frame, and the frames it never saw are counted as
dropped. A local video file given as a source is paced at its own frame rate (frame ``k`` is
delivered ``k / fps`` seconds after the first), so it plays like a camera.

Temporal window. FLA-Net predicts ``I_t`` from ``[I_t, I_{t-1}, I_{t-2}]``, the current frame and
its two previous frames (paper, Sec. 3, Fig. 2). Live, :class:`~flanet.inference.VideoSegmenter`
keeps the features of the last frames it segmented, so when frames are dropped the window is
the last three frames *actually segmented*: further apart in time than in training (three source
frames apart when the model runs at a third of the source's rate). We keep it that way on
purpose: the encoder is the dominant cost, and segmenting every output from its true previous frames
would encode three frames per output (the source frames just before an output are not the outputs before it),
about three times the work per result, so more frames would be dropped and latency would grow.
The effect of the wider spacing on accuracy has not been measured; ``frames.csv`` gives each
frame's capture index and ``dropped_before``, so the spacing of every window is known.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from flanet.data import DataError
from flanet.data.dicom import is_dicom_file

__all__ = ["Capture", "LiveCapture", "LiveFrame", "check_live_source", "open_live_source", "redact_source",
           "stop_on_signals"]

log = logging.getLogger(__name__)

#: How often a waiting consumer checks for a stop request (seconds).
_POLL_S = 0.05
#: Frame rates a source may report; outside it (0, or 90000 from some RTSP servers) ``--fps`` is used.
_PLAUSIBLE_FPS = (0.5, 1000.0)


class Capture(Protocol):
    """What :class:`LiveCapture` needs from a ``cv2.VideoCapture`` (tests give a fake one)."""

    def isOpened(self) -> bool: ...  # OpenCV's method names

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def set(self, prop: int, value: float) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class LiveFrame:
    """One frame handed to the model.

    Attributes:
        index: 0-based position among the frames the source delivered (gaps = dropped frames).
        image: RGB uint8 (H, W, 3).
        captured_at: Unix time (s) at which the reader thread received the frame from OpenCV.
        captured_clock: ``time.perf_counter()`` at that moment (latencies are measured on it).
        dropped_before: frames dropped since the previous frame handed to the model.
    """

    index: int
    image: np.ndarray
    captured_at: float
    captured_clock: float
    dropped_before: int


def redact_source(text: str) -> str:
    """The source as it may be written to logs and files: a URL's password replaced by ``***``."""
    parts = urlsplit(text)
    if "://" not in text or parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 and bgr.shape[2] == 3 else bgr


class LiveCapture:
    """Reader thread over an opened capture that keeps the newest frame only (see the module docstring).

    Counters (read them after :meth:`close`, when they are final): ``captured`` frames the source
    delivered, ``taken`` frames handed to the model, ``dropped`` the others; ``captured == taken +
    dropped``. ``ended`` is None, ``"end_of_source"`` (a file's end) or ``"source_lost"`` (a camera
    or stream that stopped delivering; ``error`` then says what OpenCV reported, when it did).

    Args:
        capture: an opened capture whose first frame was already read (``first``).
        first: that first frame, BGR as OpenCV gives it.
        label: the source for messages (password redacted).
        kind: ``"device"``, ``"stream"`` or ``"file"``; the end of a file is a normal end.
        fps: the source's frame rate (or ``--fps``); a file is paced at it.
    """

    def __init__(self, capture: Capture, first: np.ndarray, label: str, kind: str, fps: float) -> None:
        self.label, self.kind, self.fps = label, kind, fps
        self.paced = kind == "file"
        self.captured = self.taken = self.dropped = 0
        self.ended: str | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self._capture = capture
        self._ready = threading.Condition()
        self._closing = threading.Event()
        self._slot: tuple[int, np.ndarray, float, float] | None = None
        self._dropped_since_take = 0
        self._start = time.perf_counter()  # origin of the pacing and of ``duration``
        self.opened_at = time.time()  # the same moment, Unix time
        self._publish(first)
        self._thread = threading.Thread(target=self._read_loop, name="flanet-live-reader", daemon=True)
        self._thread.start()

    def _publish(self, bgr: np.ndarray) -> None:
        with self._ready:
            if self._closing.is_set():
                return
            if self._slot is not None:
                self.dropped += 1
                self._dropped_since_take += 1
            self._slot = (self.captured, bgr, time.time(), time.perf_counter())
            self.captured += 1
            self._ready.notify()

    def _end(self, reason: str, error: str | None = None) -> None:
        with self._ready:
            self.ended, self.error = reason, error
            self._ready.notify()

    def _read_loop(self) -> None:
        index = 1
        try:
            while not self._closing.is_set():
                try:
                    ok, bgr = self._capture.read()
                except Exception as error:  # noqa: BLE001 - any failure of the source ends the run, reported
                    self._end("source_lost", f"{type(error).__name__}: {error}")
                    return
                if not ok or bgr is None:
                    self._end("end_of_source" if self.kind == "file" else "source_lost")
                    return
                if self.paced and self._closing.wait(max(0.0, self._start + index / self.fps - time.perf_counter())):
                    return
                self._publish(bgr)
                index += 1
        finally:
            self._capture.release()

    def _take(self, stop: threading.Event, deadline: float | None) -> LiveFrame | str:
        """The newest frame, or why there is none (``interrupted``, ``duration``, or ``ended``)."""
        with self._ready:
            while True:
                if stop.is_set():
                    return "interrupted"
                if deadline is not None and time.perf_counter() >= deadline:
                    return "duration"
                if self._slot is not None:
                    index, bgr, captured_at, clock = self._slot
                    dropped, self._slot, self._dropped_since_take = self._dropped_since_take, None, 0
                    self.taken += 1
                    break
                if self.ended is not None:
                    return self.ended
                self._ready.wait(_POLL_S)
        return LiveFrame(index, _to_rgb(bgr), captured_at, clock, dropped)

    def frames(
        self, stop: threading.Event, max_frames: int | None = None, duration: float | None = None
    ) -> Iterator[LiveFrame]:
        """Yield the newest frame each time one is asked for, until a stop condition.

        Sets ``stop_reason``: ``interrupted`` (``stop`` set), ``max_frames``, ``duration`` (seconds
        since the source opened), ``end_of_source`` or ``source_lost``.

        Args:
            stop: set it (e.g. from a signal handler) to end the iteration before the next frame.
            max_frames: end after this many frames handed out.
            duration: end this many seconds after the source was opened.
        """
        self.stop_reason = "max_frames"
        deadline = None if duration is None else self._start + duration
        while max_frames is None or self.taken < max_frames:
            frame = self._take(stop, deadline)
            if isinstance(frame, str):
                self.stop_reason = frame
                return
            yield frame

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reader (the capture is released by it) and count a frame left in the slot as dropped."""
        with self._ready:
            self._closing.set()
            if self._slot is not None:
                self._slot = None
                self.dropped += 1
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: the capture is still blocked in a read; it is released when the read returns", self.label)


def _parse_source(text: str) -> tuple[int | str, str]:
    """What ``cv2.VideoCapture`` opens, and the kind of source: ``device``, ``stream`` or ``file``."""
    if text.strip().isdigit():
        return int(text), "device"
    if "://" in text:
        return text, "stream"
    return text, "file"


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence OpenCV's and FFmpeg's own stderr lines while opening (the error line says it all; -v keeps them)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_live_source(source: str) -> None:
    """Refuse a missing file, and a DICOM file, as ``--source`` (before a model is loaded or anything written).

    Raises:
        flanet.data.DataError: naming the source.
    """
    target, kind = _parse_source(source)
    label = redact_source(source)
    if kind == "file" and not Path(source).is_file():
        raise DataError("capture source not found (give a device index, a stream URL or a video file)", label)
    if kind == "file" and is_dicom_file(Path(source)):  # OpenCV would play some unblanked, or fail vaguely
        raise DataError("a DICOM file is segmented as INPUT (`flanet predict FILE.dcm`), where its ultrasound "
                        "regions, calibration and BurnedInAnnotation are honoured; --source plays cameras, streams "
                        "and video files", label)


def open_live_source(
    source: str, default_fps: float = 25.0, open_capture: Callable[[int | str], Capture] | None = None
) -> LiveCapture:
    """Open a capture device index (``"0"``), a stream URL or a video file, read its first frame, start the reader.

    Args:
        source: as given to ``--source``.
        default_fps: frame rate when the source states no plausible one.
        open_capture: opens what ``cv2.VideoCapture`` would (tests give a fake); default OpenCV's.

    Raises:
        flanet.data.DataError: a missing file, a DICOM file, or a source that cannot be opened or delivers no frame.
    """
    target, kind = _parse_source(source)
    label = redact_source(source)
    check_live_source(source)
    what = "no such device, or it is in use" if kind == "device" else "unreachable or not a video"
    try:
        with _quiet_native_stderr():
            capture = (open_capture or cv2.VideoCapture)(target)
            ok, first = (capture.read() if capture.isOpened() else (False, None))
    except cv2.error as error:  # OpenCV refusing the argument itself
        raise DataError(f"cannot open the capture source ({what}; OpenCV: {error})", label) from error
    if not ok or first is None:
        capture.release()
        raise DataError(f"cannot open the capture source or read a frame from it ({what})", label)
    if kind != "file":
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a hint (V4L2 honours it): fewer stale frames queued
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not _PLAUSIBLE_FPS[0] <= fps <= _PLAUSIBLE_FPS[1]:
        log.info("%s states no usable frame rate (%g); using %g frames/s (--fps)", label, fps, default_fps)
        fps = default_fps
    return LiveCapture(capture, first, label, kind, fps)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """While inside, SIGINT (Ctrl-C) and SIGTERM set ``stop`` instead of interrupting.

    The current frame is finished and every file closed; the previous handlers are back after
    the first signal, so a second Ctrl-C interrupts at once. Outside the main thread (where
    Python cannot install handlers) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    current = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: handler for sig, handler in current.items() if handler is not None}  # None: a C handler, kept

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
