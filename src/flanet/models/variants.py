"""FLA-Net and its Table 3 ablations as registered models (:mod:`flanet.models.registry`).

``flanet-ffa-lb`` and ``flanet`` share one architecture; they differ in the loss they train with
(only ``flanet`` has the contrastive loss of eq. 1 by default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from flanet.models.decoder import HeatmapHead, SegmentationHead, UNetDecoder
from flanet.models.encoder import FrameEncoder, create_timm_backbone
from flanet.models.flanet import CurrentFrame, FLANet
from flanet.models.fusion import ConcatFusion, FrequencyFeatureAggregation
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model

DETAIL_CHANNELS = 16  # neck width of the stride-2 map of the mask head (mask_stride=2)


PAPER = "Lin et al., Shifting More Attention to Breast Lesion Segmentation in Ultrasound Videos, MICCAI 2023"
REFERENCE = "the paper, Sections 3.1-3.3 (docs/model.md); the authors' code (github.com/jhl-Det/FLA-Net) read as a reference"


@dataclass(frozen=True)
class FLANetOptions(ModelOptions):
    """Options of FLA-Net and its Table 3 ablations.

    Attributes:
        num_frames: T, frames per clip (current + T-1 previous); the paper uses 3.
        neck_channels: per-frame width of each of the four encoder levels (shallow to deep)
            after a 1x1 projection; the paper does not give widths, these lean defaults are
            justified in docs/benchmarks.md.
        decoder_channels: widths of the four decoder stages, deep to shallow.
        head_channels: width of the final BConv before the mask classifier.
        ffa_levels: levels (0 = shallowest) that get temporal fusion; the others use the
            current frame's features only.
        attention_reduction: bottleneck reduction inside the FFA channel attention.
        ffa_attention: ``"per-group"`` (one channel attention per frame pair, Section 3.1's two
            attention maps) or ``"shared"`` (one for all pairs; v0.1 checkpoints).
        ffa_compute: ``"spatial"`` (FFA computed exactly without an FFT, default) or ``"fft"``
            (explicit ``fft2``/``ifft2``); same output (docs/model.md).
        mask_stride: 4 (mask logits at the stride-4 level, upsampled x4) or 2 (one more
            refinement with the current frame's stride-2 encoder map, upsampled x2).
        mask_prior: lesion probability the untrained mask head starts at everywhere (its bias is
            ``logit(mask_prior)``, the prior initialisation of the focal-loss paper); None: PyTorch's
            default (p = 0.5 everywhere). With None FLA-Net's background kept a probability floor of
            about 0.1 after the demo's training (MAE 0.113 against UNet's 0.016, 4 epochs); with 0.01
            its MAE is 0.013 and its Dice higher (docs/benchmarks.md, "Where the MAE comes from").
    """

    num_frames: int = 3
    neck_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 48, 32])
    head_channels: int = 32
    ffa_levels: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    attention_reduction: int = 8
    ffa_attention: Literal["per-group", "shared"] = "per-group"
    ffa_compute: Literal["spatial", "fft"] = "spatial"
    mask_stride: int = 4
    mask_prior: float | None = 0.01


@dataclass(frozen=True)
class Variant:
    """One row of Table 3: which fusion, whether the localisation branch exists, and whether
    the model trains with the contrastive loss of eq. (1) by default."""

    fusion: str  # "ffa" or "concat"
    localisation: bool
    contrastive: bool
    label: str  # the row's label in Table 3
    description: str


#: Table 3's rows, in the paper's order, by model name.
VARIANTS: dict[str, Variant] = {
    "flanet-basic": Variant("concat", False, False, "Basic", "concat + 1x1 conv fusion, no localisation branch"),
    "flanet-ffa": Variant("ffa", False, False, "Basic+FLA", "FFA fusion, no localisation branch"),
    "flanet-lb": Variant("concat", True, False, "Basic+LB", "concat fusion + localisation branch, no eq. (1)"),
    "flanet-ffa-lb": Variant("ffa", True, False, "Basic+FLA+LB", "FFA + localisation branch, no eq. (1)"),
    "flanet": Variant("ffa", True, True, "Our method", "FFA + localisation branch + contrastive loss (eq. 1)"),
}
#: Table 3's rows, in the paper's order: (model name, row label).
TABLE3_ROWS: tuple[tuple[str, str], ...] = tuple((name, v.label) for name, v in VARIANTS.items())


def _info(name: str, variant: Variant) -> ModelInfo:
    rows = (PaperRow(2, "Our FLA-Net"), PaperRow(3, variant.label), PaperRow(4, "Ours")) if name == "flanet" \
        else (PaperRow(3, variant.label),)
    terms = ("bce", "iou", "heatmap", "contrastive") if variant.contrastive else \
        ("bce", "iou", "heatmap") if variant.localisation else ("bce", "iou")
    return ModelInfo(kind="video", description=f"FLA-Net: {variant.description}",
                     paper=PAPER, rows=rows, reference=REFERENCE, loss_terms=terms)


def _register(name: str, variant: Variant) -> None:
    @register_model(name, FLANetOptions, _info(name, variant))
    def build(options: FLANetOptions) -> FLANet:
        return _create_flanet(variant, options)


for _name in ("flanet", "flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb"):
    _register(_name, VARIANTS[_name])


def _create_flanet(variant: Variant, options: FLANetOptions) -> FLANet:
    """FLA-Net (Fig. 2) or the Table 3 ablation ``variant``, as ``options`` set it."""
    config = dataclasses.asdict(options)
    encoder, weights = options.encoder, options.encoder_weights
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
                                  DETAIL_CHANNELS if detail else None, prior=config["mask_prior"]),
        loc_decoder=loc_decoder,
        heatmap_head=heatmap_head,
        num_frames=num_frames,
        detail_level=detail,
    )
