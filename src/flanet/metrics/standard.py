"""Standard protocol (the breast table, Table 2 of the paper): threshold 0.5, per-frame overlap.

Every score is computed per frame, vectorised over the frames of a batch, then averaged:

* The prediction is binarised as ``prob > threshold`` (0.5: a positive logit); the ground truth
  as ``gt > 0.5``.
* With TP the overlap, P the predicted area and G the ground-truth area of one frame:
  ``dice = 2 TP / (P + G)``, ``jaccard = TP / (P + G - TP)``, ``precision = TP / P``,
  ``recall = TP / G``.
* Empty frames: a ratio whose denominator is 0 is **1 when prediction and ground truth are
  both empty** (perfect agreement) and **0 otherwise** (a lesion predicted on a lesion-free frame,
  or a lesion missed entirely, scores 0 on all four ratios).
* ``mae`` is the mean absolute difference between the probability map (not thresholded) and the
  binary ground truth.
* Data-set scores are means over all scored frames (each frame counts once, whatever its video);
  ``f1`` is the harmonic mean of the data-set mean precision and mean recall,
  ``f1 = 2 P_mean R_mean / (P_mean + R_mean)``. It is therefore not the mean per-frame Dice, which
  is why the paper's Table 2 can report F1 0.815 next to Dice 0.789.

See docs/metrics.md for a worked example.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from flanet.metrics import names

FRAME_KEYS: tuple[str, ...] = names.STANDARD_FRAME
SUMMARY_KEYS: tuple[str, ...] = names.STANDARD


def _checked_pair(prob: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Validate shapes/ranges and return ``(prob, gt)`` as float (N, 1, H, W) and bool (N, 1, H, W)."""
    if prob.shape != gt.shape:
        raise ValueError(f"prob has shape {tuple(prob.shape)} but gt has shape {tuple(gt.shape)}")
    if prob.ndim != 4 or prob.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) tensors, got shape {tuple(prob.shape)}")
    prob = prob.float()
    if prob.numel() and (prob.min() < 0 or prob.max() > 1 or torch.isnan(prob).any()):
        raise ValueError("prob must be a probability map with values in [0, 1] (apply sigmoid first)")
    if gt.dtype != torch.bool:
        if gt.numel() and not torch.all((gt == 0) | (gt == 1)):
            raise ValueError("gt must be a binary mask with values in {0, 1}")
        gt = gt > 0.5
    return prob, gt


def _ratio(numerator: Tensor, denominator: Tensor, both_empty: Tensor) -> Tensor:
    """``numerator / denominator``; where the denominator is 0: 1 if both masks are empty else 0."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, both_empty.to(numerator.dtype))


def frame_scores(prob: Tensor, gt: Tensor, threshold: float = 0.5) -> dict[str, Tensor]:
    """Per-frame scores of the standard protocol, vectorised over frames.

    Args:
        prob: (N, 1, H, W) probability maps in [0, 1] (sigmoid of the mask logits).
        gt: (N, 1, H, W) binary ground truth (bool, or float/int in {0, 1}).
        threshold: a pixel is predicted lesion when ``prob > threshold``.

    Returns:
        Dict with keys ``dice``, ``jaccard``, ``precision``, ``recall``, ``mae``, each a float32
        tensor (N,) on the input's device. Empty-frame conventions are in the module docstring.

    Raises:
        ValueError: shapes differ, are not (N, 1, H, W), prob leaves [0, 1] or gt is not binary.
    """
    prob, gt = _checked_pair(prob, gt)
    pred = prob > threshold  # (N, 1, H, W)
    dims = (1, 2, 3)
    tp = (pred & gt).sum(dims).float()  # (N,)
    pred_area = pred.sum(dims).float()
    gt_area = gt.sum(dims).float()
    both_empty = (pred_area == 0) & (gt_area == 0)
    return {
        "dice": _ratio(2 * tp, pred_area + gt_area, both_empty),
        "jaccard": _ratio(tp, pred_area + gt_area - tp, both_empty),
        "precision": _ratio(tp, pred_area, both_empty),
        "recall": _ratio(tp, gt_area, both_empty),
        "mae": (prob - gt.float()).abs().mean(dims),
    }


def video_sums(
    per_frame: dict[str, Tensor | np.ndarray], video_ids: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sum the per-frame scores of each video (the sufficient statistics for frame means).

    Args:
        per_frame: per-frame scores, each (N,), keys at least ``FRAME_KEYS``.
        video_ids: (N,) video id of every frame.

    Returns:
        ``(videos, sums, counts)``: video ids in order of first appearance, sums (V, 5) in the
        order of ``FRAME_KEYS`` and frame counts (V,).
    """
    missing = [key for key in FRAME_KEYS if key not in per_frame]
    if missing:
        raise KeyError(f"per-frame scores lack {missing}")
    values = np.stack([np.asarray(torch.as_tensor(per_frame[k]).double().cpu()) for k in FRAME_KEYS], 1)
    if values.shape[0] != len(video_ids):
        raise ValueError(f"{values.shape[0]} per-frame scores but {len(video_ids)} video ids")
    videos, first, inverse = np.unique(np.asarray(video_ids, dtype=str), return_index=True, return_inverse=True)
    order = np.argsort(first)  # first-appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.reshape(-1)]
    sums = np.zeros((len(videos), len(FRAME_KEYS)))
    np.add.at(sums, inverse, values)
    counts = np.bincount(inverse, minlength=len(videos)).astype(float)
    return [str(v) for v in videos[order]], sums, counts


def summary_from_sums(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Data-set scores from per-video sums, optionally under video weights (bootstrap resamples).

    Args:
        sums: (V, 5) per-video sums of ``FRAME_KEYS``.
        counts: (V,) frames per video.
        weights: (..., V) how often each video is counted (ones for the plain estimate).

    Returns:
        ``SUMMARY_KEYS`` -> array of shape ``weights.shape[:-1]`` (0-d for the plain estimate).
    """
    weights = np.ones(len(counts)) if weights is None else weights
    frames = weights @ counts
    means = (weights @ sums) / np.maximum(frames, 1)[..., None]  # (..., 5)
    out = {key: means[..., i] for i, key in enumerate(FRAME_KEYS)}
    p, r = out["precision"], out["recall"]
    out["f1"] = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return {key: out[key] for key in SUMMARY_KEYS}


def summarise(per_frame: dict[str, Tensor], video_ids: Sequence[str]) -> dict[str, float]:
    """Data-set scores of the standard protocol.

    Args:
        per_frame: output of :func:`frame_scores` (concatenated over batches), each (N,).
        video_ids: (N,) video id of every frame.

    Returns:
        ``dice``, ``jaccard``, ``precision``, ``recall``, ``mae`` (means over all frames), ``f1``
        (harmonic mean of mean precision and mean recall), ``num_frames`` and ``num_videos``.
    """
    videos, sums, counts = video_sums(per_frame, video_ids)
    if not videos:
        raise ValueError("no frames to summarise")
    summary = {key: float(value) for key, value in summary_from_sums(sums, counts).items()}
    summary["num_frames"] = float(counts.sum())
    summary["num_videos"] = float(len(videos))
    return summary
