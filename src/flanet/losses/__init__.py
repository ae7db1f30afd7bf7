"""Training losses of FLA-Net (paper Section 3.3, eqs. (1) and (2)) and of the compared methods."""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.losses.heatmap": ("ContrastiveTerm", "contrastive_loss", "heatmap_mse", "nearest_other_video"),
        "flanet.losses.mask": ("bce_loss", "boundary_weights", "dice_loss", "iou_loss", "weighted_bce_loss",
                               "weighted_iou_loss"),
        "flanet.losses.names": ("MASK_LOSSES", "MaskLossName", "mask_loss_of"),
        "flanet.losses.total": ("DEFAULT_ALPHA", "MASK_TERM_FUNCTIONS", "FLANetLoss", "LossTerms", "uses_heatmap_prev"),
    },
)
