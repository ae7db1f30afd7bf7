"""Segmentation losses on the mask branch: the BCE and IoU terms of eq. (2).

Both take the raw ``mask_logits`` of a model (no sigmoid applied) and a binary ground-truth
mask, both shaped ``(B, 1, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_loss(mask_logits: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy ``L_BCE(S_t, G^S_t)`` of eq. (2), mean over all pixels.

    Args:
        mask_logits: predicted segmentation logits ``(B, 1, H, W)``.
        mask: ground-truth mask ``(B, 1, H, W)`` in ``{0, 1}``.

    Returns:
        Scalar tensor.
    """
    return F.binary_cross_entropy_with_logits(mask_logits.float(), mask.float())


def iou_loss(mask_logits: Tensor, mask: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft IoU loss ``L_IoU(S_t, G^S_t)`` of eq. (2), mean over the batch.

    Per image: ``1 - (sum(p * g) + smooth) / (sum(p + g - p * g) + smooth)`` with
    ``p = sigmoid(mask_logits)``. ``smooth`` (1 pixel, as in PraNet-style IoU losses) keeps a
    frame without lesion well defined: predicting all background there costs 0.

    Args:
        mask_logits: predicted segmentation logits ``(B, 1, H, W)``.
        mask: ground-truth mask ``(B, 1, H, W)`` in ``{0, 1}``.
        smooth: additive smoothing in pixels, > 0.

    Returns:
        Scalar tensor.
    """
    prob = torch.sigmoid(mask_logits.float())  # (B, 1, H, W)
    target = mask.to(prob.dtype)
    intersection = (prob * target).flatten(1).sum(1)  # (B,)
    union = (prob + target).flatten(1).sum(1) - intersection  # (B,)
    return (1.0 - (intersection + smooth) / (union + smooth)).mean()
