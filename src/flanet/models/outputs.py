"""Typed outputs shared by every segmentation model in :mod:`flanet.models`."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class SegmentationOutput(NamedTuple):
    """What a model predicts for the current frame I_t of each clip.

    Attributes:
        mask_logits: ``(B, 1, H, W)`` segmentation logits S_t at input resolution
            (apply ``sigmoid`` for probabilities). ``forward_windows`` returns
            ``(B, W, 1, H, W)``, one map per window.
        heatmap: ``(B, 1, H, W)`` lesion-location heatmap H_t (raw regression output;
            its target is a Gaussian with peak 1, Section 3.2), or ``None`` for models
            without the localisation branch.
        side_logits: deep-supervision predictions ``(B, 1, H, W)`` each, at input resolution,
            given in training mode by models trained with side losses (PraNet's global map and
            reverse-attention outputs, ACSNet's decoder side outputs, SETR's auxiliary heads);
            empty in eval mode and for every other model.
    """

    mask_logits: Tensor
    heatmap: Tensor | None
    side_logits: tuple[Tensor, ...] = ()
