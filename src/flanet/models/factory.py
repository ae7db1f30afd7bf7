"""``create_model(name, ...)``: the one way to build every model of the package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from flanet.models.baselines import create_image_baseline
from flanet.models.decoder import HeatmapHead, SegmentationHead, UNetDecoder
from flanet.models.defaults import DEFAULT_ENCODER
from flanet.models.encoder import FrameEncoder, create_timm_backbone
from flanet.models.flanet import CurrentFrame, FLANet
from flanet.models.fusion import ConcatFusion, FrequencyFeatureAggregation

DETAIL_CHANNELS = 16  # neck width of the stride-2 map of the mask head (mask_stride=2)


@dataclass(frozen=True)
class Variant:
    """One row of Table 3: which fusion, whether the localisation branch exists, and whether
    the model trains with the contrastive loss of eq. (1) by default."""

    fusion: str  # "ffa" or "concat"
    localisation: bool
    contrastive: bool
    description: str


VARIANTS: dict[str, Variant] = {
    "flanet-basic": Variant("concat", False, False, "Table 3 'Basic': concat + 1x1 conv fusion, no localisation branch"),
    "flanet-ffa": Variant("ffa", False, False, "Table 3 'Basic+FLA': FFA fusion, no localisation branch"),
    "flanet-lb": Variant("concat", True, False, "Table 3 'Basic+LB': concat fusion + localisation branch, no eq. (1)"),
    "flanet-ffa-lb": Variant("ffa", True, False, "Table 3 'Basic+FLA+LB': FFA + localisation branch, no eq. (1)"),
    "flanet": Variant("ffa", True, True, "Table 3 'Our method': FFA + localisation branch + contrastive loss (eq. 1)"),
}
#: Table 3's rows, in the paper's order: (model name, row label).
TABLE3_ROWS: tuple[tuple[str, str], ...] = (
    ("flanet-basic", "Basic"),
    ("flanet-ffa", "Basic+FLA"),
    ("flanet-lb", "Basic+LB"),
    ("flanet-ffa-lb", "Basic+FLA+LB"),
    ("flanet", "Our method"),
)
BASELINES: dict[str, str] = {
    "unet": "UNet (smp) on the current frame only (Table 2 image baseline)",
    "unetplusplus": "UNet++ (smp) on the current frame only (Table 2 image baseline)",
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return [*VARIANTS, *BASELINES]


def describe_models() -> dict[str, str]:
    """One-line description of every model name."""
    return {**{k: v.description for k, v in VARIANTS.items()}, **BASELINES}


def default_contrastive_weight(name: str) -> float:
    """Weight of eq. (1) a model trains with unless the configuration sets one.

    1 for ``flanet`` (the paper's full method, weight 1 in eq. 2), 0 for every other row
    of Table 3 and for the image baselines.
    """
    if name not in VARIANTS and name not in BASELINES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return 1.0 if name in VARIANTS and VARIANTS[name].contrastive else 0.0


def create_model(
    name: str,
    *,
    encoder: str = DEFAULT_ENCODER,
    encoder_weights: str | Path | None = None,
    num_frames: int = 3,
    neck_channels: Sequence[int] = (32, 64, 128, 256),
    decoder_channels: Sequence[int] = (128, 64, 48, 32),
    head_channels: int = 32,
    ffa_levels: Sequence[int] = (0, 1, 2, 3),
    attention_reduction: int = 8,
    ffa_attention: str = "per-group",
    ffa_compute: str = "spatial",
    mask_stride: int = 4,
) -> nn.Module:
    """Builds a model by name (see :func:`list_models`).

    Args:
        name: ``flanet``, ``flanet-basic``, ``flanet-ffa``, ``flanet-lb``,
            ``flanet-ffa-lb``, ``unet`` or ``unetplusplus``. ``flanet-ffa-lb`` and
            ``flanet`` share one architecture; they differ in the loss they train with
            (:func:`default_contrastive_weight`).
        encoder: any timm model usable with ``features_only=True``; the paper uses
            Res2Net-50 (``res2net50_26w_4s``).
        encoder_weights: ``"imagenet"`` (timm's default pretrained tag of the encoder,
            loaded through timm and the Hugging Face Hub cache; honours ``HF_HOME`` and
            ``HF_HUB_OFFLINE``), a local ``.pth``/``.safetensors`` timm state dict, or
            ``None`` for random initialisation.
        num_frames: T, frames per clip (current + T-1 previous); the paper uses 3.
        neck_channels: per-frame width of each of the four encoder levels (shallow to
            deep) after a 1x1 projection; the paper does not give widths, these lean
            defaults are justified in docs/benchmarks.md.
        decoder_channels: widths of the four decoder stages, deep to shallow.
        head_channels: width of the final BConv before the mask classifier.
        ffa_levels: levels (0 = shallowest) that get temporal fusion; the others use
            the current frame's features only.
        attention_reduction: bottleneck reduction inside the FFA channel attention.
        ffa_attention: ``"per-group"`` (one channel attention per frame pair, Section 3.1's
            two attention maps) or ``"shared"`` (one for all pairs; v0.1 checkpoints).
        ffa_compute: ``"spatial"`` (FFA computed exactly without an FFT, default) or
            ``"fft"`` (explicit ``fft2``/``ifft2``); same output (docs/model.md).
        mask_stride: 4 (mask logits at the stride-4 level, upsampled x4) or 2 (one more
            refinement with the current frame's stride-2 encoder map, upsampled x2).

    Returns:
        The model; ``model.config`` holds the arguments that rebuild it
        (``create_model(**model.config)``), with ``encoder_weights`` set to ``None``
        because trained weights travel in checkpoints.
    """
    config = {
        "name": name,
        "encoder": encoder,
        "encoder_weights": None,
        "num_frames": int(num_frames),
        "neck_channels": [int(c) for c in neck_channels],
        "decoder_channels": [int(c) for c in decoder_channels],
        "head_channels": int(head_channels),
        "ffa_levels": [int(i) for i in ffa_levels],
        "attention_reduction": int(attention_reduction),
        "ffa_attention": str(ffa_attention),
        "ffa_compute": str(ffa_compute),
        "mask_stride": int(mask_stride),
    }
    if name in BASELINES:
        model: nn.Module = create_image_baseline(name, encoder, encoder_weights)
    elif name in VARIANTS:
        model = _create_flanet(VARIANTS[name], encoder, encoder_weights, config)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    model.config = config
    return model


def _create_flanet(variant: Variant, encoder: str, weights: str | Path | None, config: dict) -> FLANet:
    num_frames, neck = config["num_frames"], config["neck_channels"]
    levels = len(neck)
    if num_frames < 2:
        raise ValueError(f"FLA-Net needs num_frames >= 2 (current + previous), got {num_frames}")
    if len(config["decoder_channels"]) != levels:
        raise ValueError(f"decoder_channels needs {levels} entries, got {config['decoder_channels']}")
    if any(not 0 <= i < levels for i in config["ffa_levels"]):
        raise ValueError(f"ffa_levels must be in 0..{levels - 1}, got {config['ffa_levels']}")
    if config["mask_stride"] not in (2, 4):
        raise ValueError(f"mask_stride must be 4 or 2, got {config['mask_stride']}")
    detail = config["mask_stride"] == 2
    backbone = create_timm_backbone(encoder, weights, num_levels=levels + detail)
    frame_encoder = FrameEncoder(backbone, [DETAIL_CHANNELS, *neck] if detail else neck)
    if detail and frame_encoder.reductions[0] * 2 != frame_encoder.reductions[1]:
        raise ValueError(f"mask_stride 2 needs a stride-2 level in encoder {encoder!r}; its strides are "
                         f"{list(frame_encoder.reductions)}")
    fusions: list[nn.Module] = [CurrentFrame()] if detail else []
    for level, channels in enumerate(neck):
        if level not in config["ffa_levels"]:
            fusions.append(CurrentFrame())
        elif variant.fusion == "ffa":
            fusions.append(FrequencyFeatureAggregation(
                channels, channels, config["attention_reduction"], num_frames=num_frames,
                attention=config["ffa_attention"], compute=config["ffa_compute"]))
        else:
            fusions.append(ConcatFusion(channels, channels, num_frames))
    decoder_channels = config["decoder_channels"]
    loc_decoder = UNetDecoder(neck, decoder_channels) if variant.localisation else None
    heatmap_head = HeatmapHead(decoder_channels[-1]) if variant.localisation else None
    return FLANet(
        encoder=frame_encoder,
        fusions=fusions,
        seg_decoder=UNetDecoder(neck, decoder_channels),
        seg_head=SegmentationHead(decoder_channels[-1], decoder_channels[-2], config["head_channels"],
                                  DETAIL_CHANNELS if detail else None),
        loc_decoder=loc_decoder,
        heatmap_head=heatmap_head,
        num_frames=num_frames,
        detail_level=detail,
    )
