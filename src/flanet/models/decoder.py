"""UNet-style decoder branch of Section 3.2 (four convolutional stages)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.blocks import BConv, mask_classifier


def one_channel_map(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A 1x1 convolution to one output channel, computed as the weighted sum over channels it is.

    Same maths as ``conv(x)``; in the exported ONNX graph it stays in plain NCHW, where
    ONNX Runtime's blocked layout otherwise pads the single channel to a block of 16 and
    upsamples and reorders all 16 to the input resolution (measured: about 3 ms of a 44 ms
    decode on the 2-core CPU of docs/benchmarks.md).

    Args:
        x: ``(B, C, h, w)`` features.
        conv: ``nn.Conv2d(C, 1, 1)`` whose weights and bias are used.

    Returns:
        ``(B, 1, h, w)``.
    """
    weight = conv.weight.view(1, -1, 1, 1)
    out = (x * weight).sum(dim=1, keepdim=True)
    return out if conv.bias is None else out + conv.bias.view(1, 1, 1, 1)


class UNetDecoder(nn.Module):
    """A UNet decoder [14] with one BConv per stage, deepest level first.

    Stage 0 convolves the deepest fused map; stage k upsamples the previous stage's
    output to the next shallower level, concatenates that level's skip map and applies a
    3x3 BConv. With four levels this gives the paper's four convolutional layers; the
    last two stage outputs are d2 and d1 of Section 3.2.

    Args:
        in_channels: channels of the fused maps, shallow to deep (as the encoder's levels).
        channels: output channels of each stage, deep to shallow (one per level).
    """

    def __init__(self, in_channels: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        if len(in_channels) != len(channels):
            raise ValueError(f"{len(in_channels)} levels but {len(channels)} decoder stages")
        deep_to_shallow = list(in_channels)[::-1]
        stages = [BConv(deep_to_shallow[0], channels[0])]
        for k in range(1, len(channels)):
            stages.append(BConv(channels[k - 1] + deep_to_shallow[k], channels[k]))
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, ...] = tuple(channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Decodes fused maps (shallow to deep, ``(B, C_l, h_l, w_l)``).

        Returns:
            The output of every stage, deep to shallow; the last one is at the
            shallowest level's resolution.
        """
        skips = list(features)[::-1]
        x = self.stages[0](skips[0])
        outputs = [x]
        for stage, skip in zip(self.stages[1:], skips[1:]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
            outputs.append(x)
        return outputs


class SegmentationHead(nn.Module):
    """Merges the decoder's last two layers and predicts the mask logits (Section 3.2).

    ``d1 = d1_s + d1_l`` and ``d2 = d2_s + d2_l`` (only the segmentation terms when there
    is no localisation branch); d2 is upsampled to d1's resolution, the two are
    concatenated and passed through a BConv, then a 1x1 conv gives one logit map that is
    upsampled bilinearly to the input resolution.

    With ``detail_channels`` (``mask_stride=2``) the merged map is first upsampled x2,
    concatenated with the current frame's stride-2 encoder map and refined by one more
    3x3 BConv, so the logits are predicted at stride 2 (upsampled x2) instead of stride 4
    (upsampled x4), as the authors' decoder reaches full resolution.

    Args:
        d1_channels: channels of the last decoder layer.
        d2_channels: channels of the second-to-last decoder layer.
        channels: width of the BConv (and of the refinement).
        detail_channels: channels of the stride-2 map, or None for the stride-4 head.
        prior: the lesion probability the untrained head predicts everywhere: the classifier's bias
            starts at ``log(prior / (1 - prior))`` (the prior initialisation of Lin et al., "Focal
            Loss for Dense Object Detection", ICCV 2017, Sec. 4.1); None keeps PyTorch's default
            initialisation (bias near 0, every pixel starting at p = 0.5). The paper is silent on
            the head's initialisation; docs/model.md gives the measurement behind the default.
    """

    def __init__(self, d1_channels: int, d2_channels: int, channels: int, detail_channels: int | None = None,
                 prior: float | None = None) -> None:
        super().__init__()
        self.bconv = BConv(d1_channels + d2_channels, channels)
        self.refine = None if detail_channels is None else BConv(channels + detail_channels, channels)
        self.classifier = mask_classifier(channels, prior)

    def forward(self, d1: Tensor, d2: Tensor, size: tuple[int, int], detail: Tensor | None = None) -> Tensor:
        """``d1 (B, C1, h, w)``, ``d2 (B, C2, h/2, w/2)`` [, ``detail (B, Cd, 2h, 2w)``] -> logits ``(B, 1, *size)``."""
        if (detail is None) != (self.refine is None):
            raise ValueError("the stride-2 mask head needs the stride-2 map, the stride-4 head none")
        d2 = F.interpolate(d2, size=d1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.bconv(torch.cat([d1, d2], dim=1))
        if self.refine is not None and detail is not None:
            x = F.interpolate(x, size=detail.shape[-2:], mode="bilinear", align_corners=False)
            x = self.refine(torch.cat([x, detail], dim=1))
        return F.interpolate(one_channel_map(x, self.classifier), size=size, mode="bilinear", align_corners=False)


class HeatmapHead(nn.Module):
    """Predicts the localisation map H_t from the localisation branch's last layer d1_l."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.regressor = nn.Conv2d(channels, 1, 1)

    def forward(self, d1: Tensor, size: tuple[int, int]) -> Tensor:
        """``(B, C, h, w)`` -> heatmap ``(B, 1, *size)``."""
        return F.interpolate(one_channel_map(d1, self.regressor), size=size, mode="bilinear", align_corners=False)
