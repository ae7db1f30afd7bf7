"""Segmentation losses on the mask branch: the BCE and IoU terms of eq. (2), and those of the compared methods.

Dice (ACSNet, TransUNet), the pixel-weighted BCE and IoU of PraNet's eq. (4) (:func:`boundary_weights`)
and the SSIM loss of DCFNet's (and BASNet's) hybrid loss.

All take the raw ``mask_logits`` of a model (no sigmoid applied) and a binary ground-truth
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


def boundary_weights(mask: Tensor, kernel: int = 31) -> Tensor:
    """``1 + 5 |avg_pool(G, kernel) - G|``: pixel weights up to 6 near mask edges, 1 far from them.

    PraNet's eq. (4) (from F3Net), also in FLA-Net's released training script. The pooling counts the
    zero padding, as theirs.
    """
    mask = mask.float()
    return 1 + 5 * (F.avg_pool2d(mask, kernel_size=kernel, stride=1, padding=kernel // 2) - mask).abs()


def weighted_iou_loss(mask_logits: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """``L^w_IoU`` of PraNet's eq. (4), the IoU half of the authors' released "structure loss": soft IoU with :func:`boundary_weights`.

    Per image ``1 - (sum(w p g) + 1) / (sum(w (p + g)) - sum(w p g) + 1)``, mean over the items with a
    mask. (Their BCE half passes ``reduce='none'``, which PyTorch reads as a mean, so its boundary
    weights cancel: it is :func:`bce_loss`.)
    """
    prob = torch.sigmoid(mask_logits.float())
    target = mask.to(prob.dtype)
    weights = boundary_weights(target)
    intersection = (prob * target * weights).flatten(1).sum(1)
    union = ((prob + target) * weights).flatten(1).sum(1)
    return masked_mean(1.0 - (intersection + 1) / (union - intersection + 1), has_mask)


def weighted_bce_loss(mask_logits: Tensor, mask: Tensor, has_mask: Tensor | None = None) -> Tensor:
    """PraNet's ``L^w_BCE`` (Fan et al., MICCAI 2020, eq. 4): per image ``sum(w * bce) / sum(w)``, :func:`boundary_weights`.

    As the paper defines it: the pixel weights count (PraNet's and FLA-Net's released code pass
    ``reduce='none'``, read by PyTorch as a mean, so there they cancel; that is ``bce`` with ``wiou``,
    the ``structure`` mask loss).
    """
    weights = boundary_weights(mask)
    per_pixel = F.binary_cross_entropy_with_logits(mask_logits.float(), mask.float(), reduction="none")
    return masked_mean((weights * per_pixel).flatten(1).sum(1) / weights.flatten(1).sum(1), has_mask)


def ssim_loss(mask_logits: Tensor, mask: Tensor, has_mask: Tensor | None = None, window: int = 11,
              sigma: float = 1.5) -> Tensor:
    """``1 - SSIM(p, G)``, mean over the items with a mask: the structural term of DCFNet's loss (BCE + SSIM + IoU).

    SSIM (Wang et al., TIP 2004) of the probability map ``p = sigmoid(mask_logits)`` and the mask,
    with local means, variances and covariance under an ``window x window`` Gaussian of ``sigma``
    (11, 1.5, zero padding, as ``pytorch_ssim`` that DCFNet's code uses) and ``C1 = 0.01^2``,
    ``C2 = 0.03^2``, averaged over the pixels of each image.
    """
    prob = torch.sigmoid(mask_logits.float())
    target = mask.to(prob.dtype)
    coords = torch.arange(window, dtype=prob.dtype, device=prob.device) - window // 2
    gauss = torch.exp(-coords**2 / (2 * sigma**2))
    kernel = (gauss[:, None] * gauss[None, :] / gauss.sum() ** 2)[None, None]

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, padding=window // 2)

    mu_p, mu_g = blur(prob), blur(target)
    var_p = blur(prob * prob) - mu_p**2
    var_g = blur(target * target) - mu_g**2
    cov = blur(prob * target) - mu_p * mu_g
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_p * mu_g + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_g**2 + c1) * (var_p + var_g + c2))
    return masked_mean(1.0 - ssim.flatten(1).mean(1), has_mask)
