"""Video behaviour of an evaluation: temporal stability, lesion-free-frame detection, localisation error.

:class:`BehaviourScorer` is fed the same chunks as :class:`flanet.evaluation.EvaluationScorer`
(which owns one), keeps the previous frame's masks of the current video for the mask change, and
at the end turns the per-frame measures of :mod:`flanet.metrics.video` into data-set scores with
95% bootstrap intervals over videos, per-video columns and per-frame columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flanet.metrics import video as measures
from flanet.metrics.bootstrap import percentile_interval, resample_counts

#: Scores that get a bootstrap interval (the AUROC's: frames weighted by their video's count).
WITH_INTERVALS: tuple[str, ...] = (
    "flicker", "sensitivity", "specificity", "fp_frames_per_video", "auroc", "loc_error_px", "loc_error_mm",
)
HEADLINE: tuple[str, ...] = (
    "flicker", "mask_change_pred", "mask_change_gt", "sensitivity", "specificity", "auroc",
    "fp_frames_per_video", "fp_area_px", "fp_area_fraction", "loc_error_px", "loc_error_mm", "loc_missed",
)
NOT_APPLICABLE = "not applicable: the evaluated frames have no lesion-free frame"


class BehaviourScorer:
    """Accumulates :func:`flanet.metrics.video.frame_measures` of consecutive chunks, video by video.

    Args:
        threshold: binarisation threshold (the standard protocol's).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._parts: list[dict[str, np.ndarray]] = []
        self._previous: tuple[Tensor, Tensor] | None = None
        self._video: str | None = None
        self.centre_sources: set[str] = set()

    def add(self, video: str, prob: Tensor, gt: Tensor, centres: np.ndarray | None = None) -> None:
        """Add frames of one video in order.

        Args:
            video: video id (a new id starts a new video: no mask change across videos).
            prob: (N, H, W) probabilities in [0, 1].
            gt: (N, H, W) bool ground truth.
            centres: (N, 2) predicted ``(x, y)`` lesion centres (heatmap peaks) or None (mask centroids).
        """
        if video != self._video:
            self._video, self._previous = video, None
        centre = None if centres is None else torch.as_tensor(centres, dtype=torch.float32)
        self._parts.append(measures.frame_measures(prob, gt, self.threshold, self._previous, centre))
        self._previous = (prob[-1] > self.threshold, gt[-1])
        self.centre_sources.add("mask centroid" if centres is None else "heatmap peak")

    def result(
        self, videos: list[str], frame_videos: list[str], spacing: Mapping[str, tuple[float, float]] | None,
        num_resamples: int, level: float, seed: int,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Scores, per-video columns (in ``videos`` order) and per-frame columns of everything added.

        Args:
            videos: video ids in report order (every id of ``frame_videos``).
            frame_videos: (N,) video id of every added frame, in order.
            spacing: ``video -> (row mm, column mm)`` for millimetres, or None.
            num_resamples / level / seed: the bootstrap over videos.

        Returns:
            ``(metrics, per_video, per_frame)``: ``metrics`` holds :data:`HEADLINE` (None when not
            defined), ``ci`` and a ``video_behaviour`` section with counts and notes.
        """
        frame = {k: np.concatenate([p[k] for p in self._parts]) for k in measures.FRAME_MEASURES}
        index = {video: i for i, video in enumerate(videos)}
        inverse = np.array([index[v] for v in frame_videos], dtype=np.int64)
        per_video_spacing = measures.spacing_per_video(videos, spacing)
        frame_spacing = per_video_spacing[inverse] if per_video_spacing is not None else None
        sums = measures.video_sums(frame, inverse, len(videos), frame_spacing)
        point = {k: float(v) for k, v in measures.summarise(sums).items()}
        lesion = frame["gt_area"] > 0
        histograms = measures.detection_histograms(frame["max_prob"], lesion, inverse, len(videos))
        point["auroc"] = float(measures.weighted_auroc(*histograms))
        counts = resample_counts(len(videos), num_resamples, seed)
        samples = measures.summarise(sums, counts)
        samples["auroc"] = measures.weighted_auroc(*histograms, counts)
        intervals = {}
        for key in WITH_INTERVALS:
            finite = samples[key][np.isfinite(samples[key])]  # resamples without the needed frames say nothing
            if np.isfinite(point[key]) and finite.size:
                intervals[key] = list(percentile_interval(finite, level))
        totals = dict(zip(measures.SUM_KEYS, sums.sum(0)))
        applicable = totals["lesion_free_frames"] > 0
        metrics: dict[str, Any] = {key: (point[key] if np.isfinite(point[key]) else None) for key in HEADLINE}
        metrics["ci"] = intervals
        metrics["video_behaviour"] = {
            "consecutive_pairs": int(totals["pairs"]),
            "detection": {
                "applicable": bool(applicable), "note": "" if applicable else NOT_APPLICABLE,
                "score": "maximum probability of the frame", "lesion_frames": int(totals["lesion_frames"]),
                "lesion_free_frames": int(totals["lesion_free_frames"]),
                "false_positive_frames": int(totals["false_positive_frames"]),
            },
            "localisation": {
                "predicted_centre": " + ".join(sorted(self.centre_sources)), "truth_centre": "ground-truth bbox centre",
                "located_frames": int(totals["located_frames"]), "frames_with_spacing": int(totals["mm_frames"]),
            },
        }
        per_video = _per_video_columns(sums)
        error_px = measures.distances(frame)
        error_mm = measures.distances(frame, frame_spacing) if frame_spacing is not None else np.full(len(inverse), np.nan)
        located = lesion & np.isfinite(error_px)
        per_frame = {
            "pred_area_px": frame["pred_area"], "max_prob": frame["max_prob"],
            "mask_change_pred": frame["change_pred"], "mask_change_gt": frame["change_gt"],
            "centre_error_px": np.where(located, error_px, np.nan), "centre_error_mm": np.where(located, error_mm, np.nan),
        }
        return metrics, per_video, per_frame


def _per_video_columns(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Per-video scores: :func:`flanet.metrics.video.summarise` of each video alone (identity weights)."""
    scores = measures.summarise(sums, np.eye(sums.shape[0]))
    column = dict(zip(measures.SUM_KEYS, sums.T))
    return {
        "flicker": scores["flicker"], "mask_change_pred": scores["mask_change_pred"],
        "mask_change_gt": scores["mask_change_gt"], "lesion_free_frames": column["lesion_free_frames"],
        "fp_frames": column["false_positive_frames"], "sensitivity": scores["sensitivity"],
        "specificity": scores["specificity"], "loc_error_px": scores["loc_error_px"], "loc_error_mm": scores["loc_error_mm"],
    }
