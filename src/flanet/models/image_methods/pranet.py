"""PraNet (Fan et al., MICCAI 2020): parallel partial decoder and reverse attention (FLA-Net Table 4).

Res2Net-50's three deepest levels f3, f4, f5 (strides 8, 16, 32) go through receptive-field
blocks (RFB) and a parallel partial decoder (PD, Section 2.1, from CPD) into a global map S_g;
reverse attention (RA, Section 2.2) then refines it from the deepest level up: at level i the
features are weighted by ``1 - sigmoid(S_{i+1})`` (attention on what is not yet segmented) and
a small convolution stack predicts a residual added to S_{i+1}. S_3 is the prediction. Its loss
(Section 2.3, eq. 4) is the weighted IoU plus weighted BCE of every map, ``S_g``, ``S_5``,
``S_4`` and ``S_3`` upsampled to the mask (deep supervision): ``loss.mask_loss: wbce-wiou``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from flanet.models.image_methods.base import ConvBNReLU, ImageMethod, TimmLevels, resize
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model


@dataclass(frozen=True)
class PraNetOptions(ModelOptions):
    """Options of :class:`PraNet`.

    Attributes:
        encoder: timm CNN whose levels 2, 3, 4 are f3, f4, f5 (the paper: Res2Net-50).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        rfb_channels: width of the RFB outputs and of the partial decoder (32 in the paper's code).
        ra_channels: width of the reverse-attention stacks at f3, f4 and f5.
    """

    encoder: str = "res2net50_26w_4s"
    encoder_weights: str | None = None
    rfb_channels: int = 32
    ra_channels: list[int] = field(default_factory=lambda: [64, 64, 256])


class ReceptiveFieldBlock(nn.Module):
    """RFB (Liu et al., ECCV 2018, as in CPD/PraNet): four branches of growing receptive field, summed with a shortcut.

    Branch k > 0 is a 1x1 reduction, a (1 x n) and (n x 1) pair with n = 2k + 1, and a 3x3
    convolution dilated by n; the branches are concatenated, fused by a 3x3 convolution and added
    to a 1x1 projection of the input.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvBNReLU(in_channels, channels, 1)]
        for k in (1, 2, 3):
            n = 2 * k + 1
            branches.append(nn.Sequential(
                ConvBNReLU(in_channels, channels, 1),
                nn.Conv2d(channels, channels, (1, n), padding=(0, k), bias=False), nn.BatchNorm2d(channels),
                nn.Conv2d(channels, channels, (n, 1), padding=(k, 0), bias=False), nn.BatchNorm2d(channels),
                ConvBNReLU(channels, channels, 3, dilation=n),
            ))
        self.branches = nn.ModuleList(branches)
        self.fuse = nn.Sequential(nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, h, w) -> (B, C, h, w)
        fused = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
        return torch.relu(fused + self.shortcut(x))


class PartialDecoder(nn.Module):
    """Parallel partial decoder (Section 2.1): the three RFB maps multiplied and concatenated, deep to shallow.

    ``x3_1 = c(up(x5)) * x4``; ``x2_1 = c(up(up(x5))) * c(up(x4)) * x3``; the products are then
    concatenated with upsampled deeper results and convolved into the global map S_g (stride of x3).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.up5_to4, self.up5_to3, self.up4_to3 = ConvBNReLU(c, c), ConvBNReLU(c, c), ConvBNReLU(c, c)
        self.up5_cat, self.up4_cat = ConvBNReLU(c, c), ConvBNReLU(2 * c, 2 * c)
        self.merge4, self.merge3 = ConvBNReLU(2 * c, 2 * c), ConvBNReLU(3 * c, 3 * c)
        self.head = nn.Sequential(ConvBNReLU(3 * c, 3 * c), nn.Conv2d(3 * c, 1, 1))

    def forward(self, x3: Tensor, x4: Tensor, x5: Tensor) -> Tensor:
        """RFB maps at strides 8, 16, 32 -> S_g logits ``(B, 1, h3, w3)``."""
        s3, s4 = x3.shape[-2:], x4.shape[-2:]
        x4_1 = self.up5_to4(resize(x5, s4)) * x4
        x3_1 = self.up5_to3(resize(x5, s3)) * self.up4_to3(resize(x4, s3)) * x3
        x4_2 = self.merge4(torch.cat([x4_1, self.up5_cat(resize(x5, s4))], dim=1))
        x3_2 = self.merge3(torch.cat([x3_1, self.up4_cat(resize(x4_2, s3))], dim=1))
        return self.head(x3_2)


class ReverseAttention(nn.Module):
    """RA (Section 2.2): ``S_i = S_{i+1} + conv(f_i * (1 - sigmoid(S_{i+1})))``, all at f_i's resolution."""

    def __init__(self, in_channels: int, channels: int, depth: int, kernel_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(in_channels, channels, 1)]
        layers += [ConvBNReLU(channels, channels, kernel_size) for _ in range(depth)]
        layers.append(nn.Conv2d(channels, 1, 1))
        self.stack = nn.Sequential(*layers)

    def forward(self, feature: Tensor, prior: Tensor) -> Tensor:
        """``feature (B, C, h, w)``, ``prior`` logits at any size -> refined logits ``(B, 1, h, w)``."""
        prior = resize(prior, feature.shape[-2:])
        return prior + self.stack(feature * (1 - torch.sigmoid(prior)))


class PraNet(ImageMethod):
    """PraNet on the current frame; side outputs S_g, S_5, S_4 in training (see the module docstring)."""

    def __init__(self, options: PraNetOptions) -> None:
        encoder = TimmLevels(options.encoder, options.encoder_weights, (2, 3, 4))
        super().__init__(options, max(encoder.reductions))
        self.encoder = encoder
        c3, c4, c5 = self.encoder.channels
        width = options.rfb_channels
        self.rfb = nn.ModuleList(ReceptiveFieldBlock(c, width) for c in (c3, c4, c5))
        self.partial_decoder = PartialDecoder(width)
        if len(options.ra_channels) != 3:
            raise ValueError(f"ra_channels needs 3 widths (f3, f4, f5), got {options.ra_channels}")
        r3, r4, r5 = options.ra_channels
        self.reverse = nn.ModuleList([  # f3, f4, f5 as in the paper's code: 5x5 convolutions at f5
            ReverseAttention(c3, r3, 2, 3), ReverseAttention(c4, r4, 2, 3), ReverseAttention(c5, r5, 3, 5)])

    @property
    def first_stride(self) -> int:
        return self.encoder.reductions[0]

    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        f3, f4, f5 = features
        s_g = self.partial_decoder(*(rfb(f) for rfb, f in zip(self.rfb, (f3, f4, f5))))
        s_5 = self.reverse[2](f5, s_g)
        s_4 = self.reverse[1](f4, s_5)
        s_3 = self.reverse[0](f3, s_4)
        return resize(s_3, size), [s_g, s_5, s_4] if self.training else []


@register_model("pranet", PraNetOptions, ModelInfo(
    kind="image", description="PraNet: parallel partial decoder + reverse attention (Res2Net-50)",
    paper="Fan et al., PraNet: Parallel Reverse Attention Network for Polyp Segmentation, MICCAI 2020",
    rows=(PaperRow(4, "PraNet"),),
    reference="paper Sections 2.1-2.3 (RFB and partial decoder from CPD); github.com/DengPingFan/PraNet "
              "(research/education licence) read as a reference, not copied",
    loss_terms=("wbce", "wiou"), side_weight=1.0,
))
def _pranet(options: PraNetOptions) -> PraNet:
    return PraNet(options)
