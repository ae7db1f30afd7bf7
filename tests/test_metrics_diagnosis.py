"""Diagnosis scores (issue 30 item 3): hand-computed AUROC, sensitivity/specificity, balanced accuracy, ECE, intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryAUROC, BinaryCalibrationError

from flanet.metrics import diagnosis

# three malignant videos (0.9, 0.8, 0.3) and two benign (0.6, 0.2)
PROBS = np.array([0.9, 0.8, 0.3, 0.6, 0.2])
TARGETS = np.array([1, 1, 1, 0, 0], bool)


def test_auroc_counts_the_pairs_ranked_right():
    # 6 (malignant, benign) pairs; 0.3 < 0.6 is the only one ranked wrong: 5/6
    assert diagnosis.auroc(PROBS, TARGETS)[0] == pytest.approx(5 / 6)


def test_auroc_counts_ties_half_and_is_undefined_for_one_class():
    assert diagnosis.auroc(np.array([0.5, 0.5]), np.array([1, 0], bool))[0] == 0.5
    assert np.isnan(diagnosis.auroc(np.array([0.5, 0.7]), np.array([1, 1], bool))[0])


def test_auroc_weights_pairs_by_the_resample_counts():
    # counts (0, 1, 1, 2, 1): malignant weights 0, 1, 1 (sum 2), benign 2, 1 (sum 3): 6 weighted pairs;
    # 0.8 beats both benign (1 x 3), 0.3 beats only 0.2 (1 x 1): 4 / 6
    assert diagnosis.auroc(PROBS, TARGETS, np.array([[0, 1, 1, 2, 1]]))[0] == pytest.approx(4 / 6)


def test_sensitivity_specificity_and_balanced_accuracy_at_a_threshold():
    scores = diagnosis.at_threshold(PROBS, TARGETS, 0.5)
    # called positive: 0.9, 0.8, 0.6; 2 of 3 malignant found, 1 of 2 benign cleared
    assert scores["sensitivity"][0] == pytest.approx(2 / 3)
    assert scores["specificity"][0] == pytest.approx(1 / 2)
    assert scores["balanced_accuracy"][0] == pytest.approx(7 / 12)


def test_ece_is_the_weighted_mean_gap_per_bin():
    # each video alone in its bin: |1-.9| + |1-.8| + |1-.3| + |0-.6| + |0-.2| = 1.8, over 5 videos
    assert diagnosis.expected_calibration_error(PROBS, TARGETS)[0] == pytest.approx(0.36)
    # one bin [0.8, 0.9): 0.8 (malignant) and 0.85 (benign): |1 - 0.8 + 0 - 0.85| / 2 = 0.325
    assert diagnosis.expected_calibration_error(np.array([0.8, 0.85]), np.array([1, 0]))[0] == pytest.approx(0.325)


def test_scores_agree_with_torchmetrics_on_random_videos():
    rng = np.random.default_rng(3)
    probs, targets = rng.uniform(size=40), rng.uniform(size=40) < 0.4
    expected_auroc = BinaryAUROC()(torch.tensor(probs), torch.tensor(targets).long())
    expected_ece = BinaryCalibrationError(n_bins=10, norm="l1")(torch.tensor(probs), torch.tensor(targets).long())
    assert diagnosis.auroc(probs, targets)[0] == pytest.approx(float(expected_auroc), abs=1e-6)
    assert diagnosis.expected_calibration_error(probs, targets)[0] == pytest.approx(float(expected_ece), abs=1e-6)


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    # J at t = 0.2, 0.3, 0.6, 0.8, 0.9: 0, 1/2, 1/6, 2/3, 1/3
    assert diagnosis.youden_threshold(PROBS, TARGETS) == 0.8
    assert diagnosis.youden_threshold(PROBS, np.ones(5, bool)) is None


def test_reliability_bins_hold_count_confidence_and_positive_rate():
    bins = diagnosis.reliability(np.array([0.8, 0.85, 0.1]), np.array([1, 0, 0]))
    assert bins == [{"low": 0.1, "high": 0.2, "videos": 1, "mean_probability": 0.1, "positive_rate": 0.0},
                    {"low": 0.8, "high": 0.9, "videos": 2, "mean_probability": pytest.approx(0.825),
                     "positive_rate": 0.5}]


def test_summary_has_values_intervals_and_counts():
    summary = diagnosis.summarise(PROBS, TARGETS, 0.5, resamples=500, seed=0)
    assert summary["auroc"] == pytest.approx(5 / 6)
    assert (summary["videos"], summary["positives"], summary["negatives"]) == (5, 3, 2)
    low, high = summary["auroc_ci"]
    assert 0.0 <= low <= 5 / 6 <= high <= 1.0
    assert summary["balanced_accuracy"] == pytest.approx(7 / 12)
    assert summary["ece"] == pytest.approx(0.36)


def test_summary_without_resamples_has_no_intervals():
    summary = diagnosis.summarise(PROBS, TARGETS, 0.5, resamples=0)
    assert summary["auroc_ci"] is None and summary["auroc"] == pytest.approx(5 / 6)
