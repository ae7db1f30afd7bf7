"""``flanet evaluate``: score a checkpoint, a model or a folder of prediction PNGs on a data set.

Outputs (in ``out``): ``metrics.json`` (both protocols, 95% bootstrap intervals over videos, scores
per video-level label), ``per_video.csv``, ``per_frame.csv``, ``table.md`` (rows in the format of the
paper's Tables 2 and 4), ``worst_frames/`` (overlays of the lowest-Dice frames), ``viewer.html`` (interactive, self-contained) and, with
``save_pred``, ``predictions/<video>/<frame>.png`` (probability x 255, scorable with ``--pred-dir``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from flanet import __version__
from flanet.data import DataError, Video, VideoSet, discover, read_mask
from flanet.data.split_record import SplitRecord, record_from_metadata, video_list_hash
from flanet.data.video_io import VideoFrameReader
from flanet.devices import resolve_device
from flanet.evaluation.detection import annotated_boxes, box_masks
from flanet.evaluation.diagnosis import diagnose_videos, diagnosis_section, not_applicable
from flanet.evaluation.model_predictions import (
    check_image_size,
    choose_mode,
    iter_model_predictions,
    iter_streamed_predictions,
)
from flanet.evaluation.prediction_folder import (
    PredictionCheck,
    check_predictions,
    frame_name,
    iter_prediction_folder,
    scored_indices,
)
from flanet.evaluation.report import write_evaluation
from flanet.evaluation.scoring import EvaluationResult, EvaluationScorer
from flanet.evaluation.shown_frames import AS_DECLARED, Blanking, read_shown_frame, worst_images
from flanet.evaluation.spacing import GivenSpacing, as_pairs, resolve_spacing
from flanet.evaluation.spacing import annotate as annotate_spacing
from flanet.evaluation.viewer import ViewerCollector
from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, prepare_output_folder
from flanet.metrics.names import DIAGNOSIS_KEY
from flanet.models.checkpoint import LoadedDiagnosis
from flanet.models.contract import VideoSegmentationModel
from flanet.models.trained import load_trained, resolve_image_size

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
        blanking: what the viewer and the worst frames show of frames with burned-in text
            (:mod:`flanet.evaluation.shown_frames`).
    """

    threshold: float = 0.5
    worst_count: int = 8
    resamples: int = 2000
    seed: int = 0
    progress: bool = True
    jobs: int = 1
    blanking: Blanking = AS_DECLARED


class SplitError(DataError):
    """The split to score is not held out: no split lists, or videos a checkpoint was trained or chosen on."""


def resolve_split(video_set: VideoSet, split: str | None) -> str | None:
    """``"all"`` (or None) means every video; any other name must be a split of the set.

    Raises:
        SplitError: ``test`` asked of a set without split lists (scoring every video would score the
            videos a model trained on; the message says how to make split lists).
    """
    if split in (None, "all"):
        return None
    if not video_set.splits:
        raise SplitError(
            f"no split lists, so split {split!r} is not defined and scoring every video would include the "
            f"videos a model was trained on. Write split lists by video with `flanet data split "
            f"{video_set.root} --ratios 4:2:4` and train on them, evaluate a checkpoint whose run held test "
            "videos out (data.test_fraction, its splits.json), or score every video knowingly with --split all",
            video_set.root,
        )
    return split


def with_held_out_test(video_set: VideoSet, record: SplitRecord | None) -> VideoSet:
    """A set without split lists gets the splits of the run that trained on it (``splits.json``)."""
    if video_set.splits or record is None or not record.test or not record.same_root(video_set.root):
        return video_set
    splits = {"train": record.train, "val": record.val, "test": record.test}
    log.info("%s has no split lists: scoring the %d test videos the checkpoint's run held out", video_set.root,
             len(record.test))
    return replace(video_set, splits=splits)


def seen_videos(record: SplitRecord | None, video_set: VideoSet, video_ids: list[str]) -> str:
    """Why the scored videos are not held out for this checkpoint, or ``""`` when they are."""
    if record is None or not record.same_root(video_set.root):
        return ""
    seen = record.seen(video_ids)
    parts = []
    if seen["train"]:
        parts.append(f"{len(seen['train'])} were training videos")
    if seen["val"]:
        parts.append(f"{len(seen['val'])} chose the checkpoint (validation split {record.selection_split!r})")
    if not parts:
        return ""
    return f"of the {len(video_ids)} scored videos, " + " and ".join(parts) + " of this checkpoint's run"


def scored_context(split: str | None, videos: list[Video], not_held_out: str = "") -> dict[str, Any]:
    """What a table states about the videos it scored: split, count, list hash and ids."""
    ids = [video.id for video in videos]
    context: dict[str, Any] = {"split": split or "all", "count": len(ids), "hash": video_list_hash(ids), "ids": ids}
    if not_held_out:
        context["not_held_out"] = not_held_out
    return context


#: What the scorer and the viewer are fed: video id, frame names, frame indices, prob uint8 (N, H, W),
#: gt bool (N, H, W), heatmap uint8 (N, S, S) or None, heatmap peaks (N, 2) or None.
Chunk = tuple[str, list[str], list[int], np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def _score(
    chunks: Iterator[Chunk], video_set: VideoSet, settings: EvaluationSettings, total: int | None = None,
    viewer: ViewerCollector | None = None, pixel_spacing: GivenSpacing = None, detection_only: bool = False,
) -> EvaluationResult:
    """Feed chunks to a scorer (and the viewer; a progress bar when ``total`` frames are known) and summarise.

    Pixel spacing: each video's own calibration, else ``pixel_spacing`` (:mod:`flanet.evaluation.spacing`).
    True boxes: the annotated ones (``bbox.json``, COCO boxes), else the masks'. ``detection_only``: the
    frames have boxes but no masks (a box-only set; the chunks' ``gt`` are the boxes, filled).
    """
    spacing = resolve_spacing(video_set.videos, pixel_spacing)
    by_id = {video.id: video for video in video_set.videos}
    with EvaluationScorer(settings.threshold, settings.worst_count, jobs=settings.jobs,
                          segmentation=not detection_only) as scorer, tqdm(
        total=total, unit="frame", desc="score", disable=total is None or not settings.progress
    ) as bar:
        for video_id, names, indices, prob, gt, heatmap, centres in chunks:
            scorer.add(video_id, names, prob, gt, centres, annotated_boxes(by_id[video_id], indices))
            if viewer is not None:
                viewer.add(video_id, names, indices, prob, gt, heatmap)
            bar.update(len(names))
        result = scorer.result(video_set.labels, settings.resamples, seed=settings.seed,
                               pixel_spacing=as_pairs(spacing) or None)
    return annotate_spacing(result, spacing)


def _folder_chunks(pred_dir: Path, videos: list[Video], resize: bool, boxes: bool = False) -> Iterator[Chunk]:
    """Prediction-folder chunks with frame indices (no heatmap: centres are mask centroids)."""
    index_of = {video.id: {frame_name(video, i): i for i in scored_indices(video, boxes)} for video in videos}
    for video_id, names, prob, gt in iter_prediction_folder(pred_dir, videos, resize, boxes):
        yield video_id, names, [index_of[video_id][n] for n in names], prob, gt, None, None


def _write_viewer(out: Path, viewer: ViewerCollector, result: EvaluationResult, videos: dict[str, Video], method: str,
                  detection_only: bool = False, blanking: Blanking = AS_DECLARED) -> None:
    """``viewer.html`` of an evaluation: scored frames, Dice per frame (box IoU when scoring detection only),
    lowest frames listed."""
    key, label = ("box_iou", "Box IoU") if detection_only else ("dice", "Dice")
    viewer.set_values({(row["video"], row["frame"]): row[key] for row in result.per_frame if row[key] != ""})
    reader = VideoFrameReader()
    note = ("Frames with a lesion box (truth: the box) or annotated lesion-free" if detection_only
            else "Frames with a ground-truth mask")
    viewer.write(out / "viewer.html", lambda video, index: read_shown_frame(videos[video], index, reader, blanking),
                 f"flanet evaluate: {method}", label, note=f"{note}; prediction: probability > 0.5.")


def _model_chunks(
    model: VideoSegmentationModel, video_set: VideoSet, split: str | None, image_size: int, device: torch.device,
    batch_size: int, num_workers: int, save_dir: Path | None, progress: bool, mode: str, detection_only: bool = False,
) -> Iterator[Chunk]:
    """Model predictions with their ground truth at original size (``detection_only``: the true boxes,
    filled); optionally saved as PNGs."""
    videos = video_set.subset(split)
    by_id = {video.id: video for video in videos}
    if mode == "stream":
        predictions = iter_streamed_predictions(model, videos, image_size, device, max(batch_size, 4), progress,
                                                boxes=detection_only)
    else:
        predictions = iter_model_predictions(model, video_set, split, image_size, device, batch_size, num_workers,
                                             progress, boxes=detection_only)
    for chunk in predictions:
        video = by_id[chunk.video]
        names = [frame_name(video, i) for i in chunk.indices]
        if detection_only:
            gt = box_masks(annotated_boxes(video, chunk.indices), *chunk.prob.shape[1:])
        else:
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
    image_size: int | None = None, device: str | torch.device | None = None, batch_size: int = 8, num_workers: int = 0,
    save_pred: bool = False, method: str | None = None, context: dict[str, Any] | None = None,
    mode: str = "auto", settings: EvaluationSettings = EvaluationSettings(),
    pixel_spacing: GivenSpacing = None, not_held_out: str = "", diagnosis: LoadedDiagnosis | None = None,
) -> EvaluationResult:
    """Run ``model`` over a split and score it; write the report into ``out`` when given.

    ``mode``: ``clips`` (batched clips), ``stream`` (FLA-Net: each frame encoded once) or ``auto``
    (fewer encoder passes); see :mod:`flanet.evaluation.model_predictions`. ``image_size``: None runs the model
    at the size it was trained at (a checkpoint's), else the paper's 352, as ``flanet predict``
    (:func:`~flanet.models.trained.resolve_image_size`). ``pixel_spacing``: ``(row mm,
    column mm)`` for every video, or ``{video id: (row mm, column mm)}``, for the localisation error in
    millimetres; a video whose file carries a calibration (DICOM) keeps its own. ``not_held_out``: why
    the scored videos are not a held-out test set (stated at the top of ``table.md``), or ``""``.
    Clips always use the causal edge (the first frame repeated at a video's start), whatever the
    model was trained with; ``metrics.json`` records it (``context.edge``). A split with lesion boxes
    but no masks (CVA-Net's) is scored as detection only: its box and listed lesion-free frames, COCO AP
    and the frame-level measures (``metrics.json``: ``segmentation.applicable`` false). ``diagnosis``: the checkpoint's
    diagnosis head, scored against the video labels (``metrics.json["diagnosis"]``, ``diagnosis.csv``,
    ``reliability.png``; :mod:`flanet.evaluation.diagnosis`); without it, or without labels, the section says
    why it does not apply.
    """
    split = resolve_split(video_set, split)
    detection_only = video_set.is_box_only(split)
    image_size = resolve_image_size(image_size, model.trained_image_size)
    check_image_size(model, image_size)  # bad input is refused before the output folder is touched
    out = prepare_output_folder(out, "evaluate", inputs=[video_set.root], reuse=True) if out is not None else None
    if out is not None:
        mark_incomplete(out, "flanet evaluate")
    save_dir = out / "predictions" if (out is not None and save_pred) else None
    dev = resolve_device(device)
    mode = choose_mode(model, video_set.subset(split), mode, boxes=detection_only)
    chunks = _model_chunks(
        model, video_set, split, image_size, dev, batch_size, num_workers, save_dir, settings.progress, mode,
        detection_only,
    )
    total = sum(len(scored_indices(video, detection_only)) for video in video_set.subset(split))
    viewer = ViewerCollector(total) if out is not None else None
    result = _score(chunks, video_set, settings, viewer=viewer, pixel_spacing=pixel_spacing,
                    detection_only=detection_only)
    result.metrics[DIAGNOSIS_KEY] = _diagnose(model, diagnosis, video_set, split, image_size, dev, settings)
    if out is not None:
        name = method or str(model.config["name"])
        kind = "video" if model.num_frames > 1 else "image"
        full_context = {
            "mode": "model", "flanet_version": __version__, "data": str(video_set.root), "layout": video_set.layout,
            "split": split or "all", "image_size": image_size, "device": str(dev), "threshold": settings.threshold,
            "inference_mode": mode, "model_config": model.config, "edge": "causal",
            "scoring": "detection only (box-only frames)" if detection_only else "segmentation and detection",
            "scored_videos": scored_context(split, video_set.subset(split), not_held_out), **(context or {}),
        }
        by_id = {video.id: video for video in video_set.videos}
        write_evaluation(out, result, full_context, name, kind, worst_images(result.worst, by_id, settings.blanking))
        _write_viewer(out, viewer, result, by_id, name, detection_only, settings.blanking)  # type: ignore[arg-type]
        mark_complete(out)
    return result


def _diagnose(model: VideoSegmentationModel, diagnosis: LoadedDiagnosis | None, video_set: VideoSet,
              split: str | None, image_size: int, device: torch.device, settings: EvaluationSettings) -> dict[str, Any]:
    """The diagnosis section of ``metrics.json``: the head scored on the labelled videos of the split, or why not."""
    if diagnosis is None:
        return not_applicable("the model has no diagnosis head (train one: docs/training.md, 'Diagnosis')")
    videos = video_set.subset(split)
    labels = list(diagnosis.head.labels)
    if not any(video_set.labels.get(video.id, {}).get(label, "").strip() for video in videos for label in labels):
        return not_applicable(f"no scored video has a label {labels} (labels.csv, benign/ malignant/ folders)")
    found = diagnose_videos(model, diagnosis.head, videos, image_size, device, progress=settings.progress)
    return diagnosis_section(found, video_set.labels, labels, diagnosis.thresholds, settings.resamples, settings.seed)


def evaluate_checkpoint(
    checkpoint: Path, data: Path, split: str | None = "test", out: Path | None = None, *,
    image_size: int | None = None, device: str | torch.device | None = None, batch_size: int = 8,
    num_workers: int = 0, save_pred: bool = False, method: str | None = None, mode: str = "auto",
    settings: EvaluationSettings = EvaluationSettings(), pixel_spacing: GivenSpacing = None,
    allow_seen: bool = False,
) -> EvaluationResult:
    """Load a flanet checkpoint (safely) and evaluate it on ``data`` (see :func:`evaluate_model`).

    The checkpoint's split record (:mod:`flanet.data.split_record`) decides what may be scored: on a
    set without split lists, the test videos its run held out; a split holding videos the run
    trained on or chose the checkpoint on is refused, unless ``allow_seen`` (then ``table.md`` says
    so in its first line). The model runs at the size it was trained at unless ``image_size`` says
    otherwise; a recorded input normalisation other than flanet's is refused.

    Raises:
        SplitError: the videos to score are not held out for this checkpoint.
    """
    trained = load_trained(checkpoint)  # refuses a normalisation flanet does not apply
    loaded, training_edge = trained.loaded, trained.edge
    record = record_from_metadata(loaded.metadata)
    video_set = with_held_out_test(discover(data), record)
    scored = video_set.subset(resolve_split(video_set, split))
    not_held_out = seen_videos(record, video_set, [video.id for video in scored])
    if not_held_out and not allow_seen:
        raise SplitError(f"{not_held_out}: not a test score. Score the test split, or pass --allow-seen to "
                         "score them anyway (the table then says so)", checkpoint)
    if not_held_out:
        log.warning("NOT HELD OUT: %s", not_held_out)
    trained.image_size(image_size)  # a size the model cannot take is refused before the output folder is touched
    if out is not None:
        prepare_output_folder(out, "evaluate", inputs=[video_set.root, checkpoint], reuse=True)
    return evaluate_model(
        loaded.model, video_set, split, out, image_size=image_size, device=device, batch_size=batch_size,
        num_workers=num_workers, save_pred=save_pred, method=method, mode=mode, settings=settings,
        pixel_spacing=pixel_spacing, not_held_out=not_held_out, diagnosis=loaded.diagnosis,
        context={"mode": "checkpoint", "checkpoint": str(checkpoint), "checkpoint_metadata": loaded.metadata,
                 "training_edge": training_edge, "selection": loaded.metadata.get("selection")},
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
    detection_only = video_set.is_box_only(split)
    videos = video_set.subset(split)
    check = check_predictions(pred_dir, videos, {video.id for video in video_set.videos}, detection_only)
    if check.extra or check.outside_split:
        log.warning("%s", check.report())
    if check.missing or (check.wrong_size and not resize):
        raise PredictionFolderError(check)
    if check.wrong_size:
        log.warning("resizing %d prediction(s) to their ground-truth size", len(check.wrong_size))
    out = prepare_output_folder(out, "evaluate", inputs=[video_set.root, pred_dir], reuse=True) if out is not None else None
    if out is not None:
        mark_incomplete(out, "flanet evaluate")
    total = sum(len(scored_indices(video, detection_only)) for video in videos)
    viewer = ViewerCollector(total) if out is not None else None
    result = _score(_folder_chunks(pred_dir, videos, resize, detection_only), video_set, settings, total, viewer,
                    pixel_spacing, detection_only)
    result.metrics[DIAGNOSIS_KEY] = not_applicable("scored from prediction PNGs, which carry no diagnosis")
    if out is not None:
        context = {
            "mode": "pred-dir", "flanet_version": __version__, "pred_dir": str(pred_dir), "data": str(video_set.root),
            "layout": video_set.layout, "split": split or "all", "threshold": settings.threshold,
            "scoring": "detection only (box-only frames)" if detection_only else "segmentation and detection",
            "scored_videos": scored_context(split, videos),
            "resized_predictions": [str(p) for p, _, _ in check.wrong_size],
            "extra_files": [str(p) for p in check.extra],
        }
        atomic_write_text(out / "prediction_check.txt", (check.report(limit=None) or "no problems") + "\n")
        by_id = {video.id: video for video in video_set.videos}
        write_evaluation(out, result, context, method or pred_dir.name, "-", worst_images(result.worst, by_id, settings.blanking))
        _write_viewer(out, viewer, result, by_id, method or pred_dir.name, detection_only,  # type: ignore[arg-type]
                      settings.blanking)
        mark_complete(out)
    return result, check
