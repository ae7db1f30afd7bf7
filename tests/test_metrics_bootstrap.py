"""Bootstrap confidence intervals over videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flanet.metrics.bootstrap import bootstrap_intervals, percentile_interval, resample_counts
from flanet.metrics.standard import summarise, summary_from_sums, video_sums


def test_resample_counts_are_reproducible_and_sum_to_the_number_of_videos() -> None:
    counts = resample_counts(7, num_resamples=50, seed=4)
    assert counts.shape == (50, 7)
    assert np.all(counts.sum(1) == 7)
    np.testing.assert_array_equal(counts, resample_counts(7, num_resamples=50, seed=4))
    assert not np.array_equal(counts, resample_counts(7, num_resamples=50, seed=5))


def test_percentile_interval() -> None:
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    with pytest.raises(ValueError):
        percentile_interval(np.arange(3.0), level=1.5)


def test_weights_count_videos_like_duplicated_frames() -> None:
    per_frame = {key: torch.tensor([0.2, 0.4, 0.9, 0.6]) for key in ("dice", "jaccard", "precision", "recall", "mae")}
    ids = ["a", "a", "b", "c"]
    _, sums, counts = video_sums(per_frame, ids)
    weighted = summary_from_sums(sums, counts, np.array([[2.0, 0.0, 1.0]]))
    duplicated = summarise({k: torch.tensor([0.2, 0.4, 0.2, 0.4, 0.6]) for k in per_frame}, ["a"] * 4 + ["c"])
    for key in ("dice", "mae", "f1"):
        assert weighted[key][0] == pytest.approx(duplicated[key])


def test_interval_contains_estimate_and_collapses_for_identical_videos() -> None:
    rng = np.random.default_rng(0)
    per_frame = {key: torch.tensor(rng.random(40)) for key in ("dice", "jaccard", "precision", "recall", "mae")}
    ids = [f"v{i // 4}" for i in range(40)]
    _, sums, counts = video_sums(per_frame, ids)
    intervals = bootstrap_intervals(lambda w: summary_from_sums(sums, counts, w), len(counts), 500)
    point = summarise(per_frame, ids)
    for key in ("dice", "f1", "mae"):
        low, high = intervals[key]
        assert low < point[key] < high
    same = summary_from_sums(np.ones((5, 5)) * 0.3, np.ones(5))
    flat = bootstrap_intervals(lambda w: summary_from_sums(np.ones((5, 5)) * 0.3, np.ones(5), w), 5, 100)
    assert flat["dice"] == pytest.approx((float(same["dice"]), float(same["dice"])))
