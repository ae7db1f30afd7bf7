"""Bootstrap confidence intervals over videos (the unit that is sampled independently).

Frames of one video are strongly correlated, so resampling frames would give intervals that are
far too narrow. We resample *videos* with replacement (a cluster bootstrap): a resample is a
vector of counts (how often each video is drawn), every data-set score is recomputed under those
counts (frame means then weight each video's frames by its count), and the interval is the
percentile interval of the resampled scores. All resamples are computed at once as a matrix
product, no Python loop over resamples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def resample_counts(num_videos: int, num_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Counts of each video in ``num_resamples`` bootstrap resamples.

    Args:
        num_videos: V, number of videos.
        num_resamples: B, number of resamples.
        seed: seed of the random generator (results are reproducible).

    Returns:
        (B, V) float array; each row sums to V.
    """
    if num_videos < 1:
        raise ValueError("the bootstrap needs at least one video")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_videos, np.full(num_videos, 1.0 / num_videos), size=num_resamples).astype(float)


def percentile_interval(samples: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap samples (B,)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    num_videos: int,
    num_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every score returned by ``statistic``.

    Args:
        statistic: maps video weights (B, V) to ``{name: (B,) scores}`` (vectorised over resamples).
        num_videos: V.
        num_resamples: B.
        level: confidence level, 0.95 for 95% intervals.
        seed: random seed.

    Returns:
        ``{name: (low, high)}``.
    """
    scores = statistic(resample_counts(num_videos, num_resamples, seed))
    return {name: percentile_interval(values, level) for name, values in scores.items()}
