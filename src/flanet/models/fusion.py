"""Temporal fusion of per-frame features: the FFA module (Section 3.1) and the Basic fusion.

Both modules take the features of one encoder level for the T frames of a clip, current
frame first, ``(B, T, C, h, w)``, and return one fused map ``(B, C_out, h, w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flanet.models.blocks import BConv


class ChannelAttention(nn.Module):
    """CA(.) of Section 3.1: feature normalisation, 1x1 conv, ReLU, 1x1 conv, sigmoid.

    The feature normalisation (the paper does not define it) is the one the authors'
    code intends: the L2 norm of each channel over all positions, divided by the mean of
    those norms over the channels. The authors divide by the mean over a size-1 axis,
    which makes the attention input constantly 1 and the gate input-independent (see
    docs/model.md); here the gate really depends on the features.

    Args:
        channels: channels of the grouped spectral input (4C for a pair of frames).
        reduction: channel reduction of the bottleneck between the two 1x1 convs.
    """

    def __init__(self, channels: int, reduction: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.eps = eps
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the gate ``(N, K, 1, 1)`` in (0, 1) for input ``(N, K, h, w)``."""
        norm = x.float().square().sum(dim=(-2, -1), keepdim=True).sqrt()  # (N, K, 1, 1)
        norm = norm / (norm.mean(dim=1, keepdim=True) + self.eps)
        return torch.sigmoid(self.fc2(self.relu(self.fc1(norm.to(x.dtype)))))


class FrequencyFeatureAggregation(nn.Module):
    """FFA module of Section 3.1 for one encoder level.

    Steps, with the paper's names: f̂ = FFT(f) for every frame; x = [Re f̂, Im f̂]
    (2C channels); groups g_k = {x_t, x_{t-k}} for k = 1..T-1 (the paper's two groups
    for T = 3), concatenated on channels (4C); y_k = CA(g_k) * g_k; each frame's half of
    y_k back to complex (first C channels real, last C imaginary); z_k = iFFT(...),
    which has 2C channels (x_t's and x_{t-k}'s); o_t = BConv(sum_k z_k).

    Choices where the paper is silent (see docs/model.md):
      * ``rfft2``/``irfft2`` with ``norm="ortho"``: the features are real, so the
        half spectrum holds all the information (exact inverse, half the cost of
        ``fft2``), and the orthonormal scaling keeps spectral norms equal to spatial ones.
      * One CA shared by the T-1 groups (the paper writes "a channel attention
        function CA"), which also makes the module work for any T >= 2.
      * Since the gate is per channel, scaling Re and Im of a channel by a and b gives
        ``iFFT = a * even(f) + b * odd(f)`` with even/odd the parts of f under point
        reflection: the module's global receptive field comes from that reflection.

    Args:
        channels: C, channels of each frame's feature map.
        out_channels: channels of o_t.
        reduction: bottleneck reduction of CA.
    """

    def __init__(self, channels: int, out_channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.attention = ChannelAttention(4 * channels, reduction)
        self.bconv = BConv(2 * channels, out_channels)

    def spectral_path(self, x: Tensor) -> Tensor:
        """Everything before BConv: returns z_1 + ... + z_{T-1}, ``(B, 2C, h, w)``.

        Args:
            x: ``(B, T, C, h, w)`` features, current frame first.
        """
        b, t, c, h, w = x.shape
        if t < 2:
            raise ValueError(f"FFA needs at least 2 frames, got T={t}")
        spec = torch.fft.rfft2(x.float(), norm="ortho")  # (B, T, C, h, w//2+1) complex
        spec = torch.cat([spec.real, spec.imag], dim=2)  # (B, T, 2C, h, w') = x_t, x_{t-k}
        current = spec[:, :1].expand(b, t - 1, 2 * c, h, spec.shape[-1])
        groups = torch.cat([current, spec[:, 1:]], dim=2)  # (B, T-1, 4C, h, w')
        groups = groups.flatten(0, 1)  # (B*(T-1), 4C, h, w')
        y = groups * self.attention(groups)  # (B*(T-1), 4C, h, w')
        y = y.unflatten(1, (2, 2, c))  # (B*(T-1), frame in group, re/im, C, h, w')
        z = torch.fft.irfft2(torch.complex(y[:, :, 0], y[:, :, 1]), s=(h, w), norm="ortho")
        z = z.unflatten(0, (b, t - 1)).sum(dim=1)  # (B, 2, C, h, w): z_1 + ... + z_{T-1}
        return z.flatten(1, 2).to(x.dtype)  # (B, 2C, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C, h, w)`` -> o_t ``(B, C_out, h, w)``."""
        return self.bconv(self.spectral_path(x))


class ConcatFusion(nn.Module):
    """Fusion of the "Basic" network of Table 3: concatenate the T frames' features and
    fuse them with a 1x1 convolution (followed by GroupNorm and ReLU, like BConv, so the
    variants differ only in the fusion itself).

    Args:
        channels: C, channels of each frame's feature map.
        out_channels: channels of the fused map.
        num_frames: T.
    """

    def __init__(self, channels: int, out_channels: int, num_frames: int) -> None:
        super().__init__()
        self.fuse = BConv(num_frames * channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C, h, w)`` -> ``(B, C_out, h, w)``."""
        return self.fuse(x.flatten(1, 2))
