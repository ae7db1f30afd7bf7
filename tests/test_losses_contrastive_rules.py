"""Eq. (1) on frames without a lesion and unusable positives: skipped, never penalised."""

from __future__ import annotations

import pytest
import torch

from flanet.losses import FLANetLoss, contrastive_loss


def _maps(values: list[list[float]]) -> torch.Tensor:
    """(B, 1, 1, N) maps from nested lists."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, :]


def test_lesion_free_frames_are_skipped_with_hand_values() -> None:
    heat = _maps([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).requires_grad_()
    prev = _maps([[0.5, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).requires_grad_()
    video = torch.tensor([0, 1, 2, 3])
    lesion = torch.tensor([True, True, False, False])  # items 2, 3: perfect all-zero heatmaps
    term = contrastive_loss(heat, prev, video, alpha=1.5, has_lesion=lesion)
    # negatives among frames with a lesion: 0 -> 1, 1 -> 0 (items 2 and 3 are skipped over)
    # item 0: max(0.125 - 1 + 1.5, 0) = 0.625; item 1: max(0 - 1 + 1.5, 0) = 0.5
    assert term.valid.tolist() == [True, True, False, False]
    assert term.has_negative.tolist() == [True, True, True, True]
    assert term.loss.item() == pytest.approx((0.625 + 0.5) / 2, rel=1e-6)
    term.loss.backward()
    assert torch.equal(heat.grad[2:], torch.zeros_like(heat.grad[2:]))  # no push off zero
    assert torch.equal(prev.grad[2:], torch.zeros_like(prev.grad[2:]))
    # without the rule the two lesion-free frames would cost alpha each (distance 0 to each other)
    assert contrastive_loss(heat, prev, video, alpha=1.5).loss.item() == pytest.approx((0.625 + 0.5 + 3.0) / 4)


def test_negative_is_the_nearest_other_video_frame_with_a_lesion() -> None:
    heat = _maps([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    prev = heat.clone()
    term = contrastive_loss(heat, prev, torch.tensor([0, 1, 2]), alpha=2.0, has_lesion=torch.tensor([True, False, True]))
    # item 0 skips item 1 (no lesion) and takes item 2: max(0 - 1 + 2, 0) = 1; item 2 takes item 0: 1
    assert term.loss.item() == pytest.approx(1.0)
    assert term.valid.tolist() == [True, False, True]


def test_unusable_positive_skips_the_triplet() -> None:
    heat = _maps([[1.0, 0.0], [0.0, 1.0]])
    prev = _maps([[0.0, 1.0], [0.0, 1.0]])
    term = contrastive_loss(heat, prev, torch.tensor([0, 1]), alpha=0.5, positive_valid=torch.tensor([False, True]))
    # item 0 (first frame of its video: "t-1" repeats t) is skipped; item 1: max(0 - 1 + 0.5, 0) = 0
    assert term.valid.tolist() == [False, True]
    assert term.loss.item() == 0.0
    term = contrastive_loss(heat, prev, torch.tensor([0, 1]), alpha=1.5, positive_valid=torch.tensor([False, True]))
    assert term.loss.item() == pytest.approx(0.5)  # one valid triplet: 0 - 1 + 1.5


@pytest.mark.parametrize("case", ["lesion-free", "no-positive"])
def test_batch_without_a_valid_triplet_gives_zero_and_no_gradient(case: str) -> None:
    heat = torch.rand(4, 1, 6, 6, requires_grad=True)
    prev = torch.rand(4, 1, 6, 6, requires_grad=True)
    video = torch.tensor([0, 1, 2, 3])  # negatives would exist for every item
    if case == "lesion-free":
        lesion, positive = torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    else:
        lesion, positive = torch.ones(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool)
    term = contrastive_loss(heat, prev, video, alpha=0.5, has_lesion=lesion, positive_valid=positive)
    assert term.loss.item() == 0.0 and not term.valid.any()
    term.loss.backward()
    assert torch.equal(heat.grad, torch.zeros_like(heat)) and torch.equal(prev.grad, torch.zeros_like(prev))


def test_total_loss_passes_the_rule_and_reports_valid_triplets() -> None:
    zeros = torch.zeros(2, 1, 4, 4)
    logits = torch.full((2, 1, 4, 4), -20.0)
    terms = FLANetLoss(alpha=0.3)(logits, zeros, zeros, zeros, zeros, torch.tensor([0, 1]), torch.tensor([False, False]))
    assert terms.contrastive.item() == 0.0 and terms.triplet_fraction.item() == 0.0
    with_lesion = FLANetLoss(alpha=0.3)(logits, zeros, zeros, zeros, zeros, torch.tensor([0, 1]))
    assert with_lesion.contrastive.item() == pytest.approx(0.3) and with_lesion.triplet_fraction.item() == 1.0
