"""PNS+'s computation (Ji et al., "Video Polyp Segmentation: A Deep Learning Perspective", MIR 2022, Sec. 4).

A global encoder reads an *anchor* frame (the video's first frame) and a local encoder the last T
frames; both share one Res2Net-50 whose stride-16 level passes a light receptive-field block
(:class:`LightRFB`) to 32 channels, the stride-8 level another to 24. Two normalized self-attention
(NS) blocks update the local features: the first queries with the anchor (long-term), the second
with the updated local features themselves (short-term), each with residual connections; a small
decoder fuses the result with the stride-8 features of the current frame.

The NS block (PNSNet, Ji et al. MICCAI 2021, Sec. 2.1): the channels are split into ``heads``
groups, group i attends over a dilated ``(2r+1)^2`` neighbourhood (dilation ``d_i``) in each of the T
frames (:func:`~flanet.models.video_methods.attention.local_window_attention`), the query is
layer-normalised and the scores scaled by ``sqrt(C / heads)``; the soft-attention map M_S, the
largest attention weight of any group at each pixel, gates the projected output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.blocks import mask_classifier
from flanet.models.video_methods.attention import local_window_attention


class ConvNormAct(nn.Sequential):
    """Convolution, BatchNorm and PReLU (PNS+'s basic block), optionally depthwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 depthwise: bool = False, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                      dilation=dilation, groups=in_channels if depthwise else 1, bias=False),
            nn.BatchNorm2d(out_channels)]
        if act:
            layers.append(nn.PReLU(out_channels))
        super().__init__(*layers)


class LightRFB(nn.Module):
    """Light receptive-field block: SE gate, 1x1 reduction, four depthwise branches of growing dilation.

    Branch k (k = 0..3) is a depthwise (2k+1)x(2k+1) conv, a pointwise conv and a depthwise 3x3 conv
    dilated 2k+1; the input and the four branches are concatenated and projected to ``out_channels``.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = max(1, in_channels // 4)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, in_channels, 1), nn.Hardsigmoid())
        self.reduce = ConvNormAct(in_channels, mid_channels)
        branches = [nn.Sequential(ConvNormAct(mid_channels, mid_channels),
                                  ConvNormAct(mid_channels, mid_channels, 3, depthwise=True, act=False))]
        for k in (1, 2, 3):
            n = 2 * k + 1
            branches.append(nn.Sequential(
                ConvNormAct(mid_channels, mid_channels, n, depthwise=True, act=False),
                ConvNormAct(mid_channels, mid_channels),
                ConvNormAct(mid_channels, mid_channels, 3, dilation=n, depthwise=True, act=False)))
        self.branches = nn.ModuleList(branches)
        self.project = ConvNormAct(4 * mid_channels + in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, h, w) -> (N, C_out, h, w)
        reduced = self.reduce(x * self.gate(x))
        return self.project(torch.cat([x, *(branch(reduced) for branch in self.branches)], dim=1))


class NSBlock(nn.Module):
    """Normalized self-attention of one query map over T frames (PNSNet Sec. 2.1, PNS+ Sec. 4.2).

    Args:
        channels: C of the input maps.
        heads: channel groups (N in the paper), each with its own neighbourhood radius and dilation.
        head_channels: query/key/value channels per group.
        radius: per group, r of the ``(2r+1)^2`` neighbourhood.
        dilation: per group, the neighbourhood's dilation.
    """

    def __init__(self, channels: int, heads: int, head_channels: int, radius: Sequence[int],
                 dilation: Sequence[int]) -> None:
        super().__init__()
        if len(radius) != heads or len(dilation) != heads:
            raise ValueError(f"an NS block with {heads} heads needs {heads} radii and dilations, "
                             f"got {list(radius)} and {list(dilation)}")
        inner = heads * head_channels
        self.heads, self.head_channels = heads, head_channels
        self.radius, self.dilation = tuple(radius), tuple(dilation)
        self.query = nn.Conv2d(channels, inner, 1, bias=False)
        self.key = nn.Conv2d(channels, inner, 1, bias=False)
        self.value = nn.Conv2d(channels, inner, 1, bias=False)
        self.query_norm = nn.GroupNorm(heads, inner)  # layer norm of each group's query over (d, h, w)
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.scale = (channels / heads) ** 0.5

    def forward(self, query: Tensor, frames: Tensor) -> Tensor:
        """``query (B, C, h, w)``, ``frames (B, T, C, h, w)`` -> ``(B, C, h, w)``, M_S-gated attention output."""
        b, t, c, h, w = frames.shape
        flat = frames.flatten(0, 1)
        q = self.query_norm(self.query(query)).chunk(self.heads, dim=1)
        k = self.key(flat).view(b, t, -1, h, w).chunk(self.heads, dim=2)
        v = self.value(flat).view(b, t, -1, h, w).chunk(self.heads, dim=2)
        outs, peaks = [], []
        for i in range(self.heads):  # heads differ in dilation: one unfold each
            out, weights = local_window_attention(q[i], k[i], v[i], self.radius[i], self.dilation[i], self.scale)
            outs.append(out)
            peaks.append(weights.amax(dim=1))
        gate = torch.stack(peaks).amax(dim=0)[:, None]  # M_S (B, 1, h, w)
        return self.out(torch.cat(outs, dim=1)) * gate


class PNSPlusDecoder(nn.Module):
    """The decoder: the fused stride-16 map and the current frame's stride-8 map -> mask logits.

    ``high`` passes a dilated parallel conv (two halves, dilations 1 and 2), ``low`` a 1x1 conv; their
    sum -> PReLU -> 3x3 conv -> dropout -> 1x1 conv to one channel.
    """

    def __init__(self, high_channels: int, low_channels: int, channels: int, mask_prior: float | None = None) -> None:
        super().__init__()
        half = (channels + 1) // 2
        self.high_in = nn.Conv2d(high_channels, channels, 1, bias=False)
        self.high_d1 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.high_d2 = nn.Conv2d(channels - half, channels - half, 3, padding=2, dilation=2, bias=False)
        self.high_norm = nn.BatchNorm2d(channels)
        self.low = nn.Sequential(nn.Conv2d(low_channels, channels, 1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.PReLU(channels)
        self.refine = ConvNormAct(channels, channels, 3)
        self.head = nn.Sequential(nn.Dropout2d(0.1), mask_classifier(channels, mask_prior, bias=False))
        self.half = half

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        """``high (B, C_h, h, w)`` (upsampled to ``low``'s size), ``low (B, C_l, h8, w8)`` -> logits ``(B, 1, h8, w8)``."""
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.high_in(high)
        x = self.high_norm(torch.cat([self.high_d1(x[:, :self.half]), self.high_d2(x[:, self.half:])], dim=1))
        return self.head(self.refine(self.act(x + self.low(low))))


class PNSPlusHead(nn.Module):
    """Everything after the per-frame encoder: two NS blocks and the decoder (PNS+ Sec. 4, Fig. 5).

    For the current frame t with local frames ``L = [t-T+1, ..., t]`` (stride-16 RFB maps) and the
    anchor A: ``L1_k = NS_global(A, L) + L_k`` (the anchor's query, the same for every k),
    ``L2_t = NS_local(L1_t, L1) + L1_t``, ``high = L2_t + L_t``; then the decoder with frame t's
    stride-8 map.
    """

    def __init__(self, high_channels: int, low_channels: int, decoder_channels: int, heads: int, head_channels: int,
                 radius: Sequence[int], global_dilation: Sequence[int], local_dilation: Sequence[int],
                 mask_prior: float | None = None) -> None:
        super().__init__()
        self.ns_global = NSBlock(high_channels, heads, head_channels, radius, global_dilation)
        self.ns_local = NSBlock(high_channels, heads, head_channels, radius, local_dilation)
        self.decoder = PNSPlusDecoder(high_channels, low_channels, decoder_channels, mask_prior)

    def forward(self, anchor: Tensor, local: Tensor, low: Tensor) -> Tensor:
        """``anchor (B, C, h, w)``, ``local (B, T, C, h, w)`` oldest first (t last), ``low (B, C_l, h8, w8)`` -> logits."""
        updated = local + self.ns_global(anchor, local)[:, None]
        current = updated[:, -1]
        high = current + self.ns_local(current, updated) + local[:, -1]
        return self.decoder(high, low)
