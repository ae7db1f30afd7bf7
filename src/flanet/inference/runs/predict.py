"""``predict_to_folder``: segment videos and write masks, overlay video, CSV and summary.

Output layout (one video input; for a dataset root each video gets a sub-folder
``<out>/<video id>/`` with the same files, and ``<out>/summary.json`` covers them all)::

    <out>/masks/<frame>.png   binary masks (0/255) at the input frame's size
    <out>/overlay.mp4         input frames + lesion contour + heatmap peak + frame number
    <out>/frames.csv          per-frame statistics (see FrameStats)
    <out>/summary.json        frames, frames with lesion, largest area, fps achieved, settings; with a
                              diagnosis head, each video's label probabilities and the frames that weighed most
    <out>/diagnosis.csv       with a diagnosis head: one row per video (probabilities, calls, top frames)
    <out>/viewer.html         interactive viewer of every video (flanet.evaluation.viewer)
    <out>/export/coco.json, cvat.xml   with ``export``: the masks for annotation tools
                              (flanet.inference.runs.annotation_export)
    <out>/dicom/seg.dcm, sr.dcm   with ``dicom_outputs`` (DICOM cines): DICOM Segmentation and TID 1500 SR
                              (flanet.inference.runs.dicom_outputs)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from flanet.data import DataError
from flanet.data.deidentify import blank_outside
from flanet.data.videoset import frame_name
from flanet.evaluation.report import write_rows_csv
from flanet.evaluation.viewer import ViewerCollector, write_prediction_viewer
from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, output_marker, prepare_output_folder
from flanet.inference.core.segmenter import FrameResult, VideoSegmenter, as_rgb_frame
from flanet.inference.core.settings import SegmenterSettings
from flanet.inference.runs.annotation_export import export_video
from flanet.inference.runs.burned_in import DEFAULT_POLICY, BurnedInPolicy, burned_in_regions
from flanet.inference.runs.diagnosis import StreamDiagnoser
from flanet.inference.runs.dicom_outputs import DicomOutputs, DicomResultCollector, run_algorithm
from flanet.inference.runs.measurements import MeasurementLog, source_geometry
from flanet.inference.runs.outputs import FrameTableWriter, draw_overlay, frame_stats
from flanet.inference.runs.overlay_video import OverlayVideoWriter
from flanet.inference.runs.sources import VideoSource, resolve_sources
from flanet.models.contract import VideoSegmentationModel

__all__ = ["predict_to_folder", "run_settings", "OUTPUT_MARKER"]

log = logging.getLogger(__name__)

OUTPUT_MARKER = output_marker("predict")  # marks a folder written by predict; only such folders are replaced by --force


class _RecentFrames:
    """Pass frames through while keeping the last ``keep`` of them by index (frames in flight run ahead of results)."""

    def __init__(self, frames: Iterator[np.ndarray], keep: int) -> None:
        self._frames, self._keep = frames, keep
        self.recent: dict[int, np.ndarray] = {}

    def __iter__(self) -> Iterator[np.ndarray]:
        for index, frame in enumerate(self._frames):
            self.recent[index] = frame
            self.recent.pop(index - self._keep, None)
            yield frame


class _LastFrame:
    """Pass frames through while remembering the newest one (the overlay needs it)."""

    def __init__(self, frames: Iterator[np.ndarray]) -> None:
        self._frames = frames
        self.frame: np.ndarray | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self.frame = frame
            yield frame


def _predict_video(
    segmenter: VideoSegmenter, source: VideoSource, video_dir: Path, progress: bool, full_frame: bool = False,
    viewer: ViewerCollector | None = None, burned_in: BurnedInPolicy = DEFAULT_POLICY,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> dict:
    """Segment one video into ``video_dir`` (and its kept frames into ``viewer``); returns its summary entry.

    ``on_frame`` gets every full-frame prediction (the DICOM results keep their lesion frames).

    The overlay and the viewer's frames are blanked outside the ultrasound regions of a file with
    burned-in identifiers (:mod:`flanet.inference.runs.burned_in`); such a file without regions is
    refused (DataError) unless ``burned_in.allow``.
    """
    keep, burned_in_entry = burned_in_regions(source, burned_in)
    geometry = source_geometry(source, use_region=not full_frame)
    measurements = MeasurementLog(geometry)
    masks_dir = video_dir / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    frames = _LastFrame(source.frames())
    bar = tqdm(total=source.frame_count, desc=source.id, unit="frame", disable=not progress, leave=False)
    writer: OverlayVideoWriter | None = None
    count = with_lesion = full_context = 0
    largest_area, largest_frame = 0, None
    diagnoser = StreamDiagnoser(segmenter.model, segmenter.diagnosis, segmenter.image_size) \
        if segmenter.diagnosis is not None else None
    model_frames = _RecentFrames(geometry.model_frames(frames), keep=segmenter.frames_in_flight + 2)
    start = time.perf_counter()
    try:
        columns = [*geometry.columns, *(diagnoser.columns if diagnoser is not None else [])]
        with FrameTableWriter(video_dir / "frames.csv", columns) as table:
            for result in segmenter.stream(model_frames):
                running = {} if diagnoser is None else diagnoser.update(
                    as_rgb_frame(model_frames.recent[result.index], result.index), result)
                rgb = blank_outside(as_rgb_frame(frames.frame, result.index), keep)  # what people see: no identifiers
                result = geometry.full_frame(result, rgb.shape[0], rgb.shape[1])
                if on_frame is not None:
                    on_frame(result)
                name = frame_name(source.frame_names, result.index)
                stats = frame_stats(result, source=name)
                if writer is None:
                    writer = OverlayVideoWriter(video_dir / "overlay.mp4", source.fps, (rgb.shape[1], rgb.shape[0]))
                writer.write(draw_overlay(rgb, result, stats))
                if viewer is not None:
                    viewer.add_streamed(source.id, name, result.index, stats.area_px, result.mask, result.heatmap_full, rgb)
                measures = geometry.measure(result.mask)
                table.write(stats, {**measures, **running})
                measurements.add(result.index, measures)
                mask_path = masks_dir / f"{name}.png"
                if not cv2.imwrite(str(mask_path), result.mask.astype(np.uint8) * 255):
                    raise OSError(f"{mask_path}: could not write the mask")
                count += 1
                with_lesion += stats.lesion_present
                full_context += result.context_frames >= segmenter.num_frames
                if stats.area_px > largest_area:
                    largest_area, largest_frame = stats.area_px, result.index
                bar.update()
    except DataError:  # unreadable frame or video: the data layer names the file
        raise
    except ValueError as error:  # malformed / changing-size frames, named by the segmenter
        raise ValueError(f"{source.location}: {error}") from error
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - start
    if count == 0:
        raise ValueError(f"{source.location}: no frames could be read")
    if count < segmenter.num_frames:
        log.warning(
            "%s has only %d frame(s); the model uses %d, so the first frame is repeated as its "
            "temporal context (causal edge policy)", source.location, count, segmenter.num_frames,
        )
    return {
        "video": source.id, "input": str(source.location), "output": str(video_dir),
        "frames": count, "frames_declared": source.frame_count,
        "truncated": source.frame_count is not None and count < source.frame_count,  # frames missing at the end
        "frames_with_lesion": with_lesion, "largest_area_px": largest_area,
        "largest_area_frame": largest_frame, "frames_with_full_context": full_context,
        "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "input_fps": source.fps,
        "overlay_codec": None if writer is None else writer.codec,
        "fps_achieved": count / elapsed if elapsed > 0 else None, "seconds": elapsed,
        **measurements.summary(source), "burned_in_annotation": burned_in_entry,
        **({"diagnosis": diagnoser.summary()} if diagnoser is not None else {}),
    }


def predict_to_folder(
    model: VideoSegmentationModel | str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    fps: float = 25.0,
    split: str | None = None,
    progress: bool = True,
    full_frame: bool = False,
    export: Sequence[str] = (),
    burned_in: BurnedInPolicy = DEFAULT_POLICY,
    settings: SegmenterSettings | None = None,
    dicom_outputs: DicomOutputs | None = None,
    **options: Any,
) -> Path:
    """Segment a video file, a folder of frames or a dataset root and write the results.

    Args:
        model: a flanet model, or the path of a flanet checkpoint (loaded safely; run at its training
            size, :meth:`VideoSegmenter.from_checkpoint`).
        input_path: video file, frame folder or dataset root (see ``resolve_sources``).
        out_dir: output folder; must not exist (or be empty) unless ``force``.
        force: replace an existing output folder previously written by this function.
        fps: frame rate of overlays made from frame folders (videos keep their own).
        split: for a dataset root, segment only this split.
        progress: show a tqdm progress bar (frames/s).
        full_frame: give the model the whole DICOM frame, not its ultrasound imaging region.
        export: annotation files to write per video, any of ``"coco"``, ``"cvat"``
            (see :mod:`flanet.inference.runs.annotation_export`).
        dicom_outputs: DICOM objects to write per cine (SEG, SR), their identity rule
            (:mod:`flanet.inference.runs.dicom_outputs`); every input must then be a DICOM cine.
        settings: the segmenter's settings (image size, device, threshold, backend, compile, frames in
            flight, ...: :class:`~flanet.inference.core.settings.SegmenterSettings`).
        **options: fields of ``settings`` given as keywords (``image_size=``, ``device=``, ``threshold=``, ...).

    Returns:
        The output folder.
    """
    checkpoint = str(model) if isinstance(model, (str, Path)) else None
    input_path = Path(input_path)
    sources = resolve_sources(input_path, fps=fps, split=split)  # a bad input is named before any export
    for source in sources:  # a burned-in file that cannot be de-identified is refused before anything is written
        burned_in_regions(source, burned_in)
    dicom = dicom_outputs if dicom_outputs is not None and dicom_outputs.wanted else None
    segmenter = VideoSegmenter.create(model, settings, **options)
    collectors = [DicomResultCollector(dicom, source, segmenter.threshold) if dicom else None for source in sources]
    out = prepare_output_folder(out_dir, "predict", inputs=[input_path, checkpoint], force=force)  # --force: never the checkpoint
    mark_incomplete(out, "flanet predict")
    videos = []
    counts = [source.frame_count for source in sources]
    viewer = ViewerCollector(sum(counts) if None not in counts else None)  # type: ignore[arg-type]
    start = time.perf_counter()
    algorithm = run_algorithm(segmenter, checkpoint) if dicom else None
    for source, collector in tqdm(list(zip(sources, collectors)), desc="videos", unit="video",
                                  disable=not progress or len(sources) == 1):
        single = len(sources) == 1 and source.location == input_path  # a data set gets a folder per video
        video_dir = out if single else out / source.id
        video = _predict_video(segmenter, source, video_dir, progress, full_frame, viewer, burned_in,
                               on_frame=None if collector is None else collector.add)
        if collector is not None and algorithm is not None:
            video["dicom_outputs"] = collector.write(video_dir, video, algorithm)
        videos.append(video)
    elapsed = time.perf_counter() - start
    for source, video in zip(sources, videos):
        video["exports"] = export_video(source, Path(video["output"]), video["frames"], export)
    total = sum(v["frames"] for v in videos)
    summary = {
        **run_settings(segmenter, checkpoint), "input": str(input_path),
        "frames": total, "frames_with_lesion": sum(v["frames_with_lesion"] for v in videos),
        "largest_area_px": max(v["largest_area_px"] for v in videos),
        "fps_achieved": total / elapsed if elapsed > 0 else None, "videos": videos,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    if segmenter.diagnosis is not None:
        write_rows_csv(out / "diagnosis.csv", diagnosis_rows(videos))
    write_prediction_viewer(out, viewer, videos)
    mark_complete(out)
    return out


def diagnosis_rows(videos: list[dict]) -> list[dict[str, Any]]:
    """``diagnosis.csv``: per video the probability and call (at the validation threshold) of each label, top frames."""
    rows = []
    for video in videos:
        found = video["diagnosis"]
        row: dict[str, Any] = {"video": video["video"]}
        for label, entry in found["labels"].items():
            row[f"{label}_probability"] = f"{entry['probability']:.4f}"
            row[f"{label}_positive"] = "" if entry["positive"] is None else int(entry["positive"])
        row["top_frames"] = " ".join(f"{t['frame']}:{t['weight']:.3f}" for t in found["top_frames"])
        rows.append(row)
    return rows


def run_settings(segmenter: VideoSegmenter, checkpoint: str | None) -> dict[str, Any]:
    """What every ``summary.json`` of predict says about the model and how it ran."""
    return {"checkpoint": checkpoint, "model": segmenter.model.config, "image_size": segmenter.image_size,
            "device": str(segmenter.device), "backend": segmenter.backend, "threshold": segmenter.threshold,
            "streaming": segmenter.reuse_features, "edge": "causal"}
