"""The decoder that the memory methods share with STM (Oh et al., ICCV 2019, Sec. 3.3): residual refinement.

STM, AFB-URR and DPSTT decode the memory read (concatenated with the query frame's own value) at
stride 16 through a 3x3 conv and a residual block, then refine it twice with the query encoder's
stride-8 and stride-4 maps (:class:`Refine`: skip conv + residual block, upsampled coarse map added,
another residual block) and predict at stride 4. Their 2-class (background, object) softmax output
is one logit here (a 2-way softmax is a sigmoid of the logit difference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.image_methods.base import resize


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3x3 convs (STM's ``ResBlock``), with a 3x3 projection when widths differ."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.project = None if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        return (x if self.project is None else self.project(x)) + r


class Refine(nn.Module):
    """``ResMM(ResFS(conv(skip)) + up(coarse))``: one refinement stage of the STM decoder."""

    def __init__(self, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.skip = nn.Sequential(nn.Conv2d(skip_channels, channels, 3, padding=1), ResBlock(channels))
        self.merge = ResBlock(channels)

    def forward(self, skip: Tensor, coarse: Tensor) -> Tensor:
        s = self.skip(skip)
        return self.merge(s + resize(coarse, s.shape[-2:]))


class MemoryDecoder(nn.Module):
    """STM's decoder: the stride-16 read -> conv + ResBlock -> Refine(stride 8) -> Refine(stride 4) -> features.

    Args:
        in_channels: channels of the stride-16 input (memory read + query value).
        skip_channels: the query encoder's stride-8 and stride-4 widths.
        channels: the decoder's width (256 in STM).
    """

    def __init__(self, in_channels: int, skip_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), ResBlock(channels))
        self.refine8 = Refine(skip_channels[0], channels)
        self.refine4 = Refine(skip_channels[1], channels)
        self.head = nn.Conv2d(channels, 1, 3, padding=1)

    def features(self, read: Tensor, skip8: Tensor, skip4: Tensor) -> Tensor:
        """The stride-4 decoder features ``(N, channels, h4, w4)``."""
        return self.refine4(skip4, self.refine8(skip8, self.reduce(read)))

    def forward(self, read: Tensor, skip8: Tensor, skip4: Tensor) -> Tensor:
        """Logits at stride 4 ``(N, 1, h4, w4)``."""
        return self.head(F.relu(self.features(read, skip8, skip4)))


class MaskedMemoryEncoder(nn.Module):
    """A memory frame's key and value from its stride-16 features and a mask (STM's memory encoder, lighter).

    STM, AFB-URR and DPSTT run a second ResNet-50 on the frame with the mask (and its complement)
    added after the first convolution. Here the frame's features come from the query encoder, which
    ran once for the frame already, and the mask pair enters through a light strided conv stack
    (average-pooled to stride 4, two stride-2 3x3 convs to stride 16); a bottleneck branch (1x1 to C/4,
    3x3, 1x1 back to C) of the two is added to the features, then the 3x3 key and value convs. Why: one backbone pass a frame instead of
    two, and the memory entry is made from what the per-frame state already holds.

    Args:
        feature_channels: width of the stride-16 features.
        mask_channels: width of the mask embedding.
    """

    def __init__(self, feature_channels: int, mask_channels: int = 32) -> None:
        super().__init__()
        self.mask = nn.Sequential(
            nn.Conv2d(2, mask_channels // 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(mask_channels // 2, mask_channels, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        inner = max(1, feature_channels // 4)
        self.fuse = nn.Sequential(  # a bottleneck residual branch (1x1, 3x3, 1x1), as a ResNet stage's block
            nn.Conv2d(feature_channels + mask_channels, inner, 1), nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(inner, feature_channels, 1))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """``features (B, C, h16, w16)``, ``mask (B, 1, H, W)`` in [0, 1] -> memory features ``(B, C, h16, w16)``."""
        pair = torch.cat([mask, 1 - mask], dim=1)
        pair = F.adaptive_avg_pool2d(pair, (features.shape[-2] * 4, features.shape[-1] * 4))
        return features + self.fuse(torch.cat([features, self.mask(pair)], dim=1))


class KeyValue(nn.Module):
    """STM's key and value embeddings: two 3x3 convs of the stride-16 features."""

    def __init__(self, in_channels: int, key_channels: int, value_channels: int) -> None:
        super().__init__()
        self.key = nn.Conv2d(in_channels, key_channels, 3, padding=1)
        self.value = nn.Conv2d(in_channels, value_channels, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.key(x), self.value(x)
