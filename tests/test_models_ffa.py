"""FFA module (Section 3.1): exact maths against hand-derived identities."""

from __future__ import annotations

import pytest
import torch

from flanet.models.fusion import ChannelAttention, ConcatFusion, FrequencyFeatureAggregation, reflection_index

COMPUTES = ["spatial", "fft"]


def _reference_reflection(x: torch.Tensor) -> torch.Tensor:
    """x(-n mod N) over the last two axes, by index arithmetic."""
    h, w = x.shape[-2:]
    rows = (-torch.arange(h)) % h
    cols = (-torch.arange(w)) % w
    return x[..., rows[:, None], cols[None, :]]


def _ffa_pair(channels: int = 3, **kwargs) -> tuple[FrequencyFeatureAggregation, FrequencyFeatureAggregation]:
    """The same weights, computed in the spatial domain and with the FFT."""
    spatial = FrequencyFeatureAggregation(channels, 5, compute="spatial", **kwargs).eval()
    fft = FrequencyFeatureAggregation(channels, 5, compute="fft", **kwargs).eval()
    fft.load_state_dict(spatial.state_dict())
    return spatial, fft


@pytest.mark.parametrize("size", [(5, 8), (1, 1), (2, 7), (11, 11)])
def test_reflection_index_gathers_the_point_reflection(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size)
    reflected = x.flatten(-2)[..., reflection_index(*size)].unflatten(-1, size)
    torch.testing.assert_close(reflected, _reference_reflection(x), atol=0, rtol=0)


@pytest.mark.parametrize("compute", COMPUTES)
def test_gate_of_one_reduces_to_the_identity(compute: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=4, compute=compute)
    monkeypatch.setattr(ffa, "gates", torch.ones_like)
    x = torch.randn(2, 3, 4, 6, 7)  # odd width checks the transform sizes
    z = ffa.spectral_path(x)
    # iFFT(FFT(x)) = x, so z1 + z2 = [x_t, x_{t-1}] + [x_t, x_{t-2}]
    expected = torch.cat([2 * x[:, 0], x[:, 1] + x[:, 2]], dim=1)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)


def test_full_spectrum_norms_are_the_energies_of_even_and_odd_parts() -> None:
    """Parseval for the orthonormal full-spectrum FFT: ||Re f̂|| = ||even f||, ||Im f̂|| = ||odd f||.

    The half spectrum of ``rfft2`` (v0.1) does not satisfy this: its norms are checked to be off.
    """
    x = torch.randn(4, 6, 7, dtype=torch.float64)
    even = (x + _reference_reflection(x)) / 2
    odd = (x - _reference_reflection(x)) / 2
    spec = torch.fft.fft2(x, norm="ortho")
    torch.testing.assert_close(spec.real.norm(dim=(-2, -1)), even.norm(dim=(-2, -1)))
    torch.testing.assert_close(spec.imag.norm(dim=(-2, -1)), odd.norm(dim=(-2, -1)))
    half = torch.fft.rfft2(x, norm="ortho")
    assert (half.real.norm(dim=(-2, -1)) - even.norm(dim=(-2, -1))).abs().max() > 0.1


@pytest.mark.parametrize("compute", COMPUTES)
def test_output_equals_even_odd_gating_by_hand(compute: str) -> None:
    """Gate a (real part) and b (imaginary part) per channel, one CA per group: iFFT is a*even + b*odd."""
    torch.manual_seed(3)
    c = 3
    ffa = FrequencyFeatureAggregation(channels=c, out_channels=c, compute=compute)
    x = torch.randn(1, 3, c, 5, 8, dtype=torch.float64)
    spec = torch.fft.fft2(x, norm="ortho")
    spec = torch.cat([spec.real, spec.imag], dim=2)  # (1, T, 2C, h, w)
    norms = [torch.cat([spec[0, 0], spec[0, k]]).norm(dim=(-2, -1)) for k in (1, 2)]  # per group (4C,)
    weights = ffa.attention
    gates = []
    for g, n in enumerate(norms):  # group g's own block: rows g*hidden.. of the grouped convs
        hid = weights.fc1.out_channels // 2
        w1 = weights.fc1.weight[g * hid : (g + 1) * hid, :, 0, 0].double()
        w2 = weights.fc2.weight[g * 4 * c : (g + 1) * 4 * c, :, 0, 0].double()
        u = torch.relu(w1 @ (n / n.mean()) + weights.fc1.bias[g * hid : (g + 1) * hid].double())
        gates.append(torch.sigmoid(w2 @ u + weights.fc2.bias[g * 4 * c : (g + 1) * 4 * c].double()).reshape(2, 2, c))
    even = (x + _reference_reflection(x)) / 2
    odd = (x - _reference_reflection(x)) / 2
    cur = sum(gates[g][0, 0, :, None, None] * even[0, 0] + gates[g][0, 1, :, None, None] * odd[0, 0] for g in range(2))
    prev = sum(gates[g][1, 0, :, None, None] * even[0, g + 1] + gates[g][1, 1, :, None, None] * odd[0, g + 1] for g in range(2))
    with torch.no_grad():
        z = ffa.spectral_path(x.float())[0]
    torch.testing.assert_close(z, torch.cat([cur, prev]).float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["per-group", "shared"])
@pytest.mark.parametrize("size", [(8, 8), (5, 7), (11, 11)])
def test_spatial_computation_equals_fft_fp32(size: tuple[int, int], attention: str) -> None:
    spatial, fft = _ffa_pair(channels=6, attention=attention)
    x = torch.randn(2, 3, 6, *size) * torch.linspace(0.2, 3, 6)[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(spatial.spectral_path(x), fft.spectral_path(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(spatial(x), fft(x), atol=1e-5, rtol=1e-5)


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``(B, T, C, h, w)`` in the memory orders the FFA meets: as built, stacked channels-last
    frames (streaming on CPU: position-major), or a window of a longer clip (forward_windows)."""
    if layout == "channels-last frames":
        stacked = torch.stack([f.contiguous(memory_format=torch.channels_last) for f in x.unbind(1)], dim=1)
        assert stacked.stride(2) == 1  # channels innermost: already position-major (no copy)
        return stacked
    if layout == "window of a longer clip":
        longer = torch.cat([x, x[:, :1]], dim=1)  # (B, T+1, C, h, w)
        return longer.unfold(1, x.shape[1], 1).movedim(-1, 2)[:, 0]  # a strided view equal to x
    return x


LAYOUTS = ["contiguous", "channels-last frames", "window of a longer clip"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("frames", [2, 3, 4])
def test_spatial_computation_equals_fft_in_every_memory_layout(layout: str, frames: int) -> None:
    spatial, fft = _ffa_pair(channels=5, num_frames=frames)
    x = torch.randn(2, frames, 5, 6, 7)
    y = _layout(x, layout)
    torch.testing.assert_close(y, x, atol=0, rtol=0)
    with torch.no_grad():
        expected = fft.spectral_path(x)
        z = spatial.spectral_path(y)
        torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(spatial(y), fft(x), atol=1e-5, rtol=1e-5)


def test_spatial_computation_is_accurate_for_nearly_symmetric_non_negative_maps() -> None:
    """The neck's ReLU features are >= 0; a nearly point-symmetric map has a tiny odd part,
    whose norm must not drown in the rounding of ||f||^2 (checked against float64 FFTs)."""
    spatial, _ = _ffa_pair(channels=4)
    base = torch.rand(1, 3, 4, 8, 8, dtype=torch.float64)
    x = base + _reference_reflection(base) + 1e-4 * torch.rand(1, 3, 4, 8, 8, dtype=torch.float64)
    exact = FrequencyFeatureAggregation(4, 5, compute="fft").double().eval()
    exact.load_state_dict(spatial.state_dict())
    with torch.no_grad():
        reference = exact._fft_path(x)  # float64 throughout
        z = spatial.spectral_path(x.float())
    torch.testing.assert_close(z.double(), reference, atol=1e-5, rtol=1e-5)


def test_spatial_computation_equals_fft_bf16() -> None:
    """Both compute in float32 inside and cast back: in bf16 they differ by bf16 rounding only."""
    spatial, fft = _ffa_pair(channels=8)
    spatial, fft = spatial.to(torch.bfloat16), fft.to(torch.bfloat16)
    x = torch.randn(2, 3, 8, 11, 11).to(torch.bfloat16)
    with torch.no_grad():
        z_s, z_f = spatial.spectral_path(x), fft.spectral_path(x)
        assert z_s.dtype == z_f.dtype == torch.bfloat16
        # bf16 keeps 8 significant bits: relative rounding 2^-8 of the values' scale
        torch.testing.assert_close(z_s.float(), z_f.float(), atol=2e-2, rtol=2 ** -7)
        o_s, o_f = spatial(x).float(), fft(x).float()
    torch.testing.assert_close(o_s, o_f, atol=3e-2, rtol=2 ** -6)


@pytest.mark.parametrize("compute", COMPUTES)
def test_swapping_the_previous_frames_changes_the_output(compute: str) -> None:
    """One attention block per group: the module knows t-1 from t-2 (the shared v0.1 gate did not)."""
    x = torch.randn(2, 3, 4, 8, 8)
    swapped = x[:, [0, 2, 1]]
    order_aware = FrequencyFeatureAggregation(4, 4, compute=compute).eval()
    shared = FrequencyFeatureAggregation(4, 4, compute=compute, attention="shared").eval()
    with torch.no_grad():
        assert (order_aware(x) - order_aware(swapped)).abs().max() > 1e-3
        torch.testing.assert_close(shared(x), shared(swapped), atol=1e-6, rtol=1e-6)


def test_each_group_has_its_own_attention_block() -> None:
    ca = ChannelAttention(8, groups=2)
    x = torch.randn(1, 16, 5, 5)
    y = x.clone()
    y[:, 8:] *= torch.linspace(0.1, 3, 8)[None, :, None, None]  # change only group 1's input
    a, b = ca(x), ca(y)
    assert a.shape == (1, 16, 1, 1)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # group 0's gate does not see group 1
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-3
    same_input = torch.cat([x[:, :8], x[:, :8]], dim=1)  # equal inputs, different weights
    gate = ca(same_input)
    assert (gate[:, :8] - gate[:, 8:]).abs().max() > 1e-3


def test_channel_attention_depends_on_the_features() -> None:
    """The authors' normalisation made the gate constant; ours must vary with the input."""
    ca = ChannelAttention(16)
    a = ca(torch.randn(1, 16, 5, 5))
    b = ca(torch.randn(1, 16, 5, 5) * torch.linspace(0.1, 3, 16)[None, :, None, None])
    assert a.shape == (1, 16, 1, 1)
    assert (a - b).abs().max() > 1e-3
    assert bool(((a > 0) & (a < 1)).all())


def test_channel_attention_normalisation_by_hand() -> None:
    ca = ChannelAttention(2, reduction=1, groups=2)
    x = torch.zeros(1, 4, 1, 2)
    x[0, 0] = torch.tensor([3.0, 4.0])  # L2 norm 5
    x[0, 1] = torch.tensor([0.0, 15.0])  # L2 norm 15; mean of group 0's norms 10
    x[0, 2] = torch.tensor([0.0, 1.0])  # group 1: norms 1 and 3, mean 2
    x[0, 3] = torch.tensor([3.0, 0.0])
    normalised = torch.tensor([0.5, 1.5, 0.5, 1.5]).reshape(1, 4, 1, 1)
    with torch.no_grad():  # the gate is the grouped 1x1 convolutions on the normalised norms
        expected = torch.sigmoid(ca.fc2(torch.relu(ca.fc1(normalised))))
        torch.testing.assert_close(ca(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_channel_attention_equals_its_grouped_convolutions(groups: int) -> None:
    """The gate computes the grouped 1x1 convs of its modules as matrix products: same numbers."""
    torch.manual_seed(1)
    ca = ChannelAttention(16, reduction=2, groups=groups)
    x = torch.rand(3, groups * 16, 5, 4)
    norms = torch.linalg.vector_norm(x, dim=(-2, -1)).unflatten(1, (groups, 16))
    normalised = (norms / (norms.mean(dim=2, keepdim=True) + ca.eps)).reshape(3, -1, 1, 1)
    with torch.no_grad():
        expected = torch.sigmoid(ca.fc2(torch.relu(ca.fc1(normalised))))
        torch.testing.assert_close(ca(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("compute", COMPUTES)
def test_ffa_is_batched_and_batch_independent(compute: str) -> None:
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=6, compute=compute).eval()
    x = torch.randn(3, 3, 4, 8, 8)
    together = ffa(x)
    alone = torch.cat([ffa(x[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 6, 8, 8)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("compute", COMPUTES)
def test_ffa_gradients_stay_finite_when_a_channel_or_its_odd_part_is_zero(compute: str, layout: str) -> None:
    # Before: sqrt of a zero norm (a ReLU-dead channel; the odd part of a 1x1 or 2x2 map) gave NaN
    # gradients, and training cpu-small stopped with a NaN loss at its second step.
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=4, compute=compute)
    x = torch.randn(2, 3, 4, 2, 2)
    x[:, :, 1] = 0  # a dead channel
    x[:, :, 2] = 1  # a constant channel: no odd part
    x.requires_grad_(True)
    ffa(_layout(x, layout)).square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in ffa.parameters() if p.grad is not None)


def test_ffa_options_are_checked() -> None:
    with pytest.raises(ValueError, match="compute must be one of spatial, fft"):
        FrequencyFeatureAggregation(4, 4, compute="dft")
    with pytest.raises(ValueError, match="attention must be one of"):
        FrequencyFeatureAggregation(4, 4, attention="two")
    with pytest.raises(ValueError, match="fuses 3 frames, got T=2"):
        FrequencyFeatureAggregation(4, 4)(torch.randn(1, 2, 4, 8, 8))


def test_concat_fusion_shape() -> None:
    fusion = ConcatFusion(channels=4, out_channels=5, num_frames=3)
    assert fusion(torch.randn(2, 3, 4, 8, 8)).shape == (2, 5, 8, 8)


@pytest.mark.parametrize("compute", COMPUTES)
def test_gradients_stay_finite_where_a_part_is_zero(compute: str) -> None:
    """A zero channel or a point-symmetric map (odd part 0, e.g. any 1x1 map) has norm 0: no NaN."""
    ffa = FrequencyFeatureAggregation(channels=4, out_channels=4, compute=compute)
    for shape in ((2, 3, 4, 1, 1), (2, 3, 4, 6, 6)):
        x = torch.randn(shape)
        x[:, :, 0] = 0  # a dead channel after ReLU
        x.requires_grad_(True)
        ffa(x).square().mean().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in ffa.parameters() if p.grad is not None)
        ffa.zero_grad()
