"""The mask losses of the compared methods: Dice, PraNet's weighted BCE and IoU, and deep supervision."""

from __future__ import annotations

import typing

import pytest
import torch

from flanet.losses import (
    MASK_LOSSES,
    MASK_TERM_FUNCTIONS,
    FLANetLoss,
    MaskLossName,
    bce_loss,
    boundary_weights,
    dice_loss,
    iou_loss,
    mask_loss_of,
    weighted_bce_loss,
    weighted_iou_loss,
)
from flanet.models import list_models
from flanet.models.registry import default_mask_loss


def _square_mask(size: int = 64) -> torch.Tensor:
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, 16:48, 16:48] = 1
    return mask


def test_boundary_weights_rise_near_the_edge_and_are_one_far_from_it() -> None:
    weights = boundary_weights(_square_mask(128))
    assert torch.allclose(weights[0, 0, 0, 127], torch.tensor(1.0))  # corner of the background, 31 px away
    assert weights[0, 0, 16, 32] > 2.0  # on the square's upper edge
    assert weights.min() >= 1.0 and weights.max() <= 6.0


def test_weighted_terms_equal_the_plain_ones_on_a_uniform_mask() -> None:
    logits = torch.randn(2, 1, 32, 32)
    empty = torch.zeros(2, 1, 32, 32)  # a lesion-free frame: every weight is 1
    assert torch.equal(boundary_weights(empty), torch.ones_like(empty))
    assert torch.allclose(weighted_bce_loss(logits, empty), bce_loss(logits, empty))
    assert torch.allclose(weighted_iou_loss(logits, empty), iou_loss(logits, empty))


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_the_complement() -> None:
    mask = _square_mask()
    assert dice_loss(40 * (2 * mask - 1), mask) < 1e-3
    assert dice_loss(-40 * (2 * mask - 1), mask) > 0.99


def test_items_without_a_mask_are_left_out() -> None:
    mask, logits = _square_mask(), torch.randn(2, 1, 64, 64)
    keep = torch.tensor([True, False])
    for term in (dice_loss, weighted_bce_loss, weighted_iou_loss):
        assert torch.allclose(term(logits, mask, has_mask=keep), term(logits[:1], mask[:1]))


def test_total_is_the_weighted_mask_terms_plus_weighted_sides() -> None:
    mask = _square_mask()
    main, sides = torch.randn(2, 1, 64, 64), [torch.randn(2, 1, 64, 64) for _ in range(3)]
    loss = FLANetLoss(bce_weight=2.0, iou_weight=3.0, mask_loss="wbce-wiou", side_weight=0.4)
    terms = loss(main, mask, side_logits=sides)

    def weighted(x: torch.Tensor) -> torch.Tensor:
        return 2.0 * weighted_bce_loss(x, mask) + 3.0 * weighted_iou_loss(x, mask)

    side = sum(weighted(s) for s in sides)
    assert terms.bce is None and terms.iou is None and terms.dice is None
    assert torch.allclose(terms.wbce, weighted_bce_loss(main, mask))
    assert torch.allclose(terms.side, side)
    assert torch.allclose(terms.total, weighted(main) + 0.4 * side)


def test_bce_and_dice_terms_and_no_side_term_without_side_outputs() -> None:
    mask, logits = _square_mask(), torch.randn(2, 1, 64, 64)
    terms = FLANetLoss(mask_loss="bce-dice", dice_weight=0.5)(logits, mask)
    assert terms.side is None and terms.iou is None
    assert torch.allclose(terms.total, bce_loss(logits, mask) + 0.5 * dice_loss(logits, mask))


def test_default_mask_terms_are_eq2() -> None:
    mask, logits = _square_mask(), torch.randn(2, 1, 64, 64)
    terms = FLANetLoss()(logits, mask)
    assert torch.allclose(terms.total, bce_loss(logits, mask) + iou_loss(logits, mask))


def test_an_unknown_mask_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="mask_loss must be one of"):
        FLANetLoss(mask_loss="focal")


def test_every_named_mask_loss_is_a_config_choice_and_computes() -> None:
    assert set(typing.get_args(MaskLossName)) == set(MASK_LOSSES)
    assert {t for terms in MASK_LOSSES.values() for t in terms} == set(MASK_TERM_FUNCTIONS)
    mask, logits = _square_mask(), torch.randn(2, 1, 64, 64)
    for name in MASK_LOSSES:
        assert torch.isfinite(FLANetLoss(mask_loss=name)(logits, mask).total)


def test_every_registered_model_has_a_named_default_mask_loss() -> None:
    defaults = {name: default_mask_loss(name) for name in list_models()}
    assert defaults["pranet"] == "wbce-wiou" and defaults["acsnet"] == "bce-dice" and defaults["setr"] == "bce"
    assert defaults["flanet"] == defaults["unet"] == "bce-iou"
    assert mask_loss_of(["wiou", "bce"]) == "structure"
    with pytest.raises(ValueError, match="no mask loss is made of"):
        mask_loss_of(["dice", "iou"])


def test_ssim_loss_equals_an_independent_computation_and_is_zero_for_a_perfect_map() -> None:
    """DCFNet's SSIM term: 1 - mean SSIM under an 11x11 Gaussian (sigma 1.5), zero padding, C1 = 0.01^2, C2 = 0.03^2."""
    import numpy as np
    from scipy import ndimage

    from flanet.losses.mask import ssim_loss

    torch.manual_seed(0)
    logits, mask = torch.randn(2, 1, 24, 20), (torch.rand(2, 1, 24, 20) > 0.5).float()
    x = np.arange(11) - 5
    g = np.exp(-x**2 / (2 * 1.5**2))
    window = np.outer(g, g) / g.sum() ** 2
    expected = []
    for p, t in zip(torch.sigmoid(logits)[:, 0].double().numpy(), mask[:, 0].double().numpy()):
        def blur(a):
            return ndimage.correlate(a, window, mode="constant")
        mp, mt = blur(p), blur(t)
        vp, vt, c = blur(p * p) - mp**2, blur(t * t) - mt**2, blur(p * t) - mp * mt
        ssim = (2 * mp * mt + 1e-4) * (2 * c + 9e-4) / ((mp**2 + mt**2 + 1e-4) * (vp + vt + 9e-4))
        expected.append(1 - ssim.mean())
    assert float(ssim_loss(logits, mask)) == pytest.approx(float(np.mean(expected)), abs=1e-5)
    assert float(ssim_loss(logits, mask, has_mask=torch.tensor([False, True]))) == pytest.approx(expected[1], abs=1e-5)
    assert float(ssim_loss(40 * (mask - 0.5), mask)) < 1e-5
