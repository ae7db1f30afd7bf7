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
        loss: scalar, mean of eq. (1) over the items that have a negative; exactly 0 (still
            attached to the graph, zero gradient) when no item has one.
        has_negative: ``(B,)`` bool, whether item ``b`` found a frame of another video.
    """

    loss: Tensor
    has_negative: Tensor


def heatmap_mse(heatmap: Tensor, target: Tensor) -> Tensor:
    """``L_MSE(H_t, G^H_t)`` of eq. (2): mean squared error over all pixels.

    Args:
        heatmap: predicted heatmap ``(B, 1, H, W)``.
        target: ground-truth Gaussian heatmap ``(B, 1, H, W)`` (all zero without lesion).

    Returns:
        Scalar tensor.
    """
    return F.mse_loss(heatmap.float(), target.float())


def nearest_other_video(video_index: Tensor) -> tuple[Tensor, Tensor]:
    """Choose, for every batch item, the negative of eq. (1): another video's frame.

    Item ``b`` takes the first item ``b + k`` (``k = 1, 2, ...``, cyclic over the batch)
    whose video index differs, i.e. the batch rolled by the smallest shift that leaves the
    video. Vectorised over a ``(B, B)`` table.

    Args:
        video_index: ``(B,)`` integer video index of each item.

    Returns:
        ``(negative, has_negative)``: ``(B,)`` long indices into the batch (``b`` itself when
        there is none) and ``(B,)`` bool.
    """
    batch = video_index.shape[0]
    position = torch.arange(batch, device=video_index.device)
    shift = (position[None, :] - position[:, None]) % batch  # (B, B): steps from b to j
    other_video = video_index[:, None] != video_index[None, :]  # (B, B)
    shift = torch.where(other_video, shift, torch.full_like(shift, batch))
    best_shift, negative = shift.min(dim=1)
    has_negative = best_shift < batch
    negative = torch.where(has_negative, negative, position)
    return negative, has_negative


def contrastive_loss(
    heatmap: Tensor, heatmap_prev: Tensor, video_index: Tensor, alpha: float
) -> ContrastiveTerm:
    """Location-based contrastive loss, paper eq. (1).

    ``L = max(MSE(H_t, H_{t-1}) - MSE(H_t, N_t) + alpha, 0)`` per item, with ``H_t`` and
    ``H_{t-1}`` the predicted heatmaps of the current and previous frame of the same video
    (anchor and positive) and ``N_t`` the predicted heatmap of the current frame of another
    video in the batch (negative, chosen by :func:`nearest_other_video`). Gradients flow
    through all three. The loss is averaged over the items that have a negative.

    A batch whose items all come from one video has no negative: the loss is then exactly 0
    (``has_negative`` all False), so training goes on with the other terms of eq. (2).

    Args:
        heatmap: ``H_t``, predicted heatmaps of the current frames ``(B, 1, H, W)``.
        heatmap_prev: ``H_{t-1}``, predicted heatmaps of the previous frames ``(B, 1, H, W)``.
        video_index: ``(B,)`` integer video index of each item.
        alpha: margin between positive and negative distances (MSE units, heatmap peak 1).

    Returns:
        :class:`ContrastiveTerm`.
    """
    anchor = heatmap.float().flatten(1)  # (B, H*W)
    positive_distance = (anchor - heatmap_prev.float().flatten(1)).pow(2).mean(1)  # (B,)
    negative, has_negative = nearest_other_video(video_index)
    negative_distance = (anchor - anchor[negative]).pow(2).mean(1)  # (B,)
    per_item = torch.relu(positive_distance - negative_distance + alpha)  # (B,)
    per_item = torch.where(has_negative, per_item, torch.zeros_like(per_item))
    loss = per_item.sum() / has_negative.sum().clamp(min=1)
    return ContrastiveTerm(loss=loss, has_negative=has_negative)
