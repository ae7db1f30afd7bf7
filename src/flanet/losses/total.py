"""Total training loss of FLA-Net, paper eq. (2), and the mask losses of the compared methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import Tensor, nn

from flanet.losses.heatmap import contrastive_loss, heatmap_mse
from flanet.losses.mask import bce_loss, dice_loss, iou_loss, ssim_loss, weighted_bce_loss, weighted_iou_loss
from flanet.losses.names import MASK_LOSSES

#: Mask term name -> its function (:mod:`flanet.losses.mask`).
MASK_TERM_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "bce": bce_loss,
    "iou": iou_loss,
    "dice": dice_loss,
    "wbce": weighted_bce_loss,
    "wiou": weighted_iou_loss,
    "ssim": ssim_loss,
}

#: Default margin of eq. (1). The paper does not state alpha. Heatmap MSE is small: two
#: disjoint Gaussian peaks (std 5, peak 1) on a 352x352 map are 2*pi*25/352**2 = 1.3e-3
#: apart, so a margin of 1e-3 asks the negative to be about that far from the anchor.
DEFAULT_ALPHA = 1e-3


class LossTerms(NamedTuple):
    """Every term of eq. (2), unweighted, and their weighted sum.

    Attributes:
        total: weighted sum (the value to back-propagate), scalar.
        bce: ``L_BCE(S_t, G^S_t)``, or None when the mask terms do not include ``bce``.
        iou: ``L_IoU(S_t, G^S_t)``, or None when the mask terms do not include ``iou``.
        heatmap: ``L_MSE(H_t, G^H_t)``, or None when the model has no localisation branch.
        contrastive: eq. (1), or None when it is not computed (no heatmap, no ``H_{t-1}``,
            or weight 0).
        negative_fraction: share of batch items that found a negative for eq. (1), a frame
            of another video with a lesion (0 for a batch from one video, where
            ``contrastive`` is then 0); None when not computed.
        triplet_fraction: share of batch items whose triplet of eq. (1) counts (lesion in
            anchor, positive and negative, see :func:`~flanet.losses.contrastive_loss`);
            None when not computed.
        dice: Dice loss of ``S_t``, when a mask term.
        wbce: PraNet's weighted BCE of ``S_t``, when a mask term.
        wiou: PraNet's weighted IoU of ``S_t``, when a mask term.
        side: deep supervision, the weighted mask terms summed over the model's side outputs
            (before ``side_weight``); None for a model without side outputs.
        ssim: ``1 - SSIM`` of ``S_t`` (DCFNet's loss), when a mask term.
    """

    total: Tensor
    bce: Tensor | None
    iou: Tensor | None
    heatmap: Tensor | None
    contrastive: Tensor | None
    negative_fraction: Tensor | None
    triplet_fraction: Tensor | None
    dice: Tensor | None = None
    wbce: Tensor | None = None
    wiou: Tensor | None = None
    side: Tensor | None = None
    ssim: Tensor | None = None


class FLANetLoss(nn.Module):
    """``L_total = w_c L_contrastive + w_h L_MSE(H_t) + w_b L_BCE(S_t) + w_i L_IoU(S_t)``, eq. (2).

    The paper sets every weight to 1 (``lambda_1 = lambda_2 = lambda_3 = 1``, contrastive
    unweighted). Terms that need a heatmap are skipped for models without a localisation
    branch (flanet-basic, flanet-ffa, image baselines); the contrastive term is skipped when
    ``heatmap_prev`` is not given or ``contrastive_weight`` is 0 (the default of every model
    but ``flanet``, e.g. Table 3 "Basic+LB" and "Basic+FLA+LB").

    The mask part is eq. (2)'s ``bce`` + ``iou`` unless ``mask_loss`` names another
    (:data:`~flanet.losses.names.MASK_LOSSES`): e.g. PraNet's ``wbce`` + ``wiou``, ACSNet's ``bce`` + ``dice``.
    Side outputs of deeply supervised models (``side_logits``) get the same mask terms, each side
    weighted by ``side_weight`` (PraNet and ACSNet 1, SETR's auxiliary heads 0.4).

    Args:
        bce_weight: ``lambda_2``; also scales ``wbce``.
        iou_weight: ``lambda_3``; also scales ``wiou``.
        heatmap_weight: ``lambda_1``.
        contrastive_weight: weight of eq. (1).
        alpha: margin of eq. (1), see :data:`DEFAULT_ALPHA`.
        mask_loss: a name of :data:`~flanet.losses.names.MASK_LOSSES`: ``"bce-iou"`` (eq. 2),
            ``"structure"`` (the authors' released training script: BCE and the IoU weighted by
            :func:`~flanet.losses.mask.boundary_weights`; with ``heatmap_weight=0.5``, heatmap sigma
            10 and no contrastive term it is their loss), or a compared method's own loss
            (``"wbce-wiou"`` PraNet, ``"bce-dice"`` ACSNet and TransUNet, ``"bce"`` ResUNet++ and SETR).
        dice_weight: scales ``dice``.
        side_weight: weight of each side output's mask loss.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        iou_weight: float = 1.0,
        heatmap_weight: float = 1.0,
        contrastive_weight: float = 1.0,
        alpha: float = DEFAULT_ALPHA,
        mask_loss: str = "bce-iou",
        dice_weight: float = 1.0,
        side_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"mask_loss must be one of {', '.join(MASK_LOSSES)}, got {mask_loss!r}")
        self.mask_loss = mask_loss
        weights = {
            "bce_weight": bce_weight,
            "iou_weight": iou_weight,
            "heatmap_weight": heatmap_weight,
            "contrastive_weight": contrastive_weight,
            "alpha": alpha,
            "dice_weight": dice_weight,
            "side_weight": side_weight,
        }
        negative = [name for name, value in weights.items() if value < 0]
        if negative:
            raise ValueError(f"loss weights and alpha must be >= 0, got negative {negative}")
        self.mask_terms: tuple[str, ...] = MASK_LOSSES[mask_loss]
        self.dice_weight = float(dice_weight)
        self.side_weight = float(side_weight)
        self._term_weights = {"bce": float(bce_weight), "wbce": float(bce_weight), "iou": float(iou_weight),
                              "wiou": float(iou_weight), "dice": float(dice_weight), "ssim": 1.0}
        self.bce_weight = float(bce_weight)
        self.iou_weight = float(iou_weight)
        self.heatmap_weight = float(heatmap_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.alpha = float(alpha)

    def forward(
        self,
        mask_logits: Tensor,
        mask: Tensor,
        heatmap: Tensor | None = None,
        heatmap_target: Tensor | None = None,
        heatmap_prev: Tensor | None = None,
        video_index: Tensor | None = None,
        has_lesion: Tensor | None = None,
        positive_valid: Tensor | None = None,
        has_mask: Tensor | None = None,
        side_logits: Sequence[Tensor] = (),
    ) -> LossTerms:
        """Compute eq. (2) for one batch.

        Args:
            mask_logits: ``S_t`` logits ``(B, 1, H, W)``.
            mask: ``G^S_t`` ``(B, 1, H, W)`` in ``{0, 1}``.
            heatmap: ``H_t`` ``(B, 1, H, W)`` or None (model without localisation branch).
            heatmap_target: ``G^H_t`` ``(B, 1, H, W)``; required when ``heatmap`` is given.
            heatmap_prev: ``H_{t-1}`` ``(B, 1, H, W)`` predicted from the same clip, or None.
            video_index: ``(B,)`` video index per item; required with ``heatmap_prev``.
            has_lesion: ``(B,)`` bool, frame t has a lesion (None: all have one).
            positive_valid: ``(B,)`` bool, ``H_{t-1}`` is a usable positive: another frame
                than t, not annotated lesion-free (None: all are).
            has_mask: ``(B,)`` bool, ``G^S_t`` is known (None: all are). The BCE and IoU terms are
                means over these items only; a box-only item (lesion box, no mask) trains the
                localisation branch alone (its ``G^H_t`` comes from the box).
            side_logits: side outputs ``(B, 1, H, W)`` of a deeply supervised model (deep supervision).

        Returns:
            :class:`LossTerms`.
        """
        mask_terms = self._mask_terms(mask_logits, mask, has_mask)
        total = self._weighted(mask_terms)
        side = None
        if side_logits:
            side = sum(self._weighted(self._mask_terms(s, mask, has_mask)) for s in side_logits)
            total = total + self.side_weight * side
        heat = contrastive = negative_fraction = triplet_fraction = None
        if heatmap is not None:
            if heatmap_target is None:
                raise ValueError("FLANetLoss: a heatmap prediction needs heatmap_target")
            heat = heatmap_mse(heatmap, heatmap_target)
            total = total + self.heatmap_weight * heat
            if heatmap_prev is not None and self.contrastive_weight > 0:
                if video_index is None:
                    raise ValueError("FLANetLoss: the contrastive term needs video_index")
                term = contrastive_loss(heatmap, heatmap_prev, video_index, self.alpha, has_lesion, positive_valid)
                contrastive = term.loss
                negative_fraction = term.has_negative.float().mean()
                triplet_fraction = term.valid.float().mean()
                total = total + self.contrastive_weight * contrastive
        return LossTerms(total, mask_terms.get("bce"), mask_terms.get("iou"), heat, contrastive, negative_fraction,
                         triplet_fraction, mask_terms.get("dice"), mask_terms.get("wbce"), mask_terms.get("wiou"), side,
                         mask_terms.get("ssim"))

    def _mask_terms(self, logits: Tensor, mask: Tensor, has_mask: Tensor | None) -> dict[str, Tensor]:
        return {term: MASK_TERM_FUNCTIONS[term](logits, mask, has_mask=has_mask) for term in self.mask_terms}

    def _weighted(self, terms: dict[str, Tensor]) -> Tensor:
        values = [self._term_weights[name] * value for name, value in terms.items()]
        return sum(values[1:], values[0])

    def extra_repr(self) -> str:
        return (
            f"bce_weight={self.bce_weight}, iou_weight={self.iou_weight}, "
            f"heatmap_weight={self.heatmap_weight}, "
            f"contrastive_weight={self.contrastive_weight}, alpha={self.alpha}, mask_loss={self.mask_loss}, "
            f"dice_weight={self.dice_weight}, side_weight={self.side_weight}"
        )


def uses_heatmap_prev(loss: FLANetLoss, has_heatmap: bool) -> bool:
    """Whether training must produce ``H_{t-1}`` (4-frame clips) for this loss and model."""
    return has_heatmap and loss.contrastive_weight > 0


__all__ = ["DEFAULT_ALPHA", "MASK_TERM_FUNCTIONS", "FLANetLoss", "LossTerms", "uses_heatmap_prev"]
