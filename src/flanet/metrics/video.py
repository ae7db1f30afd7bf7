"""Video-level behaviour of a segmenter: temporal stability, lesion detection, localisation error.

Dice per frame (:mod:`flanet.metrics.standard`) does not say whether a mask flickers, whether the
model invents lesions on frames that have none, or how far off its lesion centre is. Per frame
(vectorised over the frames of a chunk) :func:`frame_measures` computes, from the binarised
prediction ``P = {p > threshold}`` and the ground truth ``G``:

* **Mask change** between consecutive scored frames of a video, ``c(A, B) = 1 - Dice(A, B)``
  (0 when both masks are empty, 1 when exactly one is): ``change_pred = c(P_{t-1}, P_t)`` and
  ``change_gt = c(G_{t-1}, G_t)``. The **flicker** of a pair is ``max(0, change_pred - change_gt)``:
  the change of the prediction beyond the change of the lesion itself, so a lesion that really moves
  or grows is not counted as flicker.
* **Detection**: a frame is lesion-positive in the ground truth when ``|G| > 0``, predicted positive
  when ``|P| > 0``; its score is the maximum probability of the frame (``max p > threshold`` is the
  same decision, so the AUROC ranks frames by the quantity that is thresholded). Its bootstrap
  weights each frame by its video's count (:func:`weighted_auroc`).
* **Centres** in pixel-edge coordinates (pixel ``i`` spans ``[i, i+1)``, as
  :func:`flanet.data.bboxes.mask_bbox`): the ground-truth bbox centre, and the predicted centre
  (the heatmap peak, :func:`heatmap_peaks`, when the caller passes it, else the centroid of ``P``; NaN when
  ``P`` is empty).

The data-set summaries (:func:`summarise`) are ratios of per-video sums, so the same function
gives the point estimate and, under bootstrap video weights, the 95% intervals. Definitions and a
worked example: docs/metrics.md ("Video behaviour").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

#: Per-frame arrays returned by :func:`frame_measures`.
FRAME_MEASURES: tuple[str, ...] = (
    "pred_area", "gt_area", "pixels", "max_prob", "change_pred", "change_gt",
    "pred_x", "pred_y", "gt_x", "gt_y",
)


def mask_change(previous: Tensor, current: Tensor) -> Tensor:
    """``1 - Dice(previous_i, current_i)`` per frame; 0 when both are empty.

    Args:
        previous / current: (N, H, W) bool masks.

    Returns:
        (N,) float32 in [0, 1].
    """
    dims = (1, 2)
    overlap = (previous & current).sum(dims).float()
    total = previous.sum(dims).float() + current.sum(dims).float()
    dice = torch.where(total > 0, 2 * overlap / total.clamp(min=1), torch.ones_like(total))
    return 1 - dice


def mask_centroid(mask: Tensor) -> Tensor:
    """(N, 2) ``(x, y)`` centroid of each (N, H, W) bool mask (pixel centres at ``i + 0.5``); NaN if empty."""
    height, width = mask.shape[-2:]
    weights = mask.float()
    area = weights.sum((1, 2))
    xs = torch.arange(width, device=mask.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=mask.device, dtype=torch.float32) + 0.5
    x = (weights.sum(1) * xs).sum(1) / area
    y = (weights.sum(2) * ys).sum(1) / area
    return torch.stack([x, y], 1)  # 0/0 = NaN for empty masks


def bbox_centre(mask: Tensor) -> Tensor:
    """(N, 2) ``(x, y)`` centre of each mask's bbox ``[min col, max col + 1) x [min row, max row + 1)``; NaN if empty."""
    height, width = mask.shape[-2:]
    cols, rows = mask.any(1), mask.any(2)  # (N, W), (N, H)
    col_index = torch.arange(width, device=mask.device, dtype=torch.float32)
    row_index = torch.arange(height, device=mask.device, dtype=torch.float32)
    inf = torch.tensor(float("inf"), device=mask.device)
    x0 = torch.where(cols, col_index, inf).amin(1)
    x1 = torch.where(cols, col_index, -inf).amax(1) + 1
    y0 = torch.where(rows, row_index, inf).amin(1)
    y1 = torch.where(rows, row_index, -inf).amax(1) + 1
    centre = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2], 1)
    return torch.where(cols.any(1, keepdim=True), centre, torch.full_like(centre, float("nan")))


def heatmap_peaks(heatmap: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(N, 2) ``(x, y)`` of each (N, 1, S, S') heatmap's maximum, mapped to an (H, W) frame.

    The peak pixel's centre ``(col + 0.5, row + 0.5)`` is scaled by ``W / S'`` and ``H / S``
    (pixel-edge coordinates, as the ground-truth bbox centre of :mod:`flanet.data.bboxes`).
    """
    rows, cols = heatmap.shape[-2:]
    flat = heatmap.flatten(1).argmax(1)
    y, x = torch.div(flat, cols, rounding_mode="floor"), flat % cols
    scale = torch.tensor([size[1] / cols, size[0] / rows], device=heatmap.device)
    return ((torch.stack([x, y], 1).float() + 0.5) * scale).cpu().numpy()


def frame_measures(
    prob: Tensor, gt: Tensor, threshold: float = 0.5,
    previous: tuple[Tensor, Tensor] | None = None, centre: Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame measures of consecutive frames of one video (see the module docstring).

    Args:
        prob: (N, H, W) probabilities in [0, 1].
        gt: (N, H, W) bool ground truth.
        threshold: a pixel is predicted lesion when ``prob > threshold``.
        previous: ``(P, G)`` (H, W) bool masks of the video's previous scored frame, or None at the
            start of a video (the first frame's changes are then NaN).
        centre: (N, 2) predicted ``(x, y)`` centres (heatmap peaks, pixel-edge coordinates); None
            uses the centroid of the predicted mask.

    Returns:
        :data:`FRAME_MEASURES` -> (N,) float64 arrays.
    """
    pred = prob > threshold
    if previous is not None and tuple(previous[0].shape) == tuple(pred.shape[1:]):
        prev_pred = torch.cat([previous[0][None], pred[:-1]])
        prev_gt = torch.cat([previous[1][None], gt[:-1]])
        change_pred, change_gt = mask_change(prev_pred, pred), mask_change(prev_gt, gt)
    else:  # first frame of a video (or a change of frame size): no pair
        nan = torch.full((1,), float("nan"), device=pred.device)
        change_pred = torch.cat([nan, mask_change(pred[:-1], pred[1:])])
        change_gt = torch.cat([nan, mask_change(gt[:-1], gt[1:])])
    predicted = mask_centroid(pred) if centre is None else centre.to(pred.device, torch.float32)
    truth = bbox_centre(gt)
    values = {
        "pred_area": pred.sum((1, 2)).float(), "gt_area": gt.sum((1, 2)).float(),
        "pixels": torch.full((len(pred),), float(pred.shape[1] * pred.shape[2]), device=pred.device),
        "max_prob": prob.flatten(1).amax(1).float(), "change_pred": change_pred, "change_gt": change_gt,
        "pred_x": predicted[:, 0], "pred_y": predicted[:, 1], "gt_x": truth[:, 0], "gt_y": truth[:, 1],
    }
    return {k: v.double().cpu().numpy() for k, v in values.items()}


def detection_histograms(
    scores: np.ndarray, labels: np.ndarray, inverse: np.ndarray, num_videos: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-video counts of lesion and lesion-free frames at each distinct score, for :func:`weighted_auroc`.

    Args:
        scores: (N,) frame scores (the maximum probability; 8-bit maps give at most 256 distinct ones).
        labels: (N,) bool, True for lesion frames.
        inverse: (N,) video index of every frame.
        num_videos: V.

    Returns:
        ``(positives, negatives)``: (V, K) counts, K distinct scores in ascending order.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    distinct, level = np.unique(scores, return_inverse=True)
    cells = np.asarray(inverse, np.int64) * len(distinct) + level.reshape(-1)
    size = num_videos * len(distinct)
    positives = np.bincount(cells[labels], minlength=size).reshape(num_videos, len(distinct))
    negatives = np.bincount(cells[~labels], minlength=size).reshape(num_videos, len(distinct))
    return positives.astype(float), negatives.astype(float)


def weighted_auroc(
    positives: np.ndarray, negatives: np.ndarray, weights: np.ndarray | None = None, block: int = 1 << 22
) -> np.ndarray:
    """AUROC (Mann-Whitney, ties count 1/2) of frames weighted by their video's weight.

    Each frame counts ``w_v`` times (a bootstrap resample draws video ``v`` ``w_v`` times):
    ``sum_k P_k (N_<k + N_k / 2) / (sum P · sum N)`` with ``P = w @ positives``, ``N = w @ negatives``;
    NaN when one class has weight 0. With unit weights it is the plain AUROC of all frames.

    Args:
        positives / negatives: (V, K) :func:`detection_histograms`.
        weights: (V,) or (B, V) video weights; None: every video once.
        block: resamples are processed in blocks of about ``block / K`` rows (bounded memory).

    Returns:
        () or (B,) AUROC.
    """
    weights = np.ones(positives.shape[0]) if weights is None else np.asarray(weights, float)
    flat = np.atleast_2d(weights)
    out = np.empty(flat.shape[0])
    rows = max(1, block // max(1, positives.shape[1]))
    for start in range(0, flat.shape[0], rows):  # a few blocks at most: each one vectorised
        pos, neg = flat[start : start + rows] @ positives, flat[start : start + rows] @ negatives
        below = np.cumsum(neg, -1) - neg
        pairs = pos.sum(-1) * neg.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + rows] = np.where(pairs > 0, (pos * (below + neg / 2)).sum(-1) / pairs, np.nan)
    return out.reshape(weights.shape[:-1])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney, ties count 1/2); NaN for one class."""
    scores = np.asarray(scores, float)
    positives, negatives = detection_histograms(scores, labels, np.zeros(scores.shape, np.int64), 1)
    return float(weighted_auroc(positives, negatives))


def distances(measures: Mapping[str, np.ndarray], spacing: np.ndarray | None = None) -> np.ndarray:
    """(N,) Euclidean distance between predicted and ground-truth centres; NaN where either is missing.

    Args:
        measures: :func:`frame_measures` output.
        spacing: (N, 2) ``(row mm, column mm)`` per frame (DICOM PixelSpacing order) for millimetres;
            None for pixels.
    """
    dx = measures["pred_x"] - measures["gt_x"]
    dy = measures["pred_y"] - measures["gt_y"]
    if spacing is not None:
        dx, dy = dx * spacing[:, 1], dy * spacing[:, 0]
    return np.hypot(dx, dy)


#: Per-video sums behind every summary (columns of :func:`video_sums`).
SUM_KEYS: tuple[str, ...] = (
    "pairs", "change_pred", "change_gt", "flicker", "lesion_frames", "true_positive_frames",
    "lesion_free_frames", "false_positive_frames", "false_positive_area", "lesion_free_fraction",
    "located_frames", "error_px", "missed_centres", "mm_frames", "error_mm",
)


def video_sums(
    measures: Mapping[str, np.ndarray], inverse: np.ndarray, num_videos: int, spacing: np.ndarray | None = None
) -> np.ndarray:
    """(V, len(SUM_KEYS)) per-video sums of the frames' measures (video index ``inverse`` per frame).

    ``spacing``: (N, 2) ``(row mm, column mm)`` per frame, NaN rows where a video has none.
    """
    pair = np.isfinite(measures["change_pred"])
    change_pred = np.where(pair, measures["change_pred"], 0.0)
    change_gt = np.where(pair, measures["change_gt"], 0.0)
    lesion = measures["gt_area"] > 0
    predicted = measures["pred_area"] > 0
    false_positive = ~lesion & predicted
    error_px = distances(measures)
    located = lesion & np.isfinite(error_px)
    error_mm = distances(measures, spacing) if spacing is not None else np.full_like(error_px, np.nan)
    with_mm = located & np.isfinite(error_mm)
    columns = {
        "pairs": pair, "change_pred": change_pred, "change_gt": change_gt,
        "flicker": np.maximum(change_pred - change_gt, 0.0), "lesion_frames": lesion,
        "true_positive_frames": lesion & predicted, "lesion_free_frames": ~lesion,
        "false_positive_frames": false_positive,
        "false_positive_area": np.where(false_positive, measures["pred_area"], 0.0),
        "lesion_free_fraction": np.where(~lesion, measures["pred_area"] / measures["pixels"], 0.0),
        "located_frames": located, "error_px": np.where(located, error_px, 0.0),
        "missed_centres": lesion & ~located, "mm_frames": with_mm, "error_mm": np.where(with_mm, error_mm, 0.0),
    }
    sums = np.zeros((num_videos, len(SUM_KEYS)))
    for j, key in enumerate(SUM_KEYS):  # a loop over the 15 columns, each one vectorised bincount
        sums[:, j] = np.bincount(inverse, np.asarray(columns[key], float), minlength=num_videos)
    return sums


def summarise(sums: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Data-set scores from per-video sums, optionally under (..., V) bootstrap video weights.

    Returns (NaN where the denominator is 0): ``mask_change_pred``, ``mask_change_gt``, ``flicker``
    (means over consecutive pairs), ``sensitivity``, ``specificity``, ``fp_frames_per_video``,
    ``fp_area_px`` (mean predicted area of the false-positive frames), ``fp_area_fraction`` (mean
    predicted fraction of the frame over all lesion-free frames), ``loc_error_px`` / ``loc_error_mm``
    (mean centre distance over the lesion frames that have a predicted centre) and
    ``loc_missed`` (fraction of lesion frames without a predicted centre).
    """
    weights = np.ones(sums.shape[0]) if weights is None else weights
    total = dict(zip(SUM_KEYS, np.moveaxis(weights @ sums, -1, 0)))

    def ratio(numerator: str, denominator: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total[denominator] > 0, total[numerator] / total[denominator], np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        per_video = total["false_positive_frames"] / weights.sum(-1)
    return {
        "mask_change_pred": ratio("change_pred", "pairs"), "mask_change_gt": ratio("change_gt", "pairs"),
        "flicker": ratio("flicker", "pairs"),
        "sensitivity": ratio("true_positive_frames", "lesion_frames"),
        "specificity": 1 - ratio("false_positive_frames", "lesion_free_frames"),
        "fp_frames_per_video": np.where(total["lesion_free_frames"] > 0, per_video, np.nan),
        "fp_area_px": ratio("false_positive_area", "false_positive_frames"),
        "fp_area_fraction": ratio("lesion_free_fraction", "lesion_free_frames"),
        "loc_error_px": ratio("error_px", "located_frames"), "loc_error_mm": ratio("error_mm", "mm_frames"),
        "loc_missed": ratio("missed_centres", "lesion_frames"),
    }


def spacing_per_video(videos: Sequence[str], spacing: Mapping[str, tuple[float, float]] | None) -> np.ndarray | None:
    """(V, 2) ``(row mm, column mm)`` of each video from a per-video mapping (NaN rows for videos without).

    Index it with the frames' video index for :func:`video_sums`; None when no spacing is known.
    """
    if not spacing:
        return None
    return np.array([spacing.get(video, (np.nan, np.nan)) for video in videos], float).reshape(len(videos), 2)
