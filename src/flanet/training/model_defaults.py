"""Per-model defaults of a training configuration, filled in before a run starts.

Table 3 rows share one recipe but not one loss: only ``flanet`` (the paper's full method)
trains with the contrastive loss of eq. (1), and each compared method of Tables 2 and 4 with its
own loss. Recipes therefore leave ``loss.contrastive_weight``, ``loss.mask_loss`` and
``loss.side_weight`` at ``null`` ("the model's default") and :func:`resolve_model_defaults`
writes the values actually used, so a run folder's ``config.yaml`` records them.

The paper initialises Res2Net-50 with ImageNet weights (Section 4); :func:`random_encoder_warning`
names a paper run that would not.
"""

from __future__ import annotations

from flanet.models import default_contrastive_weight
from flanet.models.defaults import DEFAULT_ENCODER, IMAGENET
from flanet.models.registry import default_mask_loss, default_side_weight
from flanet.training.schema import TrainConfig

#: Shipped recipes that reproduce the paper (``name`` of their configuration).
PAPER_RECIPES: tuple[str, ...] = ("buv-paper", "polyp-paper")


def resolve_model_defaults(config: TrainConfig) -> TrainConfig:
    """A copy of ``config`` with the ``null`` keys that depend on the model filled in.

    ``loss.contrastive_weight: null`` becomes
    :func:`flanet.models.default_contrastive_weight` of ``model.name`` (1 for ``flanet``, 0
    otherwise); ``loss.mask_loss: null`` the model's own mask loss (``bce-iou``, eq. 2, for
    FLA-Net; e.g. ``wbce-wiou`` for PraNet) and ``loss.side_weight: null`` its side-output weight
    (:func:`flanet.models.registry.default_side_weight`); explicit values are kept as given.

    Raises:
        ValueError: unknown ``model.name``.
    """
    name, loss = config.model.name, config.loss
    filled = {
        "contrastive_weight": default_contrastive_weight(name) if loss.contrastive_weight is None else None,
        "mask_loss": default_mask_loss(name) if loss.mask_loss is None else None,
        "side_weight": default_side_weight(name) if loss.side_weight is None else None,
    }
    filled = {key: value for key, value in filled.items() if value is not None}
    return config.replace(loss=filled) if filled else config


def encoder_init(config: TrainConfig) -> str:
    """How the run's encoder starts: ``"random"``, ``"imagenet"`` or ``"file <path>"``."""
    weights = config.model.encoder_weights
    if config.model.init_from is not None:
        return f"checkpoint {config.model.init_from}"
    if weights is None:
        return "random"
    return IMAGENET if str(weights) == IMAGENET else f"file {weights}"


def random_encoder_warning(config: TrainConfig) -> str | None:
    """The warning for a paper run (a paper recipe, or the paper's Res2Net-50) from a random encoder.

    Returns:
        The message, or None when the encoder is pretrained or the run is not a paper run
        (``cpu-small``, ``demo`` and small encoders start from random weights by design).
    """
    model = config.model
    paper = config.name in PAPER_RECIPES or model.encoder == DEFAULT_ENCODER
    if not paper or model.encoder_weights is not None or model.init_from is not None:
        return None
    return (
        f"training encoder {model.encoder!r} from a random initialisation: the paper (Section 4) starts "
        f"from ImageNet weights, so scores will not be comparable to its tables; set "
        f"model.encoder_weights={IMAGENET} (or a local .pth/.safetensors file)"
    )
