"""FFA module (Section 3.1): exact maths against hand-derived identities."""

from __future__ import annotations

import torch

from flanet.models.fusion import ChannelAttention, ConcatFusion, FrequencyFeatureAggregation


class _Ones(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x[..., :1, :1])


def _point_reflection(x: torch.Tensor) -> torch.Tensor:
    """x(-n mod N) over the last two axes."""
    return torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def test_attention_one_reduces_to_spatial_path() -> None:
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=4)
    ffa.attention = _Ones()
    x = torch.randn(2, 3, 4, 6, 7, dtype=torch.float64).float()  # odd width checks irfft2 sizes
    z = ffa.spectral_path(x)
    # iFFT(FFT(x)) = x, so z1 + z2 = [x_t, x_{t-1}] + [x_t, x_{t-2}]
    expected = torch.cat([2 * x[:, 0], x[:, 1] + x[:, 2]], dim=1)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)


def test_spectral_path_equals_even_odd_gating() -> None:
    """With gates a (real part) and b (imaginary part) per channel, iFFT gives a*even + b*odd."""
    torch.manual_seed(3)
    c = 3
    ffa = FrequencyFeatureAggregation(channels=c, out_channels=c)
    x = torch.randn(1, 3, c, 5, 8)
    spec = torch.fft.rfft2(x, norm="ortho")
    spec = torch.cat([spec.real, spec.imag], dim=2)
    groups = torch.stack([torch.cat([spec[:, 0], spec[:, k]], dim=1) for k in (1, 2)], dim=1).flatten(0, 1)
    gate = ffa.attention(groups).reshape(2, 2, 2, c)  # (group, frame in group, re/im, C)
    even = (x + _point_reflection(x)) / 2
    odd = (x - _point_reflection(x)) / 2
    expected_current = sum(gate[g, 0, 0, :, None, None] * even[0, 0] + gate[g, 0, 1, :, None, None] * odd[0, 0] for g in range(2))
    expected_previous = sum(
        gate[g, 1, 0, :, None, None] * even[0, g + 1] + gate[g, 1, 1, :, None, None] * odd[0, g + 1] for g in range(2)
    )
    z = ffa.spectral_path(x)[0]
    torch.testing.assert_close(z, torch.cat([expected_current, expected_previous]), atol=1e-5, rtol=1e-5)


def test_channel_attention_depends_on_the_features() -> None:
    """The authors' normalisation made the gate constant; ours must vary with the input."""
    ca = ChannelAttention(16)
    a = ca(torch.randn(1, 16, 5, 5))
    b = ca(torch.randn(1, 16, 5, 5) * torch.linspace(0.1, 3, 16)[None, :, None, None])
    assert a.shape == (1, 16, 1, 1)
    assert (a - b).abs().max() > 1e-3
    assert bool(((a > 0) & (a < 1)).all())


def test_channel_attention_normalisation_by_hand() -> None:
    ca = ChannelAttention(2, reduction=1)
    x = torch.zeros(1, 2, 1, 2)
    x[0, 0] = torch.tensor([3.0, 4.0])  # L2 norm 5
    x[0, 1] = torch.tensor([0.0, 15.0])  # L2 norm 15; mean of norms 10
    seen: list[torch.Tensor] = []
    ca.fc1.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    ca(x)
    torch.testing.assert_close(seen[0].flatten(), torch.tensor([0.5, 1.5]), atol=1e-5, rtol=0)


def test_ffa_is_batched_and_batch_independent() -> None:
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=6).eval()
    x = torch.randn(3, 3, 4, 8, 8)
    together = ffa(x)
    alone = torch.cat([ffa(x[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 6, 8, 8)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_concat_fusion_shape() -> None:
    fusion = ConcatFusion(channels=4, out_channels=5, num_frames=3)
    assert fusion(torch.randn(2, 3, 4, 8, 8)).shape == (2, 5, 8, 8)
