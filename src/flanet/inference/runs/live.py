"""``predict_live``: segment a camera, a stream or a file in real time and write what ``flanet predict`` writes.

Output (one folder, as for one video, see :mod:`flanet.inference.runs.predict`)::

    <out>/masks/<capture number>.png  binary masks of the segmented frames, 1-based (gaps = dropped frames)
    <out>/overlay.mp4                 the segmented frames with contour and peak, at the source's frame rate
                                      (only ``--keep-region`` of each frame with that option: burned-in text)
    <out>/frames.csv                  per-frame statistics plus capture_time, latency_ms, dropped_before
    <out>/summary.json                frames captured / segmented / dropped, latency p50 / p95, stop reason

No ``viewer.html``: a live source cannot be replayed to draw it. Real-time behaviour (newest
frame, drops, temporal window) is described in :mod:`flanet.inference.runs.capture`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from flanet.data.deidentify import blank_outside
from flanet.data.dicom import Region
from flanet.data.videoset import frame_name
from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, prepare_output_folder
from flanet.inference.core.segmenter import VideoSegmenter, as_rgb_frame
from flanet.inference.core.settings import SegmenterSettings
from flanet.inference.runs.burned_in import DEFAULT_POLICY, BurnedInPolicy, burned_in_regions
from flanet.inference.runs.capture import (
    Capture,
    LiveCapture,
    LiveFrame,
    check_live_source,
    open_live_source,
    redact_source,
    stop_on_signals,
)
from flanet.inference.runs.diagnosis import StreamDiagnoser
from flanet.inference.runs.measurements import FrameGeometry, MeasurementLog
from flanet.inference.runs.outputs import FrameTableWriter, draw_overlay, frame_stats
from flanet.inference.runs.overlay_video import OverlayVideoWriter
from flanet.inference.runs.predict import run_settings
from flanet.models.contract import VideoSegmentationModel

__all__ = ["LIVE_COLUMNS", "SourceLostError", "predict_live"]

log = logging.getLogger(__name__)

#: Columns ``frames.csv`` gets in live mode (after the columns of every predict).
LIVE_COLUMNS = ("capture_time", "latency_ms", "dropped_before")


class SourceLostError(RuntimeError):
    """A camera or stream stopped delivering frames mid-run (exit status 1); the outputs so far are complete."""


def _iso(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class _Run:
    """What a live run measured, for ``summary.json``."""

    measurements: MeasurementLog
    latencies: list[float] = field(default_factory=list)
    frames_with_lesion: int = 0
    largest_area_px: int = 0
    largest_area_frame: int | None = None
    size: tuple[int, int] | None = None  # (height, width) of the frames
    diagnoser: StreamDiagnoser | None = None  # the running diagnosis, with a checkpoint's head


def _segment(
    segmenter: VideoSegmenter, live: LiveCapture, out: Path, frames: Iterator[LiveFrame], progress: bool,
    total: int | None, keep: tuple[Region, ...] = (),
) -> _Run:
    """Segment the frames ``frames`` hands out into ``out``; the overlay shows only ``keep`` (all when empty)."""
    geometry = FrameGeometry()  # whole frame, pixel units (no calibration outside DICOM)
    run = _Run(MeasurementLog(geometry))
    if segmenter.diagnosis is not None:
        run.diagnoser = StreamDiagnoser(segmenter.model, segmenter.diagnosis, segmenter.image_size)
    diagnosis_columns = run.diagnoser.columns if run.diagnoser is not None else []
    masks_dir = out / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    taken: list[LiveFrame] = []

    def images() -> Iterator[np.ndarray]:  # VideoSegmenter.stream pulls one frame per result
        for frame in frames:
            taken[:] = [frame]
            yield frame.image

    writer: OverlayVideoWriter | None = None
    bar = tqdm(total=total, desc=live.label, unit="frame", disable=not progress, leave=False)
    try:
        with FrameTableWriter(out / "frames.csv", [*LIVE_COLUMNS, *geometry.columns, *diagnosis_columns]) as table:
            for result in segmenter.stream(images()):
                frame = taken[0]
                latency_ms = (time.perf_counter() - frame.captured_clock) * 1000.0
                result = replace(result, index=frame.index)  # rows, masks and overlay carry the capture index
                rgb = blank_outside(as_rgb_frame(frame.image, frame.index), keep)  # what people see: no identifiers
                stats = frame_stats(result, source=frame_name(None, frame.index))
                if writer is None:
                    run.size = rgb.shape[:2]
                    writer = OverlayVideoWriter(out / "overlay.mp4", live.fps, (rgb.shape[1], rgb.shape[0]))
                writer.write(draw_overlay(rgb, result, stats))
                measures = geometry.measure(result.mask)
                live_values = {"capture_time": _iso(frame.captured_at), "latency_ms": round(latency_ms, 3),
                               "dropped_before": frame.dropped_before}
                running = run.diagnoser.update(rgb, result) if run.diagnoser is not None else {}
                table.write(stats, {**live_values, **measures, **running})
                table.flush()  # a live CSV can be followed while it grows
                mask_path = masks_dir / f"{stats.source}.png"
                if not cv2.imwrite(str(mask_path), result.mask.astype(np.uint8) * 255):
                    raise OSError(f"{mask_path}: could not write the mask")
                run.latencies.append(latency_ms)
                run.measurements.add(frame.index, measures)
                run.frames_with_lesion += stats.lesion_present
                if stats.area_px > run.largest_area_px:
                    run.largest_area_px, run.largest_area_frame = stats.area_px, frame.index
                bar.update()
                bar.set_postfix(dropped=live.dropped, refresh=False)
    except ValueError as error:  # malformed frames or a resolution change mid-run, named by the segmenter
        raise ValueError(f"{live.label}: {error}") from error
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return run


def _summary(live: LiveCapture, run: _Run, out: Path, seconds: float) -> dict[str, Any]:
    """The live part of ``summary.json`` (the model settings are added by :func:`predict_live`)."""
    latencies = np.asarray(run.latencies, np.float64)
    segmented = int(latencies.size)
    p50, p95 = (round(float(v), 3) for v in np.percentile(latencies, [50, 95])) if segmented else (None, None)
    height, width = run.size or (None, None)
    measured: dict[str, Any] = dict(run.measurements.geometry.summary())
    for name, best in run.measurements.largest.items():  # as MeasurementLog.summary, without a DICOM source
        measured[f"largest_{name}"] = None if best is None else best[0]
        measured[f"largest_{name}_frame"] = None if best is None else best[1]
    return {
        "input": live.label, "source": live.label, "source_kind": live.kind, "source_fps": live.fps,
        "paced": live.paced, "started_at": _iso(live.opened_at), "stop_reason": live.stop_reason,
        "source_error": live.error, "frames": segmented, "frames_captured": live.captured,
        "frames_segmented": segmented, "frames_dropped": live.dropped,
        "latency_ms_p50": p50, "latency_ms_p95": p95,
        "latency_ms_max": round(float(latencies.max()), 3) if segmented else None,
        "frames_with_lesion": run.frames_with_lesion, "largest_area_px": run.largest_area_px,
        "largest_area_frame": run.largest_area_frame, "width": width, "height": height,
        "fps_achieved": segmented / seconds if seconds > 0 else None, "seconds": seconds,
        **measured, "output": str(out),
    }


def _stop_event(stop: threading.Event | None) -> contextlib.AbstractContextManager[threading.Event]:
    """The caller's event as is, or a fresh one that SIGINT / SIGTERM set (:func:`stop_on_signals`)."""
    return stop_on_signals(threading.Event()) if stop is None else contextlib.nullcontext(stop)


def predict_live(
    model: VideoSegmentationModel | str | Path,
    source: str,
    out_dir: str | Path,
    *,
    force: bool = False,
    fps: float = 25.0,
    progress: bool = True,
    max_frames: int | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
    open_capture: Callable[[int | str], Capture] | None = None,
    settings: SegmenterSettings | None = None,
    burned_in: BurnedInPolicy = DEFAULT_POLICY,
    **options: Any,
) -> Path:
    """Segment a live source in real time (newest frame, stale frames dropped) until it is stopped.

    The run ends at ``max_frames`` segmented frames, after ``duration`` seconds, at the end of a
    file, when ``stop`` is set, or on SIGINT / SIGTERM when ``stop`` is None (then handled here, in
    the main thread). Each of these ends cleanly: the overlay finalised, the CSV flushed and
    ``summary.json`` written (with ``stop_reason``), no ``INCOMPLETE`` marker.

    Args:
        model: a flanet model, or the path of a flanet checkpoint (loaded safely; run at its training size).
        source: a capture device index (``"0"``), a stream URL (RTSP/HTTP, as OpenCV opens them)
            or a video file (paced at its frame rate).
        out_dir: output folder; must not exist (or be empty) unless ``force``.
        force: replace an output folder written by an earlier ``flanet predict``.
        fps: frame rate used when the source states none (overlay and file pacing).
        progress: show a tqdm bar (frames segmented, dropped).
        max_frames: stop after this many segmented frames.
        duration: stop this many seconds after the source opened.
        stop: an event that ends the run when set (from another thread).
        open_capture: opens what ``cv2.VideoCapture`` would (tests); default OpenCV's.
        settings: the segmenter's settings (:class:`~flanet.inference.core.settings.SegmenterSettings`);
            with ``compile`` the first frames wait for the compilation, so frames are dropped at the start.
        burned_in: what the overlay shows (:mod:`flanet.inference.runs.burned_in`): a live source declares
            nothing and has no ultrasound regions, so only ``keep_region`` blanks it, and
            ``blank_always`` without it is refused (unless ``allow``).
        **options: fields of ``settings`` given as keywords (``image_size=``, ``device=``, ``threshold=``, ...).

    Returns:
        The output folder.

    Raises:
        flanet.data.DataError: the source cannot be opened or delivers no frame, is a DICOM file (segment it as
            ``flanet predict``'s INPUT), or cannot be blanked as ``burned_in`` asks (nothing written).
        SourceLostError: a camera or stream stopped delivering frames; the outputs up to then are
            complete (summary ``stop_reason: source_lost``).
    """
    checkpoint = str(model) if isinstance(model, (str, Path)) else None
    check_live_source(source)  # a missing file or a DICOM file: before the model is loaded
    keep, burned_in_entry = burned_in_regions(None, burned_in, redact_source(source))  # refused before anything
    segmenter = VideoSegmenter.create(model, settings, **options)
    live = open_live_source(source, fps, open_capture)  # nothing is written when it cannot be opened
    try:
        inputs = [Path(source), checkpoint] if live.kind == "file" else [checkpoint]
        out = prepare_output_folder(out_dir, "predict", inputs=inputs, force=force)
        mark_incomplete(out, "flanet predict")
        log.info("segmenting %s live (%g frames/s); Ctrl-C stops and closes every file", live.label, live.fps)
        start = time.perf_counter()
        with _stop_event(stop) as event:
            run = _segment(segmenter, live, out, live.frames(event, max_frames, duration), progress, max_frames, keep)
        seconds = time.perf_counter() - start
        if live.stop_reason == "interrupted":
            log.info("stopped on request after %d segmented frame(s); files closed", len(run.latencies))
    finally:
        live.close()
    summary = {**run_settings(segmenter, checkpoint), "live": True, **_summary(live, run, out, seconds),
               "burned_in_annotation": burned_in_entry,
               **({"diagnosis": run.diagnoser.summary()} if run.diagnoser is not None else {})}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    mark_complete(out)
    if live.stop_reason == "source_lost":
        raise SourceLostError(
            f"capture source {live.label} stopped delivering frames after {live.captured} frame(s); "
            f"the {summary['frames_segmented']} segmented frame(s) and the summary are saved in {out}"
        )
    return out
