"""DCFNet's computation (Zhang et al., "Dynamic Context-Sensitive Filtering Network for Video Salient Object
Detection", ICCV 2021, Sec. 3): dynamic context-sensitive filtering (DCFM) in a bidirectional fusion.

A DCFM (Sec. 3.2) turns the affinity between a neighbouring frame's features and the current frame's
into convolution kernels: query from the neighbour, key and value from the current frame, a
*channel* affinity ``softmax(Q K^T)`` (C/2 x C/2) applied to V plus Q, a 1x1 conv to ``(C/2)^2``
channels and average pooling to ``k x k`` give one ``(C/2, C/2, k, k)`` kernel per video, which
filters the current value map. Three such filters (dilations 1, 3, 5) are mixed by softmax weights
from each one's pooled response, then a 3x3 conv and BatchNorm restore C.

The *bidirectional dynamic fusion* (Sec. 3.3) runs a DCFM with the previous frame and one with the
next, fuses them (1x1 conv + BN) and blends the result with the current features by a learned
weight alpha. Four levels are decoded deep to shallow, each DCFM output feeding the next level's
input (``DenseDecoder``). Causal deviation: a stream has no next frame, so the "next" neighbour is
the current frame itself, which is what the public code does at the last frame of a clip; the
previous frame's level inputs are carried in the per-video state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.image_methods.base import ConvBNReLU, resize


def adaptive_pool_matrix(size_in: int, size_out: int, like: Tensor) -> Tensor:
    """``(size_out, size_in)`` averaging weights of ``F.adaptive_avg_pool2d`` along one axis.

    Bin i averages the inputs ``floor(i n / m) .. ceil((i + 1) n / m) - 1``; as a matrix product it
    exports to ONNX at any size (ONNX's adaptive pooling needs the output size to divide the input's).
    """
    i = torch.arange(size_out, device=like.device)
    start = (i * size_in) // size_out
    end = ((i + 1) * size_in + size_out - 1) // size_out
    j = torch.arange(size_in, device=like.device)
    inside = ((j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])).to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


class DCFM(nn.Module):
    """Dynamic context-sensitive filtering: three dynamic filters (dilations 1, 3, 5) mixed by softmax weights.

    Filter i: query from the context, key and value from the current map (``C/2`` channels each),
    a channel affinity ``softmax(Q K^T)`` applied to V plus Q, a 1x1 conv to ``(C/2)^2`` channels and
    average pooling to ``k x k`` give each video its own ``(C/2, C/2, k, k)`` kernel, which filters V
    (dilation d_i). The three responses are weighted by a softmax over a linear map of each one's mean,
    summed, then a 3x3 conv and BatchNorm restore C, and a ReLU. The three filters run as one grouped
    computation (one conv of 3 C/2 channels for each of Q, K, V, a grouped 1x1 conv to the kernels),
    which keeps the exported graph small.
    """

    def __init__(self, context_channels: int, channels: int, kernel_size: int = 3,
                 dilations: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        half, n = channels // 2, len(dilations)
        self.half, self.kernel_size, self.dilations = half, kernel_size, tuple(dilations)
        self.query = nn.Conv2d(context_channels, n * half, 1)
        self.key = nn.Conv2d(channels, n * half, 1)
        self.value = nn.Conv2d(channels, n * half, 1)
        self.to_filter = nn.Conv2d(n * half, n * half * half, 1, groups=n)
        bound = half ** -0.5  # nn.Linear's initialisation, one linear map per filter
        self.mix_weight = nn.Parameter(torch.empty(n, half).uniform_(-bound, bound))
        self.mix_bias = nn.Parameter(torch.empty(n).uniform_(-bound, bound))
        self.out = nn.Sequential(nn.Conv2d(half, channels, 3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, context: Tensor, current: Tensor) -> Tensor:
        """``context (B, C_c, h, w)``, ``current (B, C, h, w)`` -> ``(B, C, h, w)``."""
        b, _, h, w = current.shape
        n, half, k = len(self.dilations), self.half, self.kernel_size
        q = self.query(context).view(b, n, half, h * w)
        key = self.key(current).view(b, n, half, h * w)
        v = self.value(current).view(b, n, half, h * w)
        affinity = torch.softmax(q @ key.transpose(-1, -2), dim=-1)  # (B, 3, C/2, C/2) channel affinity
        filters = self.to_filter((affinity @ v + q).view(b, n * half, h, w))  # (B, 3 (C/2)^2, h, w)
        rows, cols = adaptive_pool_matrix(h, k, filters), adaptive_pool_matrix(w, k, filters)
        kernels = torch.einsum("ih,bchw,jw->bcij", rows, filters, cols).reshape(b, n, half, half * k * k)
        responses = []
        for i, dilation in enumerate(self.dilations):  # each video's own kernel: a batched product with the unfolded V
            columns = F.unfold(v[:, i].reshape(b, half, h, w), k, dilation=dilation, padding=dilation * (k // 2))
            responses.append(torch.bmm(kernels[:, i], columns))  # (B, C/2, hw)
        stacked = torch.stack(responses, dim=1)  # (B, 3, C/2, hw)
        alpha = torch.softmax(torch.einsum("bnc,nc->bn", stacked.mean(dim=-1), self.mix_weight) + self.mix_bias, dim=1)
        mixed = (alpha[:, :, None, None] * stacked).sum(dim=1).view(b, half, h, w)
        return F.relu(self.out(mixed))


class BidirectionalFusion(nn.Module):
    """``DCFMRear``: DCFMs with the previous and the next frame, fused, blended with the current features."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.reduce_front, self.reduce_rear = nn.Conv2d(channels, half, 1, bias=False), nn.Conv2d(channels, half, 1, bias=False)
        self.front, self.rear = DCFM(channels, half), DCFM(channels, half)
        self.expand_front, self.expand_rear = nn.Conv2d(half, channels, 1, bias=False), nn.Conv2d(half, channels, 1, bias=False)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.BatchNorm2d(channels))
        self.alpha = nn.Linear(channels, 1)

    def forward(self, previous: Tensor, current: Tensor, following: Tensor) -> Tensor:
        """Three ``(B, C, h, w)`` maps -> ``(B, C, h, w)``: ``a * fused + (1 - a) * current``, a = sigmoid(fc(GAP(fused)))."""
        y_front = self.expand_front(self.front(previous, self.reduce_front(current)))
        y_rear = self.expand_rear(self.rear(following, self.reduce_rear(current)))
        fused = self.fuse(torch.cat([y_front, y_rear], dim=1))
        alpha = torch.sigmoid(self.alpha(fused.mean(dim=(2, 3))))[:, :, None, None]
        return alpha * fused + (1 - alpha) * current


class DenseDecoder(nn.Module):
    """The four-level decoder of DCFNet: a bidirectional fusion per level, deep to shallow.

    ``levels`` are the fused encoder maps ``y0..y3`` (strides 4, 8, 16, 16, all ``channels`` wide);
    :meth:`step` runs one frame's levels given the previous frame's level inputs and returns the
    frame's own, which the next frame reads. Level inputs: ``y3``; ``y2 + r(F0)``;
    ``y1 + r(F1) + r(F0)``; ``y0 + r(F2) + r(F1) + r(F0)`` (F_L: level L's fusion output, r: resize and
    3x3 conv); the mask: the four fusion outputs concatenated at stride 4, conv, 1x1 conv.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.fusions = nn.ModuleList(BidirectionalFusion(c) for _ in range(4))
        self.refine = nn.ModuleDict({name: ConvBNReLU(c, c) for name in ("r0_1", "r0_2", "r1_2", "r0_3", "r1_3", "r2_3")})
        self.cat = nn.ModuleList(ConvBNReLU(c, c) for _ in range(4))
        self.fuse = ConvBNReLU(4 * c, c)
        self.head = nn.Sequential(ConvBNReLU(c, 2 * c), nn.Conv2d(2 * c, 1, 1))

    def step(self, levels: list[Tensor], previous: list[Tensor] | None, depth: int = 4) -> tuple[Tensor | None, list[Tensor]]:
        """One frame of the recurrence, up to ``depth`` fusion levels.

        Args:
            levels: the frame's fused encoder maps ``[y0, y1, y2, y3]``.
            previous: the previous frame's level inputs (at least ``depth`` of them); None: the frame is the
                video's first (its own inputs stand in).
            depth: fusions to run (0-4): level L's input needs the fusions of the levels before it, and
                only with all four is there a mask.

        Returns:
            ``(logits at stride 4 (B, 1, h4, w4) when depth == 4 else None, the frame's level inputs 0..min(depth, 3))``.
        """
        y0, y1, y2, y3 = levels
        inputs: list[Tensor] = [y3]
        fused: list[Tensor] = []

        def resized(level: int, like: Tensor) -> Tensor:
            return resize(fused[level], like.shape[-2:])

        for level in range(depth):
            current = inputs[level]
            before = current if previous is None else previous[level]
            fused.append(self.fusions[level](before, current, current))  # causal: the "next" frame is t itself
            if level == 0:
                inputs.append(y2 + self.refine["r0_1"](resized(0, y2)))
            elif level == 1:
                inputs.append(y1 + self.refine["r1_2"](resized(1, y1)) + self.refine["r0_2"](resized(0, y1)))
            elif level == 2:
                inputs.append(y0 + self.refine["r2_3"](resized(2, y0)) + self.refine["r1_3"](resized(1, y0))
                              + self.refine["r0_3"](resized(0, y0)))
        if depth < 4:
            return None, inputs[:depth + 1]
        agg = torch.cat([conv(x) for conv, x in zip(self.cat, (fused[3], resized(2, y0), resized(1, y0), resized(0, y0)))],
                        dim=1)
        return self.head(self.fuse(agg)), inputs[:4]
