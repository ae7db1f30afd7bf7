"""Video behaviour metrics (temporal stability, detection, localisation): the docs/metrics.md worked example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flanet.evaluation.behaviour import NOT_APPLICABLE, BehaviourScorer
from flanet.evaluation.scoring import EvaluationScorer
from flanet.metrics import video as measures


def _example() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The worked example: video A (3 frames), video B (2 frames), 4x4 frames, probabilities."""
    gt = np.zeros((5, 4, 4), bool)
    gt[0, 1:3, 1:3] = gt[1, 1:3, 1:3] = True  # A0, A1: 2x2 lesion; A2 lesion-free
    gt[3, 0:2, 0:2] = True  # B0: lesion; B1 lesion-free
    prob = np.full((5, 4, 4), 0.1)
    prob[0, 1:3, 1:3] = 0.9  # A0: exactly the lesion
    prob[1, 1:3, 1:4] = 0.8  # A1: lesion + one column (6 px)
    prob[2, 0, 0:2] = 0.6  # A2: 2 px false positive
    prob[3, 0:2, 0:2] = 0.4  # B0: lesion missed (below 0.5)
    prob[4, 0, 0] = 0.2  # B1: clean
    return {"A": (prob[:3], gt[:3]), "B": (prob[3:], gt[3:])}


def _scorer(chunks: list[tuple[str, slice]], centres: dict[str, np.ndarray] | None = None) -> BehaviourScorer:
    scorer = BehaviourScorer()
    data = _example()
    for video, part in chunks:
        prob, gt = data[video]
        centre = None if centres is None else centres[video][part]
        scorer.add(video, torch.from_numpy(prob[part]).float(), torch.from_numpy(gt[part]), centre)
    return scorer


def test_worked_example_hand_computed() -> None:
    scorer = _scorer([("A", slice(0, 2)), ("A", slice(2, 3)), ("B", slice(0, 2))])  # A split across chunks
    metrics, per_video, per_frame = scorer.result(
        ["A", "B"], ["A"] * 3 + ["B"] * 2, {"A": (0.5, 0.2)}, num_resamples=200, level=0.95, seed=0
    )
    # mask change (1 - Dice): A0->A1 pred 1 - 8/10 = 0.2, gt 0; A1->A2 pred 1, gt 1; B0->B1 pred 0, gt 1
    np.testing.assert_allclose(per_frame["mask_change_pred"], [np.nan, 0.2, 1.0, np.nan, 0.0], atol=1e-6)
    np.testing.assert_allclose(per_frame["mask_change_gt"], [np.nan, 0.0, 1.0, np.nan, 1.0], atol=1e-6)
    assert metrics["mask_change_pred"] == pytest.approx(1.2 / 3, abs=1e-6)
    assert metrics["mask_change_gt"] == pytest.approx(2 / 3)
    assert metrics["flicker"] == pytest.approx(0.2 / 3, abs=1e-6)  # only A0->A1 changes beyond the truth
    assert metrics["sensitivity"] == pytest.approx(2 / 3)  # A0, A1 found, B0 missed
    assert metrics["specificity"] == pytest.approx(1 / 2)  # A2 false positive, B1 clean
    assert metrics["fp_frames_per_video"] == pytest.approx(1 / 2)
    assert metrics["fp_area_px"] == pytest.approx(2.0)
    assert metrics["fp_area_fraction"] == pytest.approx((2 / 16 + 0) / 2)
    assert metrics["auroc"] == pytest.approx(5 / 6)  # lesion max 0.9, 0.8, 0.4 vs lesion-free 0.6, 0.2
    # centroid of A1's prediction (2.5, 2) vs bbox centre (2, 2); A0 exact; B0 has no predicted centre
    np.testing.assert_allclose(per_frame["centre_error_px"], [0.0, 0.5, np.nan, np.nan, np.nan], atol=1e-6)
    assert metrics["loc_error_px"] == pytest.approx(0.25, abs=1e-6)
    assert metrics["loc_missed"] == pytest.approx(1 / 3)
    assert metrics["loc_error_mm"] == pytest.approx((0 + 0.5 * 0.2) / 2, abs=1e-6)  # column spacing 0.2 mm
    np.testing.assert_allclose(per_video["flicker"], [0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(per_video["fp_frames"], [1, 0])
    detection = metrics["video_behaviour"]["detection"]
    assert detection["applicable"] and detection["lesion_free_frames"] == 2
    assert metrics["ci"]["flicker"][0] <= metrics["flicker"] <= metrics["ci"]["flicker"][1]
    # resamples draw A and B once each (5/6), A twice or B twice (each alone ranks its frames perfectly: 1)
    assert metrics["ci"]["auroc"] == pytest.approx([5 / 6, 1.0])


def test_heatmap_centres_replace_mask_centroids() -> None:
    centres = {"A": np.array([[3.0, 2.0], [2.0, 2.0], [0.0, 0.0]]), "B": np.array([[1.0, 4.0], [0.0, 0.0]])}
    scorer = _scorer([("A", slice(0, 3)), ("B", slice(0, 2))], centres)
    metrics, _, per_frame = scorer.result(["A", "B"], ["A"] * 3 + ["B"] * 2, None, 50, 0.95, 0)
    # A0: |3 - 2| = 1; A1: 0; B0 (bbox centre (1, 1)): |4 - 1| = 3, found although its mask is empty
    np.testing.assert_allclose(per_frame["centre_error_px"], [1.0, 0.0, np.nan, 3.0, np.nan])
    assert metrics["loc_error_px"] == pytest.approx(4 / 3) and metrics["loc_missed"] == 0
    assert metrics["loc_error_mm"] is None
    assert metrics["video_behaviour"]["localisation"]["predicted_centre"] == "heatmap peak"


def test_detection_not_applicable_without_lesion_free_frames() -> None:
    gt = np.zeros((3, 8, 8), bool)
    gt[:, 2:5, 2:5] = True
    prob = (gt * 230).astype(np.uint8)
    with EvaluationScorer() as scorer:
        scorer.add("v", ["0", "1", "2"], prob, gt)
        result = scorer.result(num_resamples=50)
    assert result.metrics["specificity"] is None and result.metrics["auroc"] is None
    assert result.metrics["sensitivity"] == 1.0 and result.metrics["flicker"] == 0.0
    assert result.metrics["video_behaviour"]["detection"] == {
        "applicable": False, "note": NOT_APPLICABLE, "score": "maximum probability of the frame",
        "lesion_frames": 3, "lesion_free_frames": 0, "false_positive_frames": 0,
    }
    assert result.per_video[0]["flicker"] == 0.0 and result.per_frame[0]["mask_change_pred"] == ""


def test_auroc_ties_and_one_class() -> None:
    assert measures.auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert measures.auroc(np.array([0.1, 0.9, 0.9]), np.array([False, True, False])) == pytest.approx(0.75)
    assert np.isnan(measures.auroc(np.array([0.1, 0.2]), np.array([True, True])))


def test_weighted_auroc_counts_each_frame_by_its_video_weight() -> None:
    scores = np.array([0.9, 0.8, 0.6, 0.4, 0.2])  # the worked example's frame maxima: A0 A1 A2 | B0 B1
    lesion = np.array([True, True, False, True, False])
    histograms = measures.detection_histograms(scores, lesion, np.array([0, 0, 0, 1, 1]), 2)
    assert float(measures.weighted_auroc(*histograms)) == pytest.approx(5 / 6)
    # A twice, B once: positives 0.9 (2), 0.8 (2), 0.4 (1); negatives 0.6 (2), 0.2 (1); 15 weighted pairs,
    # wrong only 0.4 < 0.6 (weight 1 x 2): 13/15. A alone or B alone: 1. Nothing drawn: NaN.
    np.testing.assert_allclose(measures.weighted_auroc(*histograms, np.array([[2, 1], [2, 0], [0, 2], [0, 0]])),
                               [13 / 15, 1.0, 1.0, np.nan])


def test_weighted_auroc_equals_the_auroc_of_the_resampled_frames() -> None:
    rng = np.random.default_rng(3)
    inverse = rng.integers(0, 6, 80)
    scores = np.round(rng.random(80), 1)  # ties
    lesion = rng.random(80) < 0.5
    counts = rng.multinomial(6, np.full(6, 1 / 6), size=5).astype(float)
    histograms = measures.detection_histograms(scores, lesion, inverse, 6)
    resampled = measures.weighted_auroc(*histograms, counts, block=8)  # blocks of 8 // 11 -> 1 resample
    for b, row in enumerate(counts):
        frames = np.repeat(np.arange(80), row[inverse].astype(int))  # each frame as often as its video was drawn
        pos, neg = scores[frames][lesion[frames]], scores[frames][~lesion[frames]]
        pairs = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
        assert resampled[b] == pytest.approx(pairs / (len(pos) * len(neg)))


def test_bbox_centre_and_centroid_use_pixel_edge_coordinates() -> None:
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    mask[0, 1, 2:5] = True  # one row, columns 2..4: bbox [2, 5) x [1, 2)
    mask[0, 3, 4] = True  # bbox [2, 5) x [1, 4)
    np.testing.assert_allclose(measures.bbox_centre(mask)[0].numpy(), [3.5, 2.5])
    np.testing.assert_allclose(measures.mask_centroid(mask)[0].numpy(), [(2.5 + 3.5 + 4.5 + 4.5) / 4, (1.5 * 3 + 3.5) / 4])
    assert torch.isnan(measures.bbox_centre(mask)[1]).all() and torch.isnan(measures.mask_centroid(mask)[1]).all()
