"""What is particular to the video comparison methods of Table 2 (PNS+, AFB-URR, DPSTT, DCFNet).

The registry-driven contract test (tests/test_models_contract.py) builds, trains, streams and round-trips
every registered model; here: their registration, the plain-PyTorch kernels against brute force, each
state's policy (PNS+'s anchor, the memories reading the model's own predictions, DCFNet's unrolled
recurrence), bounded memory on a long stream, and bfloat16. Tiny sizes: resnet18, narrow heads, 64 px.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from flanet.models import create_model, list_models
from flanet.models.contract import VideoSegmentationModel
from flanet.models.registry import default_mask_loss, model_spec
from flanet.models.video_methods.attention import local_window_attention
from flanet.models.video_methods.feature_bank import FeatureBank

SIZE = 64
#: Tiny options of every method.
TINY: dict[str, dict] = {
    "pnsplus": {"encoder": "resnet18", "rfb_channels": 16},
    "afb-urr": {"encoder": "resnet18", "clip_frames": 3, "bank_size": 40, "key_channels": 16,
                "value_channels": 32, "memory_decoder_channels": 16, "refine_channels": 8},
    "dpstt": {"encoder": "resnet18", "memory_size": 4, "selected_frames": 2, "key_channels": 16,
              "value_channels": 32, "memory_decoder_channels": 16},
    "dcfnet": {"encoder": "resnet18", "aspp_channels": 16, "channels": 16},
}
MEMORIES = ("afb-urr", "dpstt")


@pytest.fixture(scope="module", params=list(TINY))
def model(request: pytest.FixtureRequest) -> VideoSegmentationModel:
    torch.manual_seed(0)
    return create_model(request.param, **TINY[request.param]).eval()


def _stream(model: VideoSegmentationModel, frames: torch.Tensor) -> list[torch.Tensor]:
    state, outputs = model.init_state(), []
    with torch.no_grad():
        for frame in frames:
            output, state = model.step(state, model.encode(frame[None]))
            outputs.append(output.mask_logits)
    return outputs


def test_the_four_methods_are_registered_with_their_table_2_rows_and_losses() -> None:
    assert set(TINY) <= set(list_models(kind="video", table=2))
    assert {name: model_spec(name).row(2).label for name in TINY} == {
        "pnsplus": "PNS+", "afb-urr": "AFB-URR", "dpstt": "DPSTT", "dcfnet": "DCFNet"}
    assert {name: default_mask_loss(name) for name in TINY} == {
        "pnsplus": "bce", "afb-urr": "bce", "dpstt": "bce", "dcfnet": "bce-ssim-iou"}
    assert {name: model_spec(name).default_encoder for name in TINY} == {
        "pnsplus": "res2net50_26w_4s", "afb-urr": "resnet50", "dpstt": "resnet50", "dcfnet": "resnet101"}


def test_local_window_attention_equals_the_brute_force_sum() -> None:
    """PNS+'s CUDA kernel semantics: neighbours outside the map score 0 and carry no value."""
    torch.manual_seed(1)
    b, t, d, h, w, r, dil = 1, 2, 3, 5, 6, 1, 2
    q, k, v = torch.randn(b, d, h, w), torch.randn(b, t, d, h, w), torch.randn(b, t, 4, h, w)
    out, weights = local_window_attention(q, k, v, r, dil, scale=2.0)
    for y in range(h):
        for x in range(w):
            scores, values = [], []
            for f in range(t):
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        yy, xx = y + dy * dil, x + dx * dil
                        inside = 0 <= yy < h and 0 <= xx < w
                        scores.append(float(q[0, :, y, x] @ k[0, f, :, yy, xx]) / 2.0 if inside else 0.0)
                        values.append(v[0, f, :, yy, xx] if inside else torch.zeros(4))
            expected = torch.softmax(torch.tensor(scores), 0) @ torch.stack(values)
            torch.testing.assert_close(out[0, :, y, x], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights.sum(1), torch.ones(b, h, w))


def test_the_feature_bank_merges_close_features_appends_others_and_evicts_the_least_used() -> None:
    eye = torch.eye(4)
    bank = FeatureBank.empty(1, 1, 6, 4, 2, eye).absorb(eye[None, None], torch.ones(1, 1, 4, 2), torch.tensor([0]), 0.95, 0.1)
    assert int(bank.valid.sum()) == 4
    near = F.normalize(torch.tensor([1.0, 0.1, 0.0, 0.0]), dim=0)
    bank = bank.absorb(3 * near[None, None, None], torch.zeros(1, 1, 1, 2), torch.tensor([1]), 0.95, 0.1)
    keys = bank.keys[0, 0][bank.valid[0, 0]]
    assert keys.shape[0] == 4  # merged into e0's slot, not appended
    expected = 0.9 * eye[0] + 0.1 * near  # |k| ((1 - r) k/|k| + r new/|new|), |k| = 1
    assert any(torch.allclose(k, expected) for k in keys)
    read = torch.zeros(1, 6, 10)
    read[0, (bank.keys[0, 0, :, 1] == 1) | (bank.keys[0, 0, :, 2] == 1)] = 0.5  # e1 and e2 were read by 10 pixels
    bank = bank.count_reads(read)
    far = torch.tensor([0.5, -0.5, 0.5, -0.5]).expand(1, 1, 3, 4)  # cosine 0.5 to every slot: appended
    bank = bank.absorb(far, torch.zeros(1, 1, 3, 2), torch.tensor([2]), 0.95, 0.1)
    kept = bank.keys[0, 0][bank.valid[0, 0]]
    assert kept.shape[0] == 6  # 4 + 3 entries for 6 slots: the least frequently used one went
    assert (kept == far[0, 0, 0]).all(dim=1).sum() == 3
    assert any(torch.equal(k, eye[1]) for k in kept) and any(torch.equal(k, eye[2]) for k in kept)
    assert sum(torch.equal(k, eye[3]) for k in kept) + sum(torch.allclose(k, expected) for k in kept) == 1


@pytest.mark.parametrize("name", MEMORIES)
def test_a_memory_reads_its_own_predictions_and_equals_forward_on_the_clip_so_far(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).eval()
    frames = torch.randn(3, 3, SIZE, SIZE)
    streamed = _stream(model, frames)
    with torch.no_grad():
        for t in range(3):
            clip = frames[list(range(t, -1, -1))][None]  # [t, t-1, ..., 0]: the same stream, oldest first inside forward
            torch.testing.assert_close(model(clip).mask_logits, streamed[t], rtol=0, atol=1e-5)
    # the memory matters: the same frame after another history gives another mask
    other = _stream(model, torch.cat([torch.randn(2, 3, SIZE, SIZE), frames[2:]]))
    assert not torch.allclose(other[-1], streamed[-1], atol=1e-4)


@pytest.mark.parametrize("name", list(TINY))
def test_memory_is_bounded_on_a_long_stream(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).eval()
    state, held = model.init_state(), []
    features = model.encode(torch.randn(1, 3, SIZE, SIZE))
    with torch.no_grad():
        for _ in range(12):
            _, state = model.step(state, [f + 0.1 * torch.randn_like(f) for f in features])
            held.append(state.held_frames)
    bound = {"pnsplus": 5, "afb-urr": 40, "dpstt": 4, "dcfnet": 4}[name]
    assert max(held) <= bound and held[-1] == held[-6]


def test_pnsplus_reads_the_first_frame_as_its_anchor_and_a_batch_of_frames_at_once() -> None:
    torch.manual_seed(0)
    model = create_model("pnsplus", **TINY["pnsplus"]).eval()
    frames = torch.randn(7, 3, SIZE, SIZE)
    streamed = _stream(model, frames)
    with torch.no_grad():
        for t in (2, 6):
            clip = frames[[max(t - k, 0) for k in range(5)] + [0]][None]  # window, then the anchor: frame 0
            torch.testing.assert_close(model(clip).mask_logits, streamed[t], rtol=0, atol=1e-5)
            so_far = frames[list(range(t, -1, -1))][None]  # the video so far, current first
            torch.testing.assert_close(model(so_far).mask_logits, streamed[t], rtol=0, atol=1e-5)
        batched = model.decode(model.init_state().read(model.encode(frames)))
    torch.testing.assert_close(batched.mask_logits, torch.cat(streamed), rtol=0, atol=1e-5)


def test_dcfnet_window_is_its_recurrence_unrolled() -> None:
    torch.manual_seed(0)
    model = create_model("dcfnet", **TINY["dcfnet"]).eval()
    with torch.no_grad():
        features = [model.encode(torch.randn(1, 3, SIZE, SIZE)) for _ in range(6)]
        previous, recurrent = None, []
        for levels in features:  # every frame through all four levels, the previous frame's inputs carried
            logits, previous = model.decoder.step(levels, previous)
            recurrent.append(F.interpolate(logits, size=(SIZE, SIZE), mode="bilinear", align_corners=False))
        for t in range(6):
            window = model.decode([features[max(t - k, 0)] for k in range(5)]).mask_logits
            torch.testing.assert_close(window, recurrent[t], rtol=0, atol=1e-5)


def test_each_method_streams_in_bfloat16(model: VideoSegmentationModel) -> None:
    frames = torch.randn(3, 3, SIZE, SIZE)
    full = _stream(model, frames)
    half = _stream(copy.deepcopy(model).to(torch.bfloat16), frames.to(torch.bfloat16))
    for h, f in zip(half, full):
        assert h.dtype == torch.bfloat16 and torch.isfinite(h).all()
        assert float((h.float() - f).abs().max()) <= 0.1 * max(1.0, float(f.abs().max()))


def test_dcfm_filters_each_video_with_its_own_kernels() -> None:
    """The dynamic kernels are per video: a batch gives what each video gives alone (no kernel crosses videos)."""
    from flanet.models.video_methods.dcfnet_blocks import DCFM

    torch.manual_seed(0)
    dcfm = DCFM(8, 8).eval()
    context, current = torch.randn(3, 8, 6, 5), torch.randn(3, 8, 6, 5)
    with torch.no_grad():
        batched = dcfm(context, current)
        alone = torch.cat([dcfm(context[i:i + 1], current[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
        assert not torch.allclose(dcfm(context.flip(0), current), batched, atol=1e-4)  # the context matters


def test_a_cpu_small_recipe_fits_every_method() -> None:
    """FLA-Net's recipe options (neck_channels, decoder_channels, head_channels) reach none of them: no option shares a name."""
    from flanet.training import load_config
    from flanet.training.model_defaults import resolve_model_defaults

    for name in TINY:
        config = resolve_model_defaults(load_config("cpu-small", [f"model.name={name}"]))
        assert config.model.options == {} and config.loss.mask_loss == default_mask_loss(name)
