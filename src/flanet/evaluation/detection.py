"""Detection scores of an evaluation: one box per frame, COCO AP against the true boxes.

:class:`DetectionScorer` is fed the same chunks as :class:`flanet.evaluation.EvaluationScorer`
(which owns one): it turns each frame's prediction into a scored box (:mod:`flanet.metrics.detection`:
the largest component of the mask, and for models with the localisation branch a box of the same
extent at the heatmap peak) and at the end scores every box of the evaluation with COCO AP, AP50 and
AP75. True boxes are the annotated ones where the data set has them (``bbox.json``, a COCO box
file), else the box of the ground-truth mask. Definitions: docs/metrics.md ("Detection").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flanet.data import Video
from flanet.metrics import detection
from flanet.metrics.names import DETECTION, PEAK_DETECTION

NO_TRUTH = "not applicable: no evaluated frame has a lesion box"
NO_PEAK = "not applicable: the model has no localisation branch (heatmap)"
#: per_frame.csv columns, in order.
FRAME_COLUMNS: tuple[str, ...] = (
    "box_x1", "box_y1", "box_x2", "box_y2", "box_score", "box_iou",
    "truth_x1", "truth_y1", "truth_x2", "truth_y2",
)


def annotated_boxes(video: Video, indices: Sequence[int]) -> np.ndarray:
    """(N, 4) annotated boxes of frames ``indices`` (``bbox.json``, COCO box files); NaN rows where none."""
    boxes = np.full((len(indices), 4), np.nan)
    if video.bboxes is not None:
        for row, index in enumerate(indices):  # a lookup per frame of a list of tuples
            if (box := video.bboxes[index]) is not None:
                boxes[row] = box
    return boxes


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W) bool: each box (edges rounded to whole pixels) filled; all False for a NaN row.

    The stand-in truth of a box-only frame for the frame-level measures (lesion present, bbox centre).
    """
    edges = np.nan_to_num(np.round(boxes), nan=0).astype(np.int64)
    cols, rows = np.arange(width), np.arange(height)
    inside_x = (cols >= edges[:, 0, None]) & (cols < edges[:, 2, None])  # (N, W)
    inside_y = (rows >= edges[:, 1, None]) & (rows < edges[:, 3, None])  # (N, H)
    return inside_y[:, :, None] & inside_x[:, None, :]


class DetectionScorer:
    """Accumulates the boxes of every added frame; :meth:`result` scores them.

    Args:
        threshold: binarisation threshold (the standard protocol's).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._truth: list[np.ndarray] = []
        self._annotated: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._peaks: list[np.ndarray] = []
        self._with_peak = False

    def add(self, prob: np.ndarray, gt: np.ndarray | None, truth_boxes: np.ndarray | None = None,
            peaks: np.ndarray | None = None) -> None:
        """Add frames (of any video, in report order).

        Args:
            prob: (N, H, W) uint8 probability x 255.
            gt: (N, H, W) bool ground-truth masks, or None (box-only frames: ``truth_boxes`` only).
            truth_boxes: (N, 4) annotated boxes, NaN rows where a frame has none (its mask's box is used).
            peaks: (N, 2) heatmap peaks ``(x, y)`` in pixel-edge coordinates, or None.
        """
        n, height, width = prob.shape
        annotated = np.full((n, 4), np.nan) if truth_boxes is None else np.asarray(truth_boxes, np.float64)
        given = np.isfinite(annotated).all(axis=1)
        truth = annotated.copy()
        if gt is not None:
            truth[~given] = detection.mask_boxes(gt[~given])
        binary = prob.astype(np.float32) / np.float32(255) > np.float32(self.threshold)  # as the standard protocol
        boxes, scores = detection.component_boxes(binary, prob)
        scores = scores / 255
        self._truth.append(truth)
        self._annotated.append(given)
        self._boxes.append(boxes)
        self._scores.append(scores)
        if peaks is None:
            self._peaks.append(np.full((n, 4), np.nan))
        else:
            self._with_peak = True
            self._peaks.append(detection.peak_boxes(np.asarray(peaks, np.float64), boxes, height, width))

    def result(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(metrics, per_frame)``: the AP keys (None where undefined) and a ``detection`` section; per-frame columns."""
        truth, boxes = np.concatenate(self._truth), np.concatenate(self._boxes)
        scores, annotated = np.concatenate(self._scores), np.concatenate(self._annotated)
        with_truth = np.isfinite(truth).all(axis=1)
        metrics: dict[str, Any] = dict(zip(DETECTION, detection.coco_average_precision(truth, boxes, scores).values()))
        peak = dict.fromkeys(PEAK_DETECTION)
        if self._with_peak:
            peak = dict(zip(PEAK_DETECTION, detection.coco_average_precision(truth, np.concatenate(self._peaks), scores).values()))
        metrics.update(peak)
        notes = [NO_TRUTH] if not with_truth.any() else []
        if not self._with_peak:
            notes.append(f"peak boxes {NO_PEAK}")
        metrics["detection"] = {
            "box": "largest 8-connected component of the thresholded mask, scored by its maximum probability",
            "peak_box": "the component box's extent centred at the heatmap peak, clipped to the frame",
            "truth": {"annotated_boxes": int((annotated & with_truth).sum()),
                      "mask_boxes": int((~annotated & with_truth).sum()), "frames_without_lesion": int((~with_truth).sum())},
            "frames": int(len(truth)), "frames_with_box": int(np.isfinite(scores).sum()),
            "iou_thresholds": "0.50:0.05:0.95 (AP), 0.50 (AP50), 0.75 (AP75)", "note": "; ".join(notes),
        }
        per_frame = {
            **{f"box_{k}": boxes[:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))}, "box_score": scores,
            "box_iou": np.where(with_truth & ~np.isfinite(scores), 0.0, detection.box_iou(truth, boxes)),
            **{f"truth_{k}": truth[:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))},
        }
        return metrics, per_frame
