"""Losses on the localisation branch: heatmap MSE and the location-based contrastive loss.

Paper, Section 3.2 (heatmap ground truth: a Gaussian of std 5 at the lesion's bbox centre,
peak 1) and Section 3.3, eq. (1). Heatmaps are the raw regression outputs ``(B, 1, H, W)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ContrastiveTerm(NamedTuple):
    """Result of :func:`contrastive_loss`.

    Attributes:
        loss: scalar, mean of eq. (1) over the valid triplets; exactly 0 (still attached to
            the graph, zero gradient) when no triplet is valid.
        has_negative: ``(B,)`` bool, whether item ``b`` found a negative: a frame of another
            video that has a lesion.
        valid: ``(B,)`` bool, whether item ``b``'s triplet counts (see :func:`contrastive_loss`).
    """

    loss: Tensor
    has_negative: Tensor
    valid: Tensor


def heatmap_mse(heatmap: Tensor, target: Tensor) -> Tensor:
    """``L_MSE(H_t, G^H_t)`` of eq. (2): mean squared error over all pixels.

    Args:
        heatmap: predicted heatmap ``(B, 1, H, W)``.
        target: ground-truth Gaussian heatmap ``(B, 1, H, W)`` (all zero without lesion).

    Returns:
        Scalar tensor.
    """
    return F.mse_loss(heatmap.float(), target.float())


def nearest_other_video(video_index: Tensor, candidate: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Choose, for every batch item, the negative of eq. (1): another video's frame.

    Item ``b`` takes the first item ``b + k`` (``k = 1, 2, ...``, cyclic over the batch)
    whose video index differs and which is a ``candidate``, i.e. the batch rolled by the
    smallest shift that leaves the video. Vectorised over a ``(B, B)`` table.

    Args:
        video_index: ``(B,)`` integer video index of each item.
        candidate: ``(B,)`` bool, items that may serve as a negative (frames with a lesion);
            None: every item.

    Returns:
        ``(negative, has_negative)``: ``(B,)`` long indices into the batch (``b`` itself when
        there is none) and ``(B,)`` bool.
    """
    batch = video_index.shape[0]
    position = torch.arange(batch, device=video_index.device)
    shift = (position[None, :] - position[:, None]) % batch  # (B, B): steps from b to j
    allowed = video_index[:, None] != video_index[None, :]  # (B, B)
    if candidate is not None:
        allowed = allowed & candidate.to(device=video_index.device, dtype=torch.bool)[None, :]
    shift = torch.where(allowed, shift, torch.full_like(shift, batch))
    best_shift, negative = shift.min(dim=1)
    has_negative = best_shift < batch
    negative = torch.where(has_negative, negative, position)
    return negative, has_negative


def contrastive_loss(
    heatmap: Tensor,
    heatmap_prev: Tensor,
    video_index: Tensor,
    alpha: float,
    has_lesion: Tensor | None = None,
    positive_valid: Tensor | None = None,
) -> ContrastiveTerm:
    """Location-based contrastive loss, paper eq. (1).

    ``L = max(MSE(H_t, H_{t-1}) - MSE(H_t, N_t) + alpha, 0)`` per item, with ``H_t`` and
    ``H_{t-1}`` the predicted heatmaps of the current and previous frame of the same video
    (anchor and positive) and ``N_t`` the predicted heatmap of the current frame of another
    video in the batch (negative, chosen by :func:`nearest_other_video`). Gradients flow
    through all three.

    Eq. (1) compares lesion *locations*, so a triplet counts only when every frame it
    compares has a lesion; any other triplet is skipped (contributes nothing, gets no
    gradient), never penalised:

    - the anchor ``t`` has a lesion (``has_lesion``);
    - the negative is the nearest item of another video *with a lesion*; an item without
      one has no triplet;
    - the positive is usable (``positive_valid``): a frame other than ``t`` itself (not the
      repeat of ``t`` at the first frame of a video) and not annotated as lesion-free. A
      previous frame without annotation is assumed to show the anchor's lesion (the
      temporal premise of Section 3.3).

    The loss is the mean over valid triplets; exactly 0 with zero gradient when there is
    none (e.g. a batch from one video, or of lesion-free frames only), so training goes on
    with the other terms of eq. (2).

    Args:
        heatmap: ``H_t``, predicted heatmaps of the current frames ``(B, 1, H, W)``.
        heatmap_prev: ``H_{t-1}``, predicted heatmaps of the previous frames ``(B, 1, H, W)``.
        video_index: ``(B,)`` integer video index of each item.
        alpha: margin between positive and negative distances (MSE units, heatmap peak 1).
        has_lesion: ``(B,)`` bool, frame ``t`` has a lesion; None: every frame has one.
        positive_valid: ``(B,)`` bool, ``H_{t-1}`` is a usable positive; None: all are.

    Returns:
        :class:`ContrastiveTerm`.
    """
    device = heatmap.device
    batch = heatmap.shape[0]
    lesion = torch.ones(batch, dtype=torch.bool, device=device) if has_lesion is None else has_lesion.bool().to(device)
    positive_ok = lesion if positive_valid is None else lesion & positive_valid.bool().to(device)
    anchor = heatmap.float().flatten(1)  # (B, H*W)
    positive_distance = (anchor - heatmap_prev.float().flatten(1)).pow(2).mean(1)  # (B,)
    negative, has_negative = nearest_other_video(video_index.to(device), lesion)
    negative_distance = (anchor - anchor[negative]).pow(2).mean(1)  # (B,)
    per_item = torch.relu(positive_distance - negative_distance + alpha)  # (B,)
    valid = positive_ok & has_negative
    per_item = torch.where(valid, per_item, torch.zeros_like(per_item))
    loss = per_item.sum() / valid.sum().clamp(min=1)
    return ContrastiveTerm(loss=loss, has_negative=has_negative, valid=valid)
