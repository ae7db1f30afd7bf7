"""ResUNet++ (Jha et al., IEEE ISM 2019), the "ResUNet" column of FLA-Net Table 4.

A residual U-Net with squeeze-and-excitation after every encoder unit, atrous spatial pyramid
pooling (ASPP) as the bridge and before the output, and an attention block on every skip
connection (Section III): the decoder feature is gated by a map computed from itself and the
skip feature one level up, upsampled by 2, concatenated with that skip and passed through a
residual unit. Trained with binary cross-entropy (``loss.mask_loss: bce``).

The paper's encoder is its own (a stem and three strided residual units, ``encoder:
resunet++``); ``encoder`` may name any timm CNN instead, whose first four levels are then the skips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from flanet.models.image_methods.base import ImageMethod, SqueezeExcitation, TimmLevels, resize
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model

#: ``encoder`` value selecting the paper's own residual encoder.
PAPER_ENCODER = "resunet++"


@dataclass(frozen=True)
class ResUNetPlusPlusOptions(ModelOptions):
    """Options of :class:`ResUNetPlusPlus`.

    Attributes:
        encoder: ``"resunet++"`` for the paper's residual encoder, or a timm CNN (its levels 0-3
            become the skips).
        encoder_weights: for a timm encoder: ``"imagenet"``, a local file, or None (random).
        channels: widths of the paper's encoder levels (stride 1, 2, 4, 8); the bridge has twice
            the last. With a timm encoder they are the decoder widths only.
    """

    encoder: str = PAPER_ENCODER
    encoder_weights: str | None = None
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])


def _bn_relu_conv(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    """Pre-activation 3x3 convolution (BatchNorm, ReLU, conv), the unit of the residual blocks."""
    return [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)]


class ResidualUnit(nn.Module):
    """Residual unit with a projected shortcut, then squeeze-and-excitation (Section III-A/B).

    ``stem=True`` is the first unit (conv, BN, ReLU, conv; no pre-activation on the image).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, stem: bool = False,
                 excite: bool = True) -> None:
        super().__init__()
        first = (nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1) if stem
                 else nn.Sequential(*_bn_relu_conv(in_channels, out_channels, stride)))
        self.body = nn.Sequential(first, *_bn_relu_conv(out_channels, out_channels))
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride), nn.BatchNorm2d(out_channels))
        self.excite = SqueezeExcitation(out_channels) if excite else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.excite(self.body(x) + self.shortcut(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al.): 3x3 convolutions dilated 1, 6, 12, 18, summed, then 1x1."""

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=r, dilation=r), nn.BatchNorm2d(out_channels))
            for r in rates)
        self.project = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.stack([branch(x) for branch in self.branches]).sum(0))


class SkipAttention(nn.Module):
    """Attention block (Section III-D): the decoder feature x gated by a map from x and the (finer) skip g."""

    def __init__(self, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.from_skip = nn.Sequential(*_bn_relu_conv(skip_channels, channels))
        self.from_decoder = nn.Sequential(*_bn_relu_conv(channels, channels))
        self.gate = nn.Sequential(*_bn_relu_conv(channels, channels))

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        """``skip (B, C_s, 2h, 2w)``, ``x (B, C, h, w)`` -> ``(B, C, h, w)``."""
        ratio = skip.shape[-1] // x.shape[-1]  # 2 between neighbouring levels
        pooled = nn.functional.max_pool2d(self.from_skip(skip), ratio)
        return self.gate(pooled + self.from_decoder(x)) * x


class DecoderStage(nn.Module):
    """Attention, upsampling to the skip's size (nearest, x2), concatenation, residual unit."""

    def __init__(self, skip_channels: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.attention = SkipAttention(skip_channels, in_channels)
        self.unit = ResidualUnit(skip_channels + in_channels, out_channels, excite=False)

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        x = nn.functional.interpolate(self.attention(skip, x), size=skip.shape[-2:], mode="nearest")
        return self.unit(torch.cat([x, skip], dim=1))


class PaperEncoder(nn.Module):
    """The paper's encoder: a stem unit at full resolution and three residual units of stride 2."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        widths = [3, *channels]
        self.units = nn.ModuleList(
            ResidualUnit(widths[i], widths[i + 1], stride=1 if i == 0 else 2, stem=i == 0) for i in range(len(channels)))
        self.channels: tuple[int, ...] = tuple(channels)
        self.reductions: tuple[int, ...] = tuple(2**i for i in range(len(channels)))

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = []
        for unit in self.units:
            x = unit(x)
            levels.append(x)
        return levels


class ResUNetPlusPlus(ImageMethod):
    """ResUNet++ on the current frame (no side outputs)."""

    def __init__(self, options: ResUNetPlusPlusOptions) -> None:
        widths = tuple(options.channels)
        if len(widths) != 4:
            raise ValueError(f"ResUNet++ needs 4 channel widths, got {list(widths)}")
        if options.encoder == PAPER_ENCODER and options.encoder_weights is not None:
            raise ValueError(f"encoder {PAPER_ENCODER!r} (the paper's own) has no pretrained weights; "
                             "encoder_weights needs a timm encoder")
        encoder: PaperEncoder | TimmLevels = (
            PaperEncoder(widths) if options.encoder == PAPER_ENCODER
            else TimmLevels(options.encoder, options.encoder_weights, (0, 1, 2, 3)))
        super().__init__(options, max(encoder.reductions))
        self.encoder = encoder
        skips = encoder.channels
        bridge = 2 * widths[-1]
        self.bridge = ASPP(skips[-1], bridge)
        outs = (widths[2], widths[1], widths[0])  # deep to shallow
        ins = (bridge, *outs[:-1])
        self.stages = nn.ModuleList(
            DecoderStage(skip, c_in, c_out) for skip, c_in, c_out in zip(skips[2::-1], ins, outs))
        self.out_aspp = ASPP(widths[0], widths[0])
        self.classifier = nn.Conv2d(widths[0], 1, 1)

    @property
    def first_stride(self) -> int:
        return self.encoder.reductions[0]

    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        x = self.bridge(features[-1])
        for stage, skip in zip(self.stages, features[2::-1]):
            x = stage(skip, x)
        return resize(self.classifier(self.out_aspp(x)), size), []


@register_model("resunetplusplus", ResUNetPlusPlusOptions, ModelInfo(
    kind="image", description="ResUNet++: residual U-Net with SE, ASPP and attention (own encoder)",
    paper="Jha et al., ResUNet++: An Advanced Architecture for Medical Image Segmentation, IEEE ISM 2019",
    rows=(PaperRow(4, "ResUNet"),),
    reference="paper Section III; github.com/DebeshJha/ResUNetPlusPlus (no licence file) read as a reference, "
              "not copied",
    loss_terms=("bce",),
))
def _resunetplusplus(options: ResUNetPlusPlusOptions) -> ResUNetPlusPlus:
    return ResUNetPlusPlus(options)
