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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from flanet.data import DataError
from flanet.data.deidentify import blank_outside
from flanet.data.videoset import frame_name
from flanet.evaluation.report import write_rows_csv
from flanet.evaluation.viewer import FrameImages, ViewerCollector, write_prediction_viewer
from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, output_marker, prepare_output_folder
from flanet.inference.core.overlap import ordered_map, read_ahead
from flanet.inference.core.segmenter import FrameResult, VideoSegmenter, as_rgb_frame
from flanet.inference.core.settings import SegmenterSettings
from flanet.inference.runs.annotation_export import export_video
from flanet.inference.runs.burned_in import DEFAULT_POLICY, BurnedInPolicy, burned_in_regions
from flanet.inference.runs.diagnosis import StreamDiagnoser
from flanet.inference.runs.dicom_outputs import DicomOutputs, DicomResultCollector, run_algorithm
from flanet.inference.runs.measurements import MeasurementLog, source_geometry
from flanet.inference.runs.outputs import FrameStats, FrameTableWriter, draw_overlay, frame_stats
from flanet.inference.runs.overlay_video import OverlayVideoWriter
from flanet.inference.runs.sources import VideoSource, resolve_sources
from flanet.models.contract import VideoSegmentationModel
from flanet.threads import available_cpus

__all__ = ["predict_to_folder", "run_settings", "OUTPUT_MARKER"]

log = logging.getLogger(__name__)

OUTPUT_MARKER = output_marker("predict")  # marks a folder written by predict; only such folders are replaced by --force


class _InputFrames:
    """Pass a source's frames through while keeping, in order, those whose result has not come out yet.

    The overlay and the viewer need each result's full input frame; with frames read ahead of the model
    (``prefetch``) the newest frame read is no longer the frame of the newest result.
    """

    def __init__(self, frames: Iterator[np.ndarray]) -> None:
        self._frames = frames
        self._waiting: deque[np.ndarray] = deque()

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in self._frames:
            self._waiting.append(frame)  # before the segmenter sees it, so its result always finds it
            yield frame

    def with_results(self, results: Iterable[FrameResult]) -> Iterator[tuple[FrameResult, np.ndarray]]:
        """Each result with its input frame (one result per frame, in order)."""
        for result in results:
            yield result, self._waiting.popleft()


@dataclass(frozen=True)
class _Rendered:
    """What one frame writes, made by a worker: the full-frame result, its row, overlay, mask PNG, viewer images."""

    result: FrameResult
    rgb: np.ndarray
    name: str
    stats: FrameStats
    measures: dict[str, float]
    overlay: np.ndarray
    mask_png: np.ndarray | None
    viewer_images: FrameImages | None
    model_result: FrameResult  # at the model's region, before the paste into the full frame
    model_rgb: np.ndarray | None  # the region the model saw (only with a diagnosis head)


def _overlap_workers() -> int:
    """Post-processing threads of an overlapped run: one per CPU, at most two (drawing is light; the rest waits)."""
    return min(2, available_cpus())


def _predict_video(
    segmenter: VideoSegmenter, source: VideoSource, video_dir: Path, progress: bool, full_frame: bool = False,
    viewer: ViewerCollector | None = None, burned_in: BurnedInPolicy = DEFAULT_POLICY,
    on_frame: Callable[[FrameResult], None] | None = None, overlap: bool = True,
) -> dict:
    """Segment one video into ``video_dir`` (and its kept frames into ``viewer``); returns its summary entry.

    ``on_frame`` gets every full-frame prediction (the DICOM results keep their lesion frames).

    The overlay and the viewer's frames are blanked outside the ultrasound regions of a file with
    burned-in identifiers (:mod:`flanet.inference.runs.burned_in`); such a file without regions is
    refused (DataError) unless ``burned_in.allow``.

    With ``overlap`` (default) the stages run at once on threads (:mod:`flanet.inference.core.overlap`):
    decoding and preparing frames ahead of the model, the model, then per frame in workers the outputs at
    full size, statistics, overlay drawing, measurements, the mask PNG and the viewer's images, and in this
    thread, in frame order, the writes (CSV row, PNG file, overlay video, viewer). The files are the same
    as without ``overlap`` (everything in this thread, one frame after the other), byte for byte; an error
    is raised at the frame it belongs to, after the frames before it were written.
    """
    keep, burned_in_entry = burned_in_regions(source, burned_in)
    geometry = source_geometry(source, use_region=not full_frame)
    measurements = MeasurementLog(geometry)
    masks_dir = video_dir / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    frames = _InputFrames(source.frames())
    first_position = None if viewer is None else viewer.offered  # of this video's first frame in the viewer
    diagnoser = StreamDiagnoser(segmenter.model, segmenter.diagnosis, segmenter.image_size) \
        if segmenter.diagnosis is not None else None

    def render(item: tuple[FrameResult, np.ndarray]) -> _Rendered:
        model_result, frame = item
        model_rgb = None  # what the model saw, for the diagnosis head
        if diagnoser is not None:
            model_rgb = as_rgb_frame(next(geometry.model_frames(iter([frame]))), model_result.index)
        rgb = blank_outside(as_rgb_frame(frame, model_result.index), keep)  # what people see: no identifiers
        result = geometry.full_frame(model_result, rgb.shape[0], rgb.shape[1])
        name = frame_name(source.frame_names, result.index)
        stats = frame_stats(result, source=name)
        images = None
        if viewer is not None and viewer.may_keep(first_position + result.index):  # type: ignore[operator]
            images = viewer.draw_streamed(result.mask, result.heatmap_full, rgb)
        ok, png = cv2.imencode(".png", result.mask.astype(np.uint8) * 255)
        return _Rendered(result, rgb, name, stats, geometry.measure(result.mask), draw_overlay(rgb, result, stats),
                         png if ok else None, images, model_result, model_rgb)

    workers = _overlap_workers() if overlap else 0
    results = frames.with_results(segmenter.stream(geometry.model_frames(iter(frames)), prefetch=2 if overlap else 0))
    rendered = ordered_map(render, read_ahead(results, 2 if overlap else 0, "flanet-model"), workers)
    bar = tqdm(total=source.frame_count, desc=source.id, unit="frame", disable=not progress, leave=False)
    writer: OverlayVideoWriter | None = None
    count = with_lesion = full_context = 0
    largest_area, largest_frame = 0, None
    start = time.perf_counter()
    try:
        columns = [*geometry.columns, *(diagnoser.columns if diagnoser is not None else [])]
        with FrameTableWriter(video_dir / "frames.csv", columns) as table:
            for frame in rendered:
                result, stats = frame.result, frame.stats
                height, width = result.probability.shape
                running = {} if diagnoser is None else diagnoser.update(frame.model_rgb, frame.model_result)
                if on_frame is not None:
                    on_frame(result)
                if writer is None:
                    writer = OverlayVideoWriter(video_dir / "overlay.mp4", source.fps, (width, height))
                writer.write(frame.overlay)
                if viewer is not None:
                    viewer.add_streamed(source.id, frame.name, result.index, stats.area_px, result.mask,
                                        result.heatmap_full, frame.rgb, frame.viewer_images)
                table.write(stats, {**frame.measures, **running})
                measurements.add(result.index, frame.measures)
                _write_mask(masks_dir / f"{frame.name}.png", frame.mask_png)
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
        rendered.close()  # stops the workers and the threads before the files are closed
        bar.close()
        if writer is not None:
            writer.close()
    elapsed = time.perf_counter() - start
    if count == 0:
        raise ValueError(f"{source.location}: no frames could be read")
    if viewer is not None and diagnoser is not None:
        viewer.set_attention(source.id, diagnoser.attention_by_frame())
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
        "width": int(width), "height": int(height), "input_fps": source.fps,
        "overlay_codec": None if writer is None else writer.codec,
        "fps_achieved": count / elapsed if elapsed > 0 else None, "seconds": elapsed,
        **measurements.summary(source), "burned_in_annotation": burned_in_entry,
        **({"diagnosis": diagnoser.summary()} if diagnoser is not None else {}),
    }


def _write_mask(path: Path, png: np.ndarray | None) -> None:
    """Write an encoded mask PNG (what ``cv2.imwrite`` writes, encoded in a worker)."""
    try:
        if png is None:
            raise OSError("not encoded")
        path.write_bytes(png.tobytes())
    except OSError as error:
        raise OSError(f"{path}: could not write the mask") from error


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
    overlap: bool = True,
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
        overlap: run decoding, the model, post-processing and writing at once on threads (the same files;
            False: one after the other, in this thread).
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
                               on_frame=None if collector is None else collector.add, overlap=overlap)
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
