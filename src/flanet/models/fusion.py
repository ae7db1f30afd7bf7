"""Temporal fusion of per-frame features: the FFA module (Section 3.1) and the Basic fusion.

Both modules take the features of one encoder level for the T frames of a clip, current
frame first, ``(B, T, C, h, w)``, and return one fused map ``(B, C_out, h, w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flanet.models.blocks import BConv

FFA_COMPUTE = ("spatial", "fft")
FFA_ATTENTION = ("per-group", "shared")


def reflection_index(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Flat positions of the point reflection of an ``height x width`` map (row-major).

    Position ``i * width + j`` maps to ``(-i mod height) * width + (-j mod width)``:
    gathering a flattened map at these positions gives ``x(-n mod N)``, the reflection
    behind FFA (docs/model.md), in one pass.
    """
    rows = (-torch.arange(height, device=device)) % height
    cols = (-torch.arange(width, device=device)) % width
    return (rows[:, None] * width + cols).flatten()


class ChannelAttention(nn.Module):
    """CA(.) of Section 3.1: feature normalisation, 1x1 conv, ReLU, 1x1 conv, sigmoid.

    The feature normalisation (the paper does not define it) is the one the authors'
    code intends: the L2 norm of each channel over all positions, divided by the mean of
    those norms over the channels. The authors divide by the mean over a size-1 axis,
    which makes the attention input constantly 1 and the gate input-independent (see
    docs/model.md); here the gate really depends on the features.

    ``groups`` independent attention blocks (own weights, own normalisation) run side by
    side as grouped 1x1 convolutions: FFA's order-aware gates, one per frame pair.

    Args:
        channels: channels K of one group's input (4C for a pair of frames).
        reduction: channel reduction of the bottleneck between the two 1x1 convs.
        groups: G, independent blocks; the input has G x K channels, group-major.
    """

    def __init__(self, channels: int, reduction: int = 8, groups: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.eps, self.channels, self.groups = eps, channels, groups
        self.fc1 = nn.Conv2d(groups * channels, groups * hidden, 1, groups=groups)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(groups * hidden, groups * channels, 1, groups=groups)

    def gate(self, norms: Tensor) -> Tensor:
        """Gate ``(N, G*K)`` in (0, 1) from the per-channel L2 norms ``(N, G*K)`` of the input.

        The grouped 1x1 convolutions act on a 1x1 map, so they are computed as one batched
        matrix product per layer (same weights; cheaper than a grouped convolution call).
        """
        n, g = norms.shape[0], self.groups
        norms = norms.float().unflatten(1, (g, self.channels))  # (N, G, K)
        norms = norms / (norms.mean(dim=2, keepdim=True) + self.eps)
        w1, w2 = self.fc1.weight.flatten(1).unflatten(0, (g, -1)), self.fc2.weight.flatten(1).unflatten(0, (g, -1))
        hidden = norms.to(w1.dtype).unsqueeze(2) @ w1.transpose(1, 2)  # (N, G, 1, K / r)
        hidden = self.relu(hidden.squeeze(2) + self.fc1.bias.unflatten(0, (g, -1)))
        logits = (hidden.unsqueeze(2) @ w2.transpose(1, 2)).squeeze(2) + self.fc2.bias.unflatten(0, (g, -1))
        return torch.sigmoid(logits).reshape(n, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Returns the gate ``(N, G*K, 1, 1)`` for input ``(N, G*K, h, w)``."""
        norms = torch.linalg.vector_norm(x.float(), dim=(-2, -1))  # (N, G*K); gradient 0 at 0
        return self.gate(norms)[..., None, None]


class FrequencyFeatureAggregation(nn.Module):
    """FFA module of Section 3.1 for one encoder level.

    Steps, with the paper's names: f̂ = FFT(f) for every frame (full 2-D FFT,
    orthonormal); x = [Re f̂, Im f̂] (2C channels); groups g_k = {x_t, x_{t-k}} for
    k = 1..T-1 (the paper's two groups for T = 3), concatenated on channels (4C);
    y_k = CA_k(g_k) * g_k with one attention block per group (the paper's "two attention
    maps"; own weights, so the module knows t-1 from t-2); each frame's half of y_k back
    to complex (first C channels real, last C imaginary); z_k = iFFT(...), which has 2C
    channels (x_t's and x_{t-k}'s); o_t = BConv(sum_k z_k).

    The gate is one number per channel of [Re f̂, Im f̂]. For real f, Re f̂ = FFT(even(f))
    and i Im f̂ = FFT(odd(f)), where even/odd are the parts of f under point reflection
    ``n -> -n mod N``; so scaling Re by a and Im by b gives iFFT = a * even(f) + b * odd(f),
    and, by Parseval for the orthonormal full-spectrum FFT, the CA's per-channel norms of
    Re f̂ and Im f̂ are ||even(f)|| and ||odd(f)||. ``compute="spatial"`` (default) computes
    exactly that from f and its point reflection R f (one gather), no FFT; with
    ``even = f + (R f - f) / 2`` and ``odd = -(R f - f) / 2`` it needs only ``R f - f``, two
    sums of squares per channel and one multiply-add per value and frame (docs/model.md,
    "What FFA computes"); ``compute="fft"`` runs the FFTs as the
    paper describes. Both give the same output to float rounding (tested), in float32
    inside whatever the weights' dtype.

    Args:
        channels: C, channels of each frame's feature map.
        out_channels: channels of o_t.
        reduction: bottleneck reduction of CA.
        num_frames: T (current + T-1 previous frames); T-1 groups.
        attention: ``"per-group"`` (one CA per group, default) or ``"shared"`` (one CA for
            every group, the v0.1 module: symmetric in the previous frames).
        compute: ``"spatial"`` (point reflection, no FFT) or ``"fft"`` (``fft2``/``ifft2``).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        reduction: int = 8,
        *,
        num_frames: int = 3,
        attention: str = "per-group",
        compute: str = "spatial",
    ) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"FFA needs at least 2 frames, got num_frames={num_frames}")
        if attention not in FFA_ATTENTION:
            raise ValueError(f"FFA attention must be one of {', '.join(FFA_ATTENTION)}, got {attention!r}")
        if compute not in FFA_COMPUTE:
            raise ValueError(f"FFA compute must be one of {', '.join(FFA_COMPUTE)}, got {compute!r}")
        self.num_frames, self.compute, self.shared = num_frames, compute, attention == "shared"
        self.attention = ChannelAttention(4 * channels, reduction, groups=1 if self.shared else num_frames - 1)
        self.bconv = BConv(2 * channels, out_channels)

    def gates(self, norms: Tensor) -> Tensor:
        """CA of every group: ``(B, T-1, 4C)`` norms of g_k -> gates ``(B, T-1, 4C)`` (float32)."""
        b, groups, k = norms.shape
        flat = norms.reshape(b * groups, k) if self.shared else norms.reshape(b, groups * k)
        return self.attention.gate(flat).float().reshape(b, groups, k)

    def spectral_path(self, x: Tensor) -> Tensor:
        """Everything before BConv: returns z_1 + ... + z_{T-1}, ``(B, 2C, h, w)``.

        Args:
            x: ``(B, T, C, h, w)`` features, current frame first.
        """
        if x.shape[1] != self.num_frames:
            raise ValueError(f"this FFA fuses {self.num_frames} frames, got T={x.shape[1]}")
        z = self._fft_path(x.float()) if self.compute == "fft" else self._spatial_path(x.float())
        return z.to(x.dtype)

    def _fft_path(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        spec = torch.fft.fft2(x, norm="ortho")  # (B, T, C, h, w) complex, full spectrum
        spec = torch.cat([spec.real, spec.imag], dim=2)  # (B, T, 2C, h, w) = x_t, x_{t-k}
        current = spec[:, :1].expand(b, t - 1, 2 * c, h, w)
        groups = torch.cat([current, spec[:, 1:]], dim=2)  # (B, T-1, 4C, h, w)
        norms = torch.linalg.vector_norm(groups, dim=(-2, -1))  # (B, T-1, 4C), full-spectrum norms
        y = groups * self.gates(norms)[..., None, None]
        y = y.unflatten(2, (2, 2, c))  # (B, T-1, frame in group, re/im, C, h, w)
        z = torch.fft.ifft2(torch.complex(y[:, :, :, 0], y[:, :, :, 1]), norm="ortho").real
        return z.sum(dim=1).flatten(1, 2)  # (B, 2C, h, w): z_1 + ... + z_{T-1}

    def _spatial_path(self, x: Tensor) -> Tensor:
        """z_1 + ... + z_{T-1} from f and R f: ``a * even + b * odd = a * f + (a - b) / 2 * (R f - f)``.

        Works position-major, on ``(B, P, T, C)`` with P = h w positions: the point reflection
        is then one gather of whole ``T x C`` rows (in PyTorch and in the exported ONNX graph).
        Frames in channels-last memory stacked on T are already in that order (streaming on
        CPU: no copy); other inputs are transposed once, and the result is a channels-last
        ``(B, 2C, h, w)`` map either way. Per channel, ||odd|| = ||R f - f|| / 2 and
        ||even||^2 = ||f||^2 - ||odd||^2 (Pythagoras: even and odd are orthogonal; for the
        non-negative features after the neck's ReLU even holds at least half of the energy, so
        the subtraction loses nothing), with a zero gradient where a part vanishes. The sums of
        squares over positions are plain products and sums: ``vector_norm`` over this non-innermost
        axis took 2-6x longer in PyTorch on the CPU (0.83 against 0.35 ms on the 88x88 level), and
        ``square`` becomes a slow ``Pow`` in ONNX Runtime.
        """
        b, t, c, h, w = x.shape
        f = x.flatten(3).permute(0, 3, 1, 2).contiguous()  # (B, P, T, C); a view for channels-last frames
        diff = f.index_select(1, reflection_index(h, w, x.device)).sub_(f)  # R f - f = -2 odd(f)
        odd_sq = (diff * diff).sum(dim=1) / 4  # (B, T, C)
        norms_sq = torch.cat([(f * f).sum(dim=1) - odd_sq, odd_sq], dim=2)  # (B, T, 2C): ||even||^2, ||odd||^2
        positive = norms_sq > 0
        norms = torch.where(positive, torch.where(positive, norms_sq, 1).sqrt(), 0)  # norms of [Re f̂, Im f̂]
        current = norms[:, :1].expand(b, t - 1, 2 * c)
        gate = self.gates(torch.cat([current, norms[:, 1:]], dim=2)).unflatten(2, (2, 2, c))  # (B, T-1, frame, a/b, C)
        gate = torch.cat([gate[:, :, 0].sum(dim=1, keepdim=True), gate[:, :, 1]], dim=1)  # (B, T, a/b, C)
        a, a_minus_b = gate[:, None, :, 0], (gate[:, :, 0] - gate[:, :, 1])[:, None]  # (B, 1, T, C)
        terms = torch.mul(f, a).addcmul_(diff, a_minus_b, value=0.5)  # a even(f) + b odd(f), (B, P, T, C)
        previous = terms[:, :, 1]
        for k in range(2, t):
            previous = previous + terms[:, :, k]
        z = torch.cat([terms[:, :, 0], previous], dim=2)  # (B, P, 2C): [z of f_t, sum over the previous frames]
        return z.movedim(1, 2).unflatten(2, (h, w))  # (B, 2C, h, w) in channels-last memory

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
