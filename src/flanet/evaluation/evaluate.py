"""``flanet evaluate``: score a checkpoint, a model or a folder of prediction PNGs on a data set.

Outputs (in ``out``): ``metrics.json`` (both protocols, 95% bootstrap intervals over videos, scores
per video-level label), ``per_video.csv``, ``per_frame.csv``, ``table.md`` (rows in the format of the
paper's Tables 2 and 4), ``worst_frames/`` (overlays of the lowest-Dice frames), ``viewer.html`` (interactive, self-contained) and, with
``save_pred``, ``predictions/<video>/<frame>.png`` (probability x 255, scorable with ``--pred-dir``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from flanet import __version__
from flanet.data import Video, VideoSet, discover, read_image, read_mask
from flanet.data.video_io import VideoFrameReader
from flanet.devices import resolve_device
from flanet.evaluation.model_predictions import choose_mode, iter_model_predictions, iter_streamed_predictions
from flanet.evaluation.prediction_folder import (
    PredictionCheck,
    check_predictions,
    frame_name,
    iter_prediction_folder,
    scored_indices,
)
from flanet.evaluation.report import write_evaluation
from flanet.evaluation.scoring import EvaluationResult, EvaluationScorer
from flanet.evaluation.spacing import GivenSpacing, as_pairs, resolve_spacing
from flanet.evaluation.spacing import annotate as annotate_spacing
from flanet.evaluation.viewer import ViewerCollector
from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, prepare_output_folder
from flanet.models.contract import VideoSegmentationModel

log = logging.getLogger(__name__)



class PredictionFolderError(ValueError):
    """A prediction folder lacks files or holds files of the wrong size (the message lists them)."""

    def __init__(self, check: PredictionCheck) -> None:
        self.check = check
        super().__init__("the prediction folder cannot be scored:\n" + check.report())


@dataclass(frozen=True)
class EvaluationSettings:
    """Knobs shared by every evaluation mode.

    Attributes:
        threshold: binarisation threshold of the standard protocol.
        worst_count: number of worst frames drawn as overlays.
        resamples: bootstrap resamples for the 95% intervals.
        seed: bootstrap seed.
        progress: show progress bars.
        jobs: worker processes for the VPS protocol (1: in this process).
    """

    threshold: float = 0.5
    worst_count: int = 8
    resamples: int = 2000
    seed: int = 0
    progress: bool = True
    jobs: int = 1


def resolve_split(video_set: VideoSet, split: str | None) -> str | None:
    """``"all"`` means every video; the default ``"test"`` falls back to every video in a set without splits."""
    if split in (None, "all"):
        return None
    if split == "test" and not video_set.splits:
        log.warning("%s has no split lists; evaluating every video", video_set.root)
        return None
    return split


def _read_rgb(video: Video, index: int, reader: VideoFrameReader) -> np.ndarray:
    return reader.read(video.video_file, index) if video.video_file is not None else read_image(video.frames[index])


def _worst_images(result: EvaluationResult, videos: dict[str, Video]) -> list[np.ndarray]:
    """Original frames of the worst frames (looked up by name), resized to their maps if needed."""
    reader, images = VideoFrameReader(), []
    for frame in result.worst:
        video = videos[frame.video]
        index = next(i for i in range(video.num_frames) if frame_name(video, i) == frame.frame)
        rgb = _read_rgb(video, index, reader)
        if rgb.shape[:2] != frame.gt.shape:
            rgb = cv2.resize(rgb, (frame.gt.shape[1], frame.gt.shape[0]))
        images.append(rgb)
    return images


#: What the scorer and the viewer are fed: video id, frame names, frame indices, prob uint8 (N, H, W),
#: gt bool (N, H, W), heatmap uint8 (N, S, S) or None, heatmap peaks (N, 2) or None.
Chunk = tuple[str, list[str], list[int], np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def _score(
    chunks: Iterator[Chunk], video_set: VideoSet, settings: EvaluationSettings, total: int | None = None,
    viewer: ViewerCollector | None = None, pixel_spacing: GivenSpacing = None,
) -> EvaluationResult:
    """Feed chunks to a scorer (and the viewer; a progress bar when ``total`` frames are known) and summarise.

    Pixel spacing: each video's own calibration, else ``pixel_spacing`` (:mod:`flanet.evaluation.spacing`).
    """
    spacing = resolve_spacing(video_set.videos, pixel_spacing)
    with EvaluationScorer(settings.threshold, settings.worst_count, jobs=settings.jobs) as scorer, tqdm(
        total=total, unit="frame", desc="score", disable=total is None or not settings.progress
    ) as bar:
        for video_id, names, indices, prob, gt, heatmap, centres in chunks:
            scorer.add(video_id, names, prob, gt, centres)
            if viewer is not None:
                viewer.add(video_id, names, indices, prob, gt, heatmap)
            bar.update(len(names))
        result = scorer.result(video_set.labels, settings.resamples, seed=settings.seed,
                               pixel_spacing=as_pairs(spacing) or None)
    return annotate_spacing(result, spacing)


def _folder_chunks(pred_dir: Path, videos: list[Video], resize: bool) -> Iterator[Chunk]:
    """Prediction-folder chunks with frame indices (no heatmap: centres are mask centroids)."""
    index_of = {video.id: {frame_name(video, i): i for i in scored_indices(video)} for video in videos}
    for video_id, names, prob, gt in iter_prediction_folder(pred_dir, videos, resize):
        yield video_id, names, [index_of[video_id][n] for n in names], prob, gt, None, None


def _write_viewer(out: Path, viewer: ViewerCollector, result: EvaluationResult, videos: dict[str, Video], method: str) -> None:
    """``viewer.html`` of an evaluation: scored frames, Dice per frame, lowest-Dice frames listed."""
    viewer.set_values({(row["video"], row["frame"]): row["dice"] for row in result.per_frame})
    reader = VideoFrameReader()
    viewer.write(out / "viewer.html", lambda video, index: _read_rgb(videos[video], index, reader),
                 f"flanet evaluate: {method}", "Dice",
                 note="Frames with a ground-truth mask; prediction: probability > 0.5.")


def _model_chunks(
    model: VideoSegmentationModel, video_set: VideoSet, split: str | None, image_size: int, device: torch.device,
    batch_size: int, num_workers: int, save_dir: Path | None, progress: bool, mode: str,
) -> Iterator[Chunk]:
    """Model predictions with their ground truth at original size; optionally saved as PNGs."""
    videos = video_set.subset(split)
    by_id = {video.id: video for video in videos}
    if mode == "stream":
        predictions = iter_streamed_predictions(model, videos, image_size, device, max(batch_size, 4), progress)
    else:
        predictions = iter_model_predictions(model, video_set, split, image_size, device, batch_size, num_workers, progress)
    for chunk in predictions:
        video = by_id[chunk.video]
        names = [frame_name(video, i) for i in chunk.indices]
        gt = np.stack([read_mask(video.masks[i]) for i in chunk.indices])  # type: ignore[arg-type]
        if save_dir is not None:
            folder = save_dir / chunk.video
            folder.mkdir(parents=True, exist_ok=True)
            for name, frame in zip(names, chunk.prob):
                if not cv2.imwrite(str(folder / f"{name}.png"), frame):
                    raise OSError(f"{folder / name}.png: could not write the prediction")
        yield chunk.video, names, list(chunk.indices), chunk.prob, gt, chunk.heatmap, chunk.centres


def evaluate_model(
    model: VideoSegmentationModel, video_set: VideoSet, split: str | None = "test", out: Path | None = None, *,
    image_size: int = 352, device: str | torch.device | None = None, batch_size: int = 8, num_workers: int = 0,
    save_pred: bool = False, method: str | None = None, context: dict[str, Any] | None = None,
    mode: str = "auto", settings: EvaluationSettings = EvaluationSettings(),
    pixel_spacing: GivenSpacing = None,
) -> EvaluationResult:
    """Run ``model`` over a split and score it; write the report into ``out`` when given.

    ``mode``: ``clips`` (batched clips), ``stream`` (FLA-Net: each frame encoded once) or ``auto``
    (fewer encoder passes); see :mod:`flanet.evaluation.model_predictions`. ``pixel_spacing``: ``(row mm,
    column mm)`` for every video, or ``{video id: (row mm, column mm)}``, for the localisation error in
    millimetres; a video whose file carries a calibration (DICOM) keeps its own.
    """
    split = resolve_split(video_set, split)
    video_set.ensure_masks(split)
    out = prepare_output_folder(out, "evaluate", inputs=[video_set.root], reuse=True) if out is not None else None
    if out is not None:
        mark_incomplete(out, "flanet evaluate")
    save_dir = out / "predictions" if (out is not None and save_pred) else None
    dev = resolve_device(device)
    mode = choose_mode(model, video_set.subset(split), mode)
    chunks = _model_chunks(
        model, video_set, split, image_size, dev, batch_size, num_workers, save_dir, settings.progress, mode
    )
    total = sum(len(scored_indices(video)) for video in video_set.subset(split))
    viewer = ViewerCollector(total) if out is not None else None
    result = _score(chunks, video_set, settings, viewer=viewer, pixel_spacing=pixel_spacing)
    if out is not None:
        name = method or str(model.config["name"])
        kind = "video" if model.num_frames > 1 else "image"
        full_context = {
            "mode": "model", "flanet_version": __version__, "data": str(video_set.root), "layout": video_set.layout,
            "split": split or "all", "image_size": image_size, "device": str(dev), "threshold": settings.threshold,
            "inference_mode": mode, "model_config": model.config, **(context or {}),
        }
        by_id = {video.id: video for video in video_set.videos}
        write_evaluation(out, result, full_context, name, kind, _worst_images(result, by_id))
        _write_viewer(out, viewer, result, by_id, name)  # type: ignore[arg-type]
        mark_complete(out)
    return result


def evaluate_checkpoint(
    checkpoint: Path, data: Path, split: str | None = "test", out: Path | None = None, *,
    image_size: int | None = None, device: str | torch.device | None = None, batch_size: int = 8,
    num_workers: int = 0, save_pred: bool = False, method: str | None = None, mode: str = "auto",
    settings: EvaluationSettings = EvaluationSettings(), pixel_spacing: GivenSpacing = None,
) -> EvaluationResult:
    """Load a flanet checkpoint (safely) and evaluate it on ``data`` (see :func:`evaluate_model`)."""
    from flanet.models.checkpoint import image_size_from_metadata, load_checkpoint

    loaded = load_checkpoint(checkpoint, map_location="cpu")
    size = image_size or image_size_from_metadata(loaded.metadata)
    video_set = discover(data)
    if out is not None:
        prepare_output_folder(out, "evaluate", inputs=[video_set.root, checkpoint], reuse=True)
    return evaluate_model(
        loaded.model, video_set, split, out, image_size=size, device=device, batch_size=batch_size,
        num_workers=num_workers, save_pred=save_pred, method=method, mode=mode, settings=settings,
        pixel_spacing=pixel_spacing, context={"mode": "checkpoint", "checkpoint": str(checkpoint), "checkpoint_metadata": loaded.metadata},
    )


def evaluate_prediction_folder(
    pred_dir: Path, data: Path, split: str | None = "test", out: Path | None = None, *,
    resize: bool = False, method: str | None = None, settings: EvaluationSettings = EvaluationSettings(),
    pixel_spacing: GivenSpacing = None,
) -> tuple[EvaluationResult, PredictionCheck]:
    """Score prediction PNGs made by any method (``<pred>/<video>/<frame stem>.png``).

    Raises:
        PredictionFolderError: predictions missing or of the wrong size (without ``resize``), listed by name.
    """
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder does not exist")
    video_set = discover(data)
    split = resolve_split(video_set, split)
    video_set.ensure_masks(split)
    videos = video_set.subset(split)
    check = check_predictions(pred_dir, videos, {video.id for video in video_set.videos})
    if check.extra or check.outside_split:
        log.warning("%s", check.report())
    if check.missing or (check.wrong_size and not resize):
        raise PredictionFolderError(check)
    if check.wrong_size:
        log.warning("resizing %d prediction(s) to their ground-truth size", len(check.wrong_size))
    out = prepare_output_folder(out, "evaluate", inputs=[video_set.root, pred_dir], reuse=True) if out is not None else None
    if out is not None:
        mark_incomplete(out, "flanet evaluate")
    total = sum(len(scored_indices(video)) for video in videos)
    viewer = ViewerCollector(total) if out is not None else None
    result = _score(_folder_chunks(pred_dir, videos, resize), video_set, settings, total, viewer, pixel_spacing)
    if out is not None:
        context = {
            "mode": "pred-dir", "flanet_version": __version__, "pred_dir": str(pred_dir), "data": str(video_set.root),
            "layout": video_set.layout, "split": split or "all", "threshold": settings.threshold,
            "resized_predictions": [str(p) for p, _, _ in check.wrong_size],
            "extra_files": [str(p) for p in check.extra],
        }
        atomic_write_text(out / "prediction_check.txt", (check.report(limit=None) or "no problems") + "\n")
        by_id = {video.id: video for video in video_set.videos}
        write_evaluation(out, result, context, method or pred_dir.name, "-", _worst_images(result, by_id))
        _write_viewer(out, viewer, result, by_id, method or pred_dir.name)  # type: ignore[arg-type]
        mark_complete(out)
    return result, check
