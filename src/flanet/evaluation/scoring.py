"""Scoring a stream of predicted frames under both protocols, video by video.

:class:`EvaluationScorer` takes the frames of each video in order (in chunks of any size), keeps
only small per-frame numbers (plus the few worst frames for the report), and at the end returns an
:class:`EvaluationResult` with the data-set scores of both protocols, 95% bootstrap intervals over
videos, per-video and per-frame rows. Long videos never have to be held in memory.
"""

from __future__ import annotations

import heapq
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch

from flanet.evaluation.behaviour import BehaviourScorer
from flanet.evaluation.detection import DetectionScorer, box_masks
from flanet.metrics import names, standard, vps
from flanet.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap_intervals

HEADLINE_STANDARD: tuple[str, ...] = names.STANDARD
HEADLINE_VPS: tuple[str, ...] = names.VPS_REPORTED
NO_SEGMENTATION = ("not applicable: the evaluated frames have lesion boxes but no masks (box-only set); "
                   "scored as detection only")


@dataclass(frozen=True)
class ScoredFrame:
    """One frame kept for the worst-frames report: its scores and maps at original resolution."""

    video: str
    frame: str
    dice: float
    mae: float
    prob: np.ndarray  # (H, W) uint8 probability x 255
    gt: np.ndarray  # (H, W) bool


@dataclass
class EvaluationResult:
    """Everything ``flanet evaluate`` reports.

    Attributes:
        metrics: flat headline scores (``dice``, ``jaccard``, ``f1``, ``mae``, ``s_alpha``, ``e_phi_mean``,
            ``e_phi_max``, ``weighted_f``, ``max_dice``, ``max_iou``, ``vps_mae``...), ``ci`` (95% intervals),
            ``standard`` / ``vps`` (full protocol summaries), ``by_label`` and counts.
        per_video: one row per video (standard frame means + VPS sequence scores + labels).
        per_frame: one row per scored frame (video, frame, standard scores).
        worst: the worst frames (lowest Dice, then highest MAE), worst first.
    """

    metrics: dict[str, Any]
    per_video: list[dict[str, Any]]
    per_frame: list[dict[str, Any]]
    worst: list[ScoredFrame] = field(default_factory=list)


class EvaluationScorer:
    """Accumulates predictions video by video.

    The standard protocol runs in this process (vectorised torch); the VPS protocol (pysodmetrics,
    per frame, the slow part on large frames) runs in ``jobs`` worker processes when ``jobs > 1``.
    Use as a context manager, or call :meth:`close`, to stop the workers early.

    Args:
        threshold: binarisation threshold of the standard protocol.
        worst_count: how many worst frames to keep for the overlay report.
        device: where the standard-protocol maths runs.
        jobs: worker processes for the VPS protocol (1: in this process).
        segmentation: False scores detection only (box-only frames: no mask, so neither protocol of
            segmentation; the frame-level measures take each true box as the lesion's extent).
    """

    def __init__(
        self, threshold: float = 0.5, worst_count: int = 8, device: str | torch.device = "cpu", jobs: int = 1,
        segmentation: bool = True,
    ) -> None:
        self.threshold = threshold
        self.worst_count = worst_count
        self.device = torch.device(device)
        self.jobs = max(1, int(jobs))
        self._frame_scores: list[dict[str, np.ndarray]] = []
        self._frame_videos: list[str] = []
        self._frame_names: list[str] = []
        self._vps_parts: dict[str, list[vps.FrameScores | Future]] = {}  # videos not summarised yet
        self._sequences: dict[str, vps.SequenceScores | None] = {}
        self._current: str | None = None
        self._pool = ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn")) if self.jobs > 1 else None
        self._in_flight: deque[Future] = deque()
        self._worst: list[tuple[float, float, int, ScoredFrame]] = []  # min-heap of the worst frames
        self._counter = 0
        self._behaviour = BehaviourScorer(threshold)
        self._detection = DetectionScorer(threshold)
        self.segmentation = segmentation

    def __enter__(self) -> EvaluationScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (pending work is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def add(
        self, video: str, frames: list[str], prob: np.ndarray, gt: np.ndarray | None, centres: np.ndarray | None = None,
        truth_boxes: np.ndarray | None = None,
    ) -> None:
        """Add consecutive frames of one video.

        Args:
            video: video id; all frames of a video must arrive before the next video starts.
            frames: (N,) frame names (for reports).
            prob: (N, H, W) uint8 predicted probability x 255 (what a prediction PNG holds).
            gt: (N, H, W) bool ground truth at the same size; None when scoring detection only.
            centres: (N, 2) predicted lesion centres ``(x, y)`` (heatmap peaks, pixel-edge coordinates
                of the frame) for the localisation error; None: centroids of the predicted masks.
            truth_boxes: (N, 4) annotated lesion boxes ``(x1, y1, x2, y2)``, NaN rows where a frame has
                none (the box of its mask is the truth then); required when scoring detection only.
        """
        if not self.segmentation:
            if truth_boxes is None:
                raise ValueError(f"{video}: scoring detection only needs the true boxes")
            gt = box_masks(np.asarray(truth_boxes, np.float64), *prob.shape[1:])
        if gt is None or prob.shape != gt.shape or prob.ndim != 3 or len(frames) != prob.shape[0]:
            raise ValueError(f"{video}: prediction {prob.shape}, ground truth {getattr(gt, 'shape', None)}, {len(frames)} names")
        if prob.dtype != np.uint8 or gt.dtype != np.bool_:
            raise TypeError("prob must be uint8 (probability x 255) and gt bool")
        self._switch_to(video)
        self._detection.add(prob, gt if self.segmentation else None, truth_boxes, centres)
        prob_t = torch.from_numpy(prob).to(self.device).unsqueeze(1).float() / 255  # (N, 1, H, W)
        gt_t = torch.from_numpy(gt).to(self.device).unsqueeze(1)
        self._behaviour.add(video, prob_t[:, 0], gt_t[:, 0], centres)
        self._frame_videos.extend([video] * len(frames))
        self._frame_names.extend(frames)
        if not self.segmentation:
            return
        scores = {k: v.cpu().numpy() for k, v in standard.frame_scores(prob_t, gt_t, self.threshold).items()}
        self._frame_scores.append(scores)
        if self._pool is None:
            self._vps_parts[video].append(vps.score_frames(prob, gt))
        else:
            try:
                future = self._pool.submit(vps.score_frames, prob, gt)
            except BrokenProcessPool as error:
                raise RuntimeError(
                    "the VPS scoring worker processes died; use jobs=1 (--jobs 1), and in a script "
                    "guard the entry point with `if __name__ == '__main__':`"
                ) from error
            self._vps_parts[video].append(future)
            self._in_flight.append(future)
            while len(self._in_flight) > 2 * self.jobs:  # bounded queue: inference waits for scoring
                self._in_flight.popleft().result()
        self._keep_worst(video, frames, scores, prob, gt)

    def _switch_to(self, video: str) -> None:
        if self._current == video:
            return
        if video in self._vps_parts or video in self._sequences:
            raise ValueError(f"frames of video {video!r} arrived after another video started")
        self._current = video
        self._summarise_videos(block=False)
        self._vps_parts[video] = []

    def _summarise_videos(self, block: bool) -> None:
        """Turn finished videos' per-frame VPS scores into sequence scores (all of them when ``block``)."""
        for video, parts in list(self._vps_parts.items()):
            if video == self._current and not block:
                continue
            if not block and any(isinstance(p, Future) and not p.done() for p in parts):
                continue
            frames = [p.result() if isinstance(p, Future) else p for p in parts]
            self._sequences[video] = vps.sequence_scores(vps.FrameScores.concatenate(frames)) if frames else None
            del self._vps_parts[video]

    def _keep_worst(self, video: str, frames: list[str], scores: dict[str, np.ndarray], prob: np.ndarray, gt: np.ndarray) -> None:
        for i, name in enumerate(frames):  # loop over frames, each pushed at most once
            key = (-float(scores["dice"][i]), float(scores["mae"][i]))
            if len(self._worst) >= self.worst_count and key <= self._worst[0][:2]:
                continue
            self._counter += 1
            item = ScoredFrame(video, name, float(scores["dice"][i]), float(scores["mae"][i]), prob[i].copy(), gt[i].copy())
            heapq.heappush(self._worst, (*key, self._counter, item))
            if len(self._worst) > self.worst_count:
                heapq.heappop(self._worst)

    def result(
        self,
        labels: dict[str, dict[str, str]] | None = None,
        num_resamples: int = DEFAULT_RESAMPLES,
        level: float = DEFAULT_LEVEL,
        seed: int = 0,
        pixel_spacing: dict[str, tuple[float, float]] | None = None,
    ) -> EvaluationResult:
        """Data-set scores, intervals and report rows of everything added (stops the workers).

        ``pixel_spacing``: ``video -> (row mm, column mm)`` (DICOM PixelSpacing order) for the
        localisation error in millimetres; videos without one get pixels only.
        """
        self._current = None
        try:
            self._summarise_videos(block=True)
        finally:
            self.close()
        if not self._frame_videos:
            raise ValueError("no frame with a ground-truth mask was scored")
        labels = labels or {}
        if self.segmentation:
            videos, metrics, rows, per_frame = self._segmentation_result(labels, num_resamples, level, seed)
        else:
            videos, metrics, rows, per_frame = _detection_only(self._frame_videos, labels, level, num_resamples)
        behaviour, video_columns, frame_columns = self._behaviour.result(
            videos, self._frame_videos, pixel_spacing, num_resamples, level, seed
        )
        if not self.segmentation:  # the truth is a box, not the lesion's outline: its change says nothing
            behaviour.update(dict.fromkeys(("flicker", "mask_change_pred", "mask_change_gt"), None))
            behaviour["ci"].pop("flicker", None)
            for key in ("flicker", "mask_change_pred", "mask_change_gt"):
                video_columns.pop(key, None)
                frame_columns.pop(key, None)
        metrics.update({k: v for k, v in behaviour.items() if k != "ci"})
        metrics["ci"].update(behaviour["ci"])
        detection, detection_columns = self._detection.result()
        metrics.update(detection)
        frame_columns.update(detection_columns)
        for i, row in enumerate(rows):
            row.update({k: _cell(v[i]) for k, v in video_columns.items()})
        frame_rows = [
            {"video": v, "frame": f, **{k: float(per_frame[k][i]) for k in per_frame},
             **{k: _cell(c[i]) for k, c in frame_columns.items()}}
            for i, (v, f) in enumerate(zip(self._frame_videos, self._frame_names))
        ]
        worst = [entry[3] for entry in sorted(self._worst, key=lambda e: (e[0], e[1]), reverse=True)]
        return EvaluationResult(metrics, rows, frame_rows, worst)

    def _segmentation_result(
        self, labels: dict[str, dict[str, str]], num_resamples: int, level: float, seed: int,
    ) -> tuple[list[str], dict[str, Any], list[dict[str, Any]], dict[str, np.ndarray]]:
        """Both segmentation protocols: ``(videos, metrics, per-video rows, per-frame scores)``."""
        per_frame = {k: np.concatenate([s[k] for s in self._frame_scores]) for k in standard.FRAME_KEYS}
        videos, sums, counts = standard.video_sums(per_frame, self._frame_videos)
        std_summary = standard.summarise(per_frame, self._frame_videos)
        intervals = {
            k: v for k, v in bootstrap_intervals(
                lambda w: standard.summary_from_sums(sums, counts, w), len(videos), num_resamples, level, seed
            ).items() if k in HEADLINE_STANDARD
        }
        # in video order, not in the order the scoring workers finished: the bootstrap draws weights by position
        scored = [(v, self._sequences[v]) for v in videos if self._sequences.get(v) is not None]
        vps_summary: dict[str, float] = {}
        if scored:
            stacked = vps.stack_sequences([s for _, s in scored])
            vps_summary = vps.summarise_sequences([s for _, s in scored])
            vps_ci = bootstrap_intervals(
                lambda w: vps.summary_from_sequences(stacked, w), len(scored), num_resamples, level, seed
            )
            intervals.update({names.reported_name(k): v for k, v in vps_ci.items() if k in HEADLINE_VPS})
        metrics = _flat_metrics(std_summary, vps_summary, intervals, level, num_resamples)
        metrics["by_label"] = _by_label(videos, sums, counts, labels)
        return videos, metrics, _video_rows(videos, sums, counts, self._sequences, labels), per_frame


def _cell(value: float) -> float | str:
    """A CSV cell: the number, or blank when it is not defined (NaN)."""
    return float(value) if np.isfinite(value) else ""


def _detection_only(
    frame_videos: list[str], labels: dict[str, dict[str, str]], level: float, resamples: int,
) -> tuple[list[str], dict[str, Any], list[dict[str, Any]], dict[str, np.ndarray]]:
    """What a detection-only evaluation reports of segmentation: nothing (null), and the counts."""
    videos, first, counts = np.unique(np.asarray(frame_videos, dtype=str), return_index=True, return_counts=True)
    order = np.argsort(first)  # first-appearance order, as the segmentation protocols
    videos, counts = videos[order].tolist(), counts[order]
    nan = float("nan")
    std = {**dict.fromkeys(names.STANDARD, nan), "num_videos": len(videos), "num_frames": len(frame_videos)}
    metrics = _flat_metrics(std, {}, {}, level, resamples)
    metrics["standard"], metrics["by_label"] = {}, {}
    metrics["segmentation"] = {"applicable": False, "note": NO_SEGMENTATION}
    columns = sorted({column for video in videos for column in labels.get(video, {})})
    rows = [{"video": video, "frames": int(count), **{c: labels.get(video, {}).get(c, "") for c in columns}}
            for video, count in zip(videos, counts)]
    return videos, metrics, rows, {}


def _flat_metrics(
    std: dict[str, float], vps_summary: dict[str, float], intervals: dict[str, tuple[float, float]], level: float, resamples: int
) -> dict[str, Any]:
    nan = float("nan")
    metrics: dict[str, Any] = {k: std[k] for k in HEADLINE_STANDARD}
    for key in HEADLINE_VPS:
        metrics[names.reported_name(key)] = vps_summary.get(key, nan)
    metrics.update(
        num_videos=int(std["num_videos"]), num_frames=int(std["num_frames"]),
        num_vps_sequences=int(vps_summary.get("num_sequences", 0)), num_vps_frames=int(vps_summary.get("num_frames", 0)),
    )
    metrics["ci"] = {"level": level, "resamples": resamples, "unit": "video",
                     **{k: [lo, hi] for k, (lo, hi) in intervals.items()}}
    metrics["standard"] = std
    metrics["vps"] = vps_summary
    return metrics


def _by_label(videos: list[str], sums: np.ndarray, counts: np.ndarray, labels: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Standard-protocol scores per value of every video-level label (e.g. benign / malignant)."""
    columns = sorted({column for video in videos for column in labels.get(video, {})})
    out: dict[str, Any] = {}
    for column in columns:
        values = np.array([labels.get(video, {}).get(column, "") for video in videos])
        out[column] = {}
        for value in sorted(set(values.tolist()) - {""}):
            weights = (values == value).astype(float)
            summary = standard.summary_from_sums(sums, counts, weights)
            out[column][value] = {k: float(v) for k, v in summary.items()} | {"num_videos": int(weights.sum())}
    return out


def _video_rows(
    videos: list[str], sums: np.ndarray, counts: np.ndarray,
    sequences: dict[str, vps.SequenceScores | None], labels: dict[str, dict[str, str]],
) -> list[dict[str, Any]]:
    columns = sorted({column for video in videos for column in labels.get(video, {})})
    rows = []
    for i, video in enumerate(videos):
        means = sums[i] / counts[i]
        row: dict[str, Any] = {"video": video, "frames": int(counts[i])}
        row.update({key: float(means[j]) for j, key in enumerate(standard.FRAME_KEYS)})
        seq = sequences.get(video)
        row.update(
            vps_frames=seq.num_frames if seq else 0,
            s_alpha=seq.s_alpha if seq else "", weighted_f=seq.weighted_f if seq else "",
            e_phi_mean=float(seq.e_curve.mean()) if seq else "", e_phi_max=float(seq.e_curve.max()) if seq else "",
            max_dice=float(seq.dice_curve.max()) if seq else "", vps_mae=seq.mae if seq else "",
        )
        row.update({column: labels.get(video, {}).get(column, "") for column in columns})
        rows.append(row)
    return rows
