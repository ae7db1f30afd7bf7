"""Training losses of FLA-Net (paper Section 3.3, eqs. (1) and (2))."""

from flanet.losses.heatmap import ContrastiveTerm, contrastive_loss, heatmap_mse, nearest_other_video
from flanet.losses.mask import bce_loss, iou_loss
from flanet.losses.total import DEFAULT_ALPHA, FLANetLoss, LossTerms, uses_heatmap_prev

__all__ = [
    "DEFAULT_ALPHA",
    "ContrastiveTerm",
    "FLANetLoss",
    "LossTerms",
    "bce_loss",
    "contrastive_loss",
    "heatmap_mse",
    "iou_loss",
    "nearest_other_video",
    "uses_heatmap_prev",
]
