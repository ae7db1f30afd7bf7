"""PraNet's "structure" loss (Fan et al., MICCAI 2020, Section 2.3, eq. 4): pixel-weighted BCE and IoU.

``L = L^w_IoU + L^w_BCE`` with each pixel weighted by how much its mask value differs from the
mean of its 31x31 neighbourhood, ``w = 1 + 5 |avgpool_31(G) - G|`` (from F3Net, Wei et al. AAAI
2020): pixels near a lesion boundary count up to 6 times more than the inside of a region.
Both take raw logits and a binary mask ``(B, 1, H, W)``; items without a known mask (``has_mask``)
are left out, as in :mod:`flanet.losses.mask`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from flanet.losses.mask import masked_mean

#: Neighbourhood side and boundary emphasis of the weight map (PraNet's eq. 4 via F3Net).
WEIGHT_KERNEL = 31
WEIGHT_GAIN = 5.0


def boundary_weights(mask: Tensor) -> Tensor:
    """``w = 1 + 5 |avgpool_31(G) - G|`` ``(B, 1, H, W)``; the pooling counts the zero padding, as PraNet's."""
    target = mask.float()
    local_mean = F.avg_pool2d(target, WEIGHT_KERNEL, stride=1, padding=WEIGHT_KERNEL // 2)
    return 1.0 + WEIGHT_GAIN * (local_mean - target).abs()


def weighted_bce_loss(mask_logits: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """``L^w_BCE``: per image ``sum(w * bce) / sum(w)``, mean over the items with a mask."""
    weights = boundary_weights(mask)
    per_pixel = F.binary_cross_entropy_with_logits(mask_logits.float(), mask.float(), reduction="none")
    return masked_mean((weights * per_pixel).flatten(1).sum(1) / weights.flatten(1).sum(1), has_mask)


def weighted_iou_loss(mask_logits: Tensor, mask: Tensor, smooth: float = 1.0, has_mask: Tensor | None = None) -> Tensor:
    """``L^w_IoU``: per image ``1 - (sum(w p g) + s) / (sum(w (p + g)) - sum(w p g) + s)``, ``p = sigmoid``, ``s`` = 1."""
    weights = boundary_weights(mask)
    prob = torch.sigmoid(mask_logits.float())
    target = mask.float()
    intersection = (weights * prob * target).flatten(1).sum(1)
    union = (weights * (prob + target)).flatten(1).sum(1) - intersection
    return masked_mean(1.0 - (intersection + smooth) / (union + smooth), has_mask)
