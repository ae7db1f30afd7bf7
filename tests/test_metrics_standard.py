"""Standard protocol (threshold 0.5) against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from flanet.metrics.standard import frame_scores, summarise, video_sums


def _frame(values: dict[tuple[int, int], float], size: int = 4) -> torch.Tensor:
    """(1, 1, size, size) map with the given pixel values, zero elsewhere."""
    frame = torch.zeros(1, 1, size, size)
    for (row, col), value in values.items():
        frame[0, 0, row, col] = value
    return frame


def _scores(prob: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    return {key: float(value[0]) for key, value in frame_scores(prob, gt).items()}


def test_perfect_prediction_scores_one_and_zero_mae() -> None:
    gt = _frame({(1, 1): 1, (1, 2): 1, (2, 1): 1})
    scores = _scores(gt.clone(), gt)
    assert scores == {"dice": 1.0, "jaccard": 1.0, "precision": 1.0, "recall": 1.0, "mae": 0.0}


def test_empty_ground_truth_and_empty_prediction_is_perfect_agreement() -> None:
    prob = torch.full((1, 1, 4, 4), 0.2)
    scores = _scores(prob, torch.zeros(1, 1, 4, 4))
    assert scores["dice"] == scores["jaccard"] == scores["precision"] == scores["recall"] == 1.0
    assert scores["mae"] == pytest.approx(0.2)


def test_lesion_predicted_on_empty_frame_scores_zero() -> None:
    prob = _frame({(0, 0): 0.9, (0, 1): 0.8})
    scores = _scores(prob, torch.zeros(1, 1, 4, 4))
    assert scores["dice"] == scores["jaccard"] == scores["precision"] == scores["recall"] == 0.0
    assert scores["mae"] == pytest.approx((0.9 + 0.8) / 16)


def test_missed_lesion_scores_zero() -> None:
    gt = _frame({(3, 3): 1, (3, 2): 1})
    prob = _frame({(3, 3): 0.4})
    scores = _scores(prob, gt)
    assert scores["dice"] == scores["jaccard"] == scores["precision"] == scores["recall"] == 0.0
    assert scores["mae"] == pytest.approx((0.6 + 1.0) / 16)


def test_one_pixel_lesion() -> None:
    gt = _frame({(2, 2): 1})
    prob = _frame({(2, 2): 0.9, (2, 3): 0.6, (0, 0): 0.5})  # 0.5 is not > 0.5: background
    scores = _scores(prob, gt)  # TP 1, predicted 2, ground truth 1
    assert scores["dice"] == pytest.approx(2 / 3)
    assert scores["jaccard"] == pytest.approx(1 / 2)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1.0)
    assert scores["mae"] == pytest.approx((0.1 + 0.6 + 0.5) / 16)


def test_batch_is_scored_frame_by_frame() -> None:
    gt = torch.cat([_frame({(2, 2): 1}), _frame({}), _frame({(0, 0): 1})])
    prob = torch.cat([_frame({(2, 2): 0.9, (2, 3): 0.6}), _frame({}), _frame({})])
    scores = frame_scores(prob, gt.bool())
    assert torch.allclose(scores["dice"], torch.tensor([2 / 3, 1.0, 0.0]))
    assert torch.allclose(scores["recall"], torch.tensor([1.0, 1.0, 0.0]))
    assert all(value.shape == (3,) for value in scores.values())


def test_summarise_f1_is_harmonic_mean_of_mean_precision_and_recall() -> None:
    gt = torch.cat([_frame({(2, 2): 1}), _frame({(1, 1): 1})])
    prob = torch.cat([_frame({(2, 2): 0.9, (2, 3): 0.6}), _frame({(1, 1): 1.0})])
    summary = summarise(frame_scores(prob, gt), ["a", "b"])
    # frame 1: P 1/2, R 1, Dice 2/3; frame 2: perfect.
    assert summary["precision"] == pytest.approx(0.75)
    assert summary["recall"] == pytest.approx(1.0)
    assert summary["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert summary["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["num_frames"] == 2 and summary["num_videos"] == 2


def test_summarise_weights_every_frame_equally() -> None:
    per_frame = {key: torch.tensor([1.0, 1.0, 1.0, 0.0]) for key in ("dice", "jaccard", "precision", "recall", "mae")}
    summary = summarise(per_frame, ["long", "long", "long", "short"])
    assert summary["dice"] == pytest.approx(0.75)
    assert summary["num_videos"] == 2


def test_video_sums_keep_first_appearance_order() -> None:
    per_frame = {key: torch.tensor([1.0, 2.0, 3.0]) for key in ("dice", "jaccard", "precision", "recall", "mae")}
    videos, sums, counts = video_sums(per_frame, ["z", "a", "z"])
    assert videos == ["z", "a"]
    assert sums[:, 0].tolist() == [4.0, 2.0]
    assert counts.tolist() == [2.0, 1.0]


@pytest.mark.parametrize(
    ("prob", "gt", "message"),
    [
        (torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5), "shape"),
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), r"\(N, 1, H, W\)"),
        (torch.full((1, 1, 4, 4), 1.5), torch.zeros(1, 1, 4, 4), "sigmoid"),
        (torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5), "binary"),
    ],
)
def test_bad_input_is_rejected(prob: torch.Tensor, gt: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frame_scores(prob, gt)


def test_summarise_rejects_mismatched_ids() -> None:
    per_frame = {key: torch.zeros(3) for key in ("dice", "jaccard", "precision", "recall", "mae")}
    with pytest.raises(ValueError, match="video ids"):
        summarise(per_frame, ["a", "b"])
