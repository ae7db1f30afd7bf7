"""Segmentation losses on the mask branch: the BCE and IoU terms of eq. (2).

Both take the raw ``mask_logits`` of a model (no sigmoid applied) and a binary ground-truth
mask, both shaped ``(B, 1, H, W)``, and optionally ``has_mask`` ``(B,)``: which items have a
known mask. Items without one (box-only frames, docs/data.md) are left out of the mean and get
no gradient, instead of being trained towards an empty mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mean(per_item: Tensor, has_mask: Tensor | None) -> Tensor:
    """Mean of ``per_item`` ``(B,)`` over the items with a mask; exactly 0 (zero gradient) when none has one."""
    if has_mask is None:
        return per_item.mean()
    keep = has_mask.to(device=per_item.device, dtype=torch.bool)
    kept = torch.where(keep, per_item, torch.zeros_like(per_item))  # where, not *: a NaN item stays out
    return kept.sum() / keep.sum().clamp(min=1)


def bce_loss(mask_logits: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy ``L_BCE(S_t, G^S_t)`` of eq. (2), mean over all pixels of the items with a mask.

    Args:
        mask_logits: predicted segmentation logits ``(B, 1, H, W)``.
        mask: ground-truth mask ``(B, 1, H, W)`` in ``{0, 1}``.
        has_mask: ``(B,)`` bool, items whose mask is known; None: all.

    Returns:
        Scalar tensor.
    """
    per_pixel = F.binary_cross_entropy_with_logits(mask_logits.float(), mask.float(), reduction="none")
    return masked_mean(per_pixel.flatten(1).mean(1), has_mask)


def iou_loss(mask_logits: Tensor, mask: Tensor, smooth: float = 1.0, has_mask: Tensor | None = None) -> Tensor:
    """Soft IoU loss ``L_IoU(S_t, G^S_t)`` of eq. (2), mean over the items with a mask.

    Per image: ``1 - (sum(p * g) + smooth) / (sum(p + g - p * g) + smooth)`` with
    ``p = sigmoid(mask_logits)``. ``smooth`` (1 pixel, as in PraNet-style IoU losses) keeps a
    frame without lesion well defined: predicting all background there costs 0.

    Args:
        mask_logits: predicted segmentation logits ``(B, 1, H, W)``.
        mask: ground-truth mask ``(B, 1, H, W)`` in ``{0, 1}``.
        smooth: additive smoothing in pixels, > 0.
        has_mask: ``(B,)`` bool, items whose mask is known; None: all.

    Returns:
        Scalar tensor.
    """
    prob = torch.sigmoid(mask_logits.float())  # (B, 1, H, W)
    target = mask.to(prob.dtype)
    intersection = (prob * target).flatten(1).sum(1)  # (B,)
    union = (prob + target).flatten(1).sum(1) - intersection  # (B,)
    return masked_mean(1.0 - (intersection + smooth) / (union + smooth), has_mask)


def dice_loss(mask_logits: Tensor, mask: Tensor, smooth: float = 1.0, has_mask: Tensor | None = None) -> Tensor:
    """Soft Dice loss, mean over the items with a mask (ACSNet's and TransUNet's training loss, beside BCE).

    Per image: ``1 - (2 sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)`` with ``p = sigmoid(mask_logits)``;
    ``smooth`` (1 pixel) makes an all-background prediction of a lesion-free frame cost 0.

    Args:
        mask_logits: predicted segmentation logits ``(B, 1, H, W)``.
        mask: ground-truth mask ``(B, 1, H, W)`` in ``{0, 1}``.
        smooth: additive smoothing in pixels, > 0.
        has_mask: ``(B,)`` bool, items whose mask is known; None: all.

    Returns:
        Scalar tensor.
    """
    prob = torch.sigmoid(mask_logits.float())
    target = mask.to(prob.dtype)
    intersection = (prob * target).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    return masked_mean(1.0 - (2 * intersection + smooth) / (total + smooth), has_mask)
