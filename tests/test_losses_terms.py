"""Losses of eqs. (1) and (2) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from flanet.losses import (
    FLANetLoss,
    bce_loss,
    contrastive_loss,
    heatmap_mse,
    iou_loss,
    nearest_other_video,
)

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def _maps(values: list[list[float]]) -> torch.Tensor:
    """(B, 1, 1, N) maps from nested lists."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, :]


def test_bce_matches_hand_value() -> None:
    logits = _maps([[LN3, LN3]])
    mask = _maps([[1.0, 0.0]])
    expected = (math.log(4 / 3) + math.log(4.0)) / 2  # -log(0.75), -log(0.25)
    assert bce_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)


def test_iou_matches_hand_value() -> None:
    logits = _maps([[LN3, 0.0], [0.0, 0.0]])  # probabilities [0.75, 0.5], [0.5, 0.5]
    mask = _maps([[1.0, 0.0], [0.0, 0.0]])
    # image 1: inter 0.75, union 1.25 + 1 - 0.75 = 1.5 -> 1 - 1.75 / 2.5 = 0.3
    # image 2 (no lesion): inter 0, union 1 -> 1 - 1 / 2 = 0.5
    assert iou_loss(logits, mask).item() == pytest.approx(0.4, rel=1e-6)
    assert iou_loss(logits[:1], mask[:1], smooth=0.0).item() == pytest.approx(0.5, rel=1e-6)


def test_iou_is_zero_for_perfect_and_empty_predictions() -> None:
    mask = _maps([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    logits = (mask * 2 - 1) * 50.0
    assert iou_loss(logits, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_heatmap_mse_matches_hand_value() -> None:
    pred = _maps([[1.0, 0.0], [0.5, 0.5]])
    target = _maps([[0.0, 0.0], [0.5, 1.5]])
    assert heatmap_mse(pred, target).item() == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_negative_is_nearest_following_item_of_another_video() -> None:
    negative, has = nearest_other_video(torch.tensor([0, 0, 1, 1]))
    assert negative.tolist() == [2, 2, 0, 0]
    assert has.all()
    negative, has = nearest_other_video(torch.tensor([3, 7, 3]))
    assert negative.tolist() == [1, 2, 1]


def test_contrastive_matches_hand_value() -> None:
    heat = _maps([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    prev = _maps([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    video = torch.tensor([0, 0, 1])  # negatives: 0 -> 2, 1 -> 2, 2 -> 0
    # positive MSE: 0, 0.5, 0.5; negative MSE: 1, 0.5, 1
    # max(pos - neg + 0.25, 0): 0, 0.25, 0 -> mean 0.25 / 3
    term = contrastive_loss(heat, prev, video, alpha=0.25)
    assert term.loss.item() == pytest.approx(0.25 / 3, rel=1e-6)
    assert term.has_negative.tolist() == [True, True, True]


def test_contrastive_gradient_reaches_anchor_positive_and_negative() -> None:
    heat = _maps([[1.0, 0.0], [0.2, 0.3]]).requires_grad_()
    prev = _maps([[0.0, 1.0], [0.2, 0.3]]).requires_grad_()
    # item 1's own triplet is skipped (unusable positive): its gradient can only come from
    # being item 0's negative, so a detached negative would leave it at zero
    term = contrastive_loss(heat, prev, torch.tensor([0, 1]), alpha=1.0, positive_valid=torch.tensor([True, False]))
    term.loss.backward()
    a, p, n = heat[0].detach().flatten(), prev[0].detach().flatten(), heat[1].detach().flatten()
    # L = relu(mean((a - p)^2) - mean((a - n)^2) + 1) over one valid triplet (active: 1 - 0.49 + 1 > 0)
    torch.testing.assert_close(heat.grad[0].flatten(), (a - p) - (a - n))  # d/da, 2/N = 1 for N = 2
    torch.testing.assert_close(prev.grad[0].flatten(), -(a - p))
    torch.testing.assert_close(heat.grad[1].flatten(), a - n)  # the negative is pushed away from a
    assert torch.equal(prev.grad[1], torch.zeros_like(prev.grad[1]))


def test_single_video_batch_gives_zero_contrastive_and_no_crash() -> None:
    heat = torch.rand(4, 1, 8, 8, requires_grad=True)
    prev = torch.rand(4, 1, 8, 8)
    term = contrastive_loss(heat, prev, torch.zeros(4, dtype=torch.long), alpha=0.5)
    assert term.loss.item() == 0.0
    assert not term.has_negative.any()
    term.loss.backward()
    assert torch.equal(heat.grad, torch.zeros_like(heat))


def test_total_is_weighted_sum_of_terms() -> None:
    torch.manual_seed(0)
    logits, heat, prev = torch.randn(3, 4, 1, 16, 16).unbind(0)
    mask = (torch.rand(4, 1, 16, 16) > 0.5).float()
    target = torch.rand(4, 1, 16, 16)
    video = torch.tensor([0, 0, 1, 2])
    loss = FLANetLoss(bce_weight=2, iou_weight=3, heatmap_weight=5, contrastive_weight=7, alpha=0.1)
    terms = loss(logits, mask, heat, target, prev, video)
    expected = (
        2 * bce_loss(logits, mask)
        + 3 * iou_loss(logits, mask)
        + 5 * heatmap_mse(heat, target)
        + 7 * contrastive_loss(heat, prev, video, 0.1).loss
    )
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.negative_fraction.item() == 1.0


def test_total_skips_heatmap_terms_for_models_without_heatmap() -> None:
    logits = torch.randn(2, 1, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    terms = FLANetLoss()(logits, mask)
    assert terms.heatmap is None and terms.contrastive is None
    assert terms.total.item() == pytest.approx((bce_loss(logits, mask) + iou_loss(logits, mask)).item())


def test_total_reports_single_video_batch() -> None:
    maps = torch.rand(2, 1, 8, 8)
    terms = FLANetLoss()(maps, maps.round(), maps, maps, maps, torch.tensor([4, 4]))
    assert terms.contrastive.item() == 0.0 and terms.negative_fraction.item() == 0.0


def test_total_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="negative"):
        FLANetLoss(alpha=-1)
    maps = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="heatmap_target"):
        FLANetLoss()(maps, maps, heatmap=maps)
    with pytest.raises(ValueError, match="video_index"):
        FLANetLoss()(maps, maps, maps, maps, heatmap_prev=maps)
