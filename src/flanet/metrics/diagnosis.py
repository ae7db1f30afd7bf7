"""Scores of a video-level diagnosis (benign/malignant, ALN metastasis): the labels of the paper's Section 2.

One probability per video and label against the video's binary label. Every score takes video
weights ``(B, V)`` so that one call scores the data set (one row of ones) and all bootstrap
resamples (rows of counts, :mod:`flanet.metrics.bootstrap`) at once, without a loop over resamples:

- AUROC: the Mann-Whitney statistic, the share of (malignant, benign) video pairs ranked right, ties
  counting 1/2 (Hanley and McNeil 1982), each pair weighted by the product of its videos' weights.
- Sensitivity, specificity and their mean, the balanced accuracy, at a threshold chosen on the
  validation videos (:func:`youden_threshold`; a video is called positive when ``p >= threshold``).
- Expected calibration error (Naeini et al. 2015; Guo et al. 2017): 10 equal-width bins of the
  probability, ``ECE = sum_b |sum_{i in b} w_i (y_i - p_i)| / sum_i w_i``, the weighted mean gap
  between the share of positives and the mean probability in each bin; :func:`reliability` gives the
  bins for the reliability diagram.

Definitions and worked examples: docs/metrics.md, "Diagnosis".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flanet.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, percentile_interval, resample_counts
from flanet.metrics.names import DIAGNOSIS as SCORES

#: Bins of the expected calibration error and of the reliability diagram.
CALIBRATION_BINS = 10


def _rows(weights: np.ndarray | None, count: int) -> np.ndarray:
    return np.ones((1, count)) if weights is None else np.atleast_2d(np.asarray(weights, float))


def auroc(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(B,) weighted Mann-Whitney AUROC of ``probs (V,)`` for binary ``targets (V,)``; NaN for a row with one class.

    ``weights (B, V)`` (default one row of ones): pair ``(i, j)`` counts ``w_i w_j``.
    """
    probs, targets = np.asarray(probs, float), np.asarray(targets, bool)
    rows = _rows(weights, probs.size)
    positive, negative = rows[:, targets], rows[:, ~targets]  # (B, P), (B, N)
    diff = probs[targets][:, None] - probs[~targets][None, :]
    wins = (diff > 0) + 0.5 * (diff == 0)  # (P, N)
    pairs = positive.sum(1) * negative.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, np.einsum("bp,pn,bn->b", positive, wins, negative) / pairs, np.nan)


def at_threshold(probs: np.ndarray, targets: np.ndarray, threshold: float,
                 weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """(B,) sensitivity, specificity and balanced accuracy of calling ``p >= threshold`` positive; NaN without a class."""
    probs, targets = np.asarray(probs, float), np.asarray(targets, bool)
    rows = _rows(weights, probs.size)
    called = probs >= threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = rows[:, targets & called].sum(1) / rows[:, targets].sum(1)
        specificity = rows[:, ~targets & ~called].sum(1) / rows[:, ~targets].sum(1)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 2}


def _bins(probs: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.asarray(probs, float) * bins).astype(int), bins - 1)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None,
                               bins: int = CALIBRATION_BINS) -> np.ndarray:
    """(B,) ECE over ``bins`` equal-width bins of [0, 1] (the last bin holds p = 1)."""
    probs, targets = np.asarray(probs, float), np.asarray(targets, float)
    rows = _rows(weights, probs.size)
    onehot = np.eye(bins)[_bins(probs, bins)]  # (V, bins)
    gaps = (rows * (targets - probs)) @ onehot  # (B, bins): sum of w (y - p) per bin
    return np.abs(gaps).sum(1) / rows.sum(1)


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """The reliability diagram: per non-empty bin its range, video count, mean probability and share of positives."""
    probs, targets = np.asarray(probs, float), np.asarray(targets, float)
    index = _bins(probs, bins)
    count = np.bincount(index, minlength=bins)
    confidence = np.bincount(index, probs, bins)
    positives = np.bincount(index, targets, bins)
    return [{"low": b / bins, "high": (b + 1) / bins, "videos": int(count[b]),
             "mean_probability": float(confidence[b] / count[b]), "positive_rate": float(positives[b] / count[b])}
            for b in range(bins) if count[b]]


def youden_threshold(probs: np.ndarray, targets: np.ndarray) -> float | None:
    """The threshold that maximises sensitivity + specificity - 1 (Youden's J) on these videos; None without both classes.

    Candidates are the videos' own probabilities (``p >= t`` is positive); of equal J the lowest
    threshold wins (the more sensitive one).
    """
    probs, targets = np.asarray(probs, float), np.asarray(targets, bool)
    if targets.all() or not targets.any():
        return None
    candidates = np.unique(probs)  # ascending
    called = probs[None, :] >= candidates[:, None]  # (C, V)
    sensitivity = (called & targets).sum(1) / targets.sum()
    specificity = (~called & ~targets).sum(1) / (~targets).sum()
    return float(candidates[int(np.argmax(sensitivity + specificity))])


def scores(probs: np.ndarray, targets: np.ndarray, threshold: float,
           weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every score of :data:`SCORES` as (B,) arrays."""
    return {"auroc": auroc(probs, targets, weights), **at_threshold(probs, targets, threshold, weights),
            "ece": expected_calibration_error(probs, targets, weights)}


def summarise(
    probs: np.ndarray,
    targets: np.ndarray,
    threshold: float,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of one label over its labelled videos, with percentile intervals over resampled videos.

    Returns:
        ``{score: value, score_ci: [low, high], "videos", "positives", "negatives", "threshold",
        "reliability": [...]}``; an interval is over the resamples where the score is defined (a
        resample of a single class has no AUROC) and None when fewer than half of them are.
    """
    probs, targets = np.asarray(probs, float), np.asarray(targets, bool)
    result: dict[str, Any] = {"videos": int(probs.size), "positives": int(targets.sum()),
                              "negatives": int((~targets).sum()), "threshold": float(threshold)}
    point = scores(probs, targets, threshold)
    sampled = scores(probs, targets, threshold, resample_counts(probs.size, resamples, seed)) if resamples else {}
    for name in SCORES:
        value = float(point[name][0])
        result[name] = value if np.isfinite(value) else None
        finite = sampled[name][np.isfinite(sampled[name])] if resamples else np.array([])
        result[f"{name}_ci"] = list(percentile_interval(finite, level)) if finite.size >= resamples / 2 and \
            finite.size else None
    result["reliability"] = reliability(probs, targets)
    return result
