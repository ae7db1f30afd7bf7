"""ACSNet (Zhang et al., MICCAI 2020): adaptive context selection for polyp segmentation (FLA-Net Table 4).

A ResNet-34 encoder (levels e1..e5 at strides 2 to 32) and a decoder that, at each skip level
k, selects between three contexts (Section 2):

* local context attention (LCA, Section 2.1): the skip feature e_k weighted by how uncertain
  the previous decoder's side prediction is, ``e_k * (1 - |sigmoid(p) - 0.5| / 0.5) + e_k``;
* a global context module (GCM, Section 2.2) on e5: pooled branches (1x1, 3x3, 5x5 grids) and a
  non-local branch, concatenated and projected to each level's width;
* adaptive selection (ASM, Section 2.3): the decoder feature through a non-local block,
  concatenated with both contexts and gated by squeeze-and-excitation.

Each decoder stage predicts a side map; they are deeply supervised with BCE + Dice next to the
final map (``loss.mask_loss: bce-dice``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.image_methods.base import ConvBNReLU, ImageMethod, SqueezeExcitation, TimmLevels, resize
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model


@dataclass(frozen=True)
class ACSNetOptions(ModelOptions):
    """Options of :class:`ACSNet`.

    Attributes:
        encoder: timm CNN with five levels at strides 2 to 32 (the paper: ResNet-34).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        gcm_channels: width of each global-context branch (64 in the paper).
    """

    encoder: str = "resnet34"
    encoder_weights: str | None = None
    gcm_channels: int = 64


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018), keys and values max-pooled by 2, zero-initialised output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 2)
        self.query, self.key, self.value = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.out = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        pooled = F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, hw, c)
        k = self.key(pooled).flatten(2)  # (B, c, hw/4)
        v = self.value(pooled).flatten(2).transpose(1, 2)  # (B, hw/4, c)
        y = torch.softmax(q @ k, dim=-1) @ v  # (B, hw, c)
        return x + self.out(y.transpose(1, 2).unflatten(2, tuple(x.shape[-2:])))


class GlobalContext(nn.Module):
    """GCM: pooled branches and a non-local branch on the deepest level, one projection per decoder level."""

    def __init__(self, in_channels: int, channels: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        self.pooled = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(grid), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True))
            for grid in (1, 3, 5))
        self.non_local = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True), NonLocal(channels))
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(4 * channels, c, 3, padding=1), nn.ReLU(inplace=True)) for c in out_channels)

    def forward(self, x: Tensor, sizes: Sequence[Sequence[int]]) -> list[Tensor]:
        """``e5`` -> one context map per level, resized to ``sizes``."""
        size = x.shape[-2:]
        context = torch.cat([*(resize(branch(x), size) for branch in self.pooled), self.non_local(x)], dim=1)
        return [resize(project(context), s) for project, s in zip(self.project, sizes)]


def local_context(feature: Tensor, side_logits: Tensor) -> Tensor:
    """LCA (Section 2.1): ``e * a + e`` with ``a = 1 - |sigmoid(p) - 0.5| / 0.5``, largest where p is uncertain."""
    attention = 1 - (torch.sigmoid(resize(side_logits, feature.shape[-2:])) - 0.5).abs() / 0.5
    return feature * attention + feature


class DecoderStage(nn.Module):
    """Two 3x3 convolutions (the first to a quarter width), then x2 upsampling to the next level's size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(in_channels, in_channels // 4), ConvBNReLU(in_channels // 4, out_channels))

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return resize(self.convs(x), size)


class SideOutput(nn.Sequential):
    """Side prediction of a decoder stage: 3x3 convolution to a quarter width, dropout, 1x1 classifier."""

    def __init__(self, channels: int) -> None:
        super().__init__(ConvBNReLU(channels, max(1, channels // 4)), nn.Dropout2d(0.1), nn.Conv2d(max(1, channels // 4), 1, 1))


class ACSNet(ImageMethod):
    """ACSNet on the current frame; the four side predictions (deep to shallow) in training."""

    def __init__(self, options: ACSNetOptions) -> None:
        encoder = TimmLevels(options.encoder, options.encoder_weights, (0, 1, 2, 3, 4))
        super().__init__(options, max(encoder.reductions))
        self.encoder = encoder
        c1, c2, c3, c4, c5 = encoder.channels
        skips = (c4, c3, c2, c1)  # deep to shallow
        self.global_context = GlobalContext(c5, options.gcm_channels, skips)
        # the stage producing d_k has the width of level k (d5 that of e5), as the paper's decoder
        self.first_stage = DecoderStage(c5, c5)
        self.stages = nn.ModuleList(
            DecoderStage(2 * skip + previous, skip) for skip, previous in zip(skips, (c5, c4, c3, c2)))
        self.selection = nn.ModuleList(
            nn.ModuleDict({"non_local": NonLocal(previous), "gate": SqueezeExcitation(2 * skip + previous, 16)})
            for skip, previous in zip(skips, (c5, c4, c3, c2)))
        self.sides = nn.ModuleList(SideOutput(c) for c in (c5, c4, c3, c2))
        self.head = nn.Sequential(ConvBNReLU(c1, c1 // 2), nn.Dropout2d(0.1), nn.Conv2d(c1 // 2, 1, 1))

    @property
    def first_stride(self) -> int:
        return self.encoder.reductions[0]

    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        e1, e2, e3, e4, e5 = features
        skips = (e4, e3, e2, e1)
        contexts = self.global_context(e5, [s.shape[-2:] for s in skips])
        decoded = self.first_stage(e5, e4.shape[-2:])  # d5 at e4's resolution
        sides = []
        targets = [e3.shape[-2:], e2.shape[-2:], e1.shape[-2:], size]
        for skip, context, stage, select, side, target in zip(skips, contexts, self.stages, self.selection,
                                                               self.sides, targets):
            side_logits = side(decoded)
            sides.append(side_logits)
            selected = torch.cat([local_context(skip, side_logits), select["non_local"](decoded), context], dim=1)
            decoded = stage(select["gate"](selected), target)
        return self.head(decoded), sides[::-1] if self.training else []


@register_model("acsnet", ACSNetOptions, ModelInfo(
    kind="image", description="ACSNet: local/global context and adaptive selection (ResNet-34)",
    paper="Zhang et al., Adaptive Context Selection for Polyp Segmentation, MICCAI 2020",
    rows=(PaperRow(4, "ACSNet"),),
    reference="paper Section 2 (LCA, GCM, ASM, deep supervision); github.com/ReaFly/ACSNet (no licence file) "
              "read as a reference, not copied",
    loss_terms=("bce", "dice"), side_weight=1.0,
))
def _acsnet(options: ACSNetOptions) -> ACSNet:
    return ACSNet(options)
