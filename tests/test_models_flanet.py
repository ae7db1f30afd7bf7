"""FLA-Net and its variants: shapes, gradients, encode/decode equivalence, size errors."""

from __future__ import annotations

import pytest
import torch

from flanet.models import TABLE3_ROWS, SegmentationOutput, create_model, list_models, rebuild_model

SIZE = 64
#: FLA-Net, its ablations and the smp baselines (every registered model: tests/test_models_registered.py).
NAMES = [*(name for name, _ in TABLE3_ROWS), "unet", "unetplusplus"]


def as_version_1(path, drop: tuple[str, ...] = ()) -> None:
    """Rewrites checkpoint ``path`` as version 1 wrote it: one flat ``model_config``, without ``drop``."""
    payload = torch.load(path, weights_only=True)
    stored = payload.pop("model")
    payload["model_config"] = {k: v for k, v in {"name": stored["name"], **stored["options"]}.items() if k not in drop}
    payload["version"] = 1
    torch.save(payload, path)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: create_model(name, encoder="resnet18") for name in NAMES}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(models: dict, name: str, batch: int) -> None:
    model = models[name].eval()
    clip = torch.randn(batch, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(clip)
    assert isinstance(out, SegmentationOutput)
    assert out.mask_logits.shape == (batch, 1, SIZE, SIZE)
    if model.has_heatmap:
        assert out.heatmap is not None and out.heatmap.shape == (batch, 1, SIZE, SIZE)
    else:
        assert out.heatmap is None


def test_list_models_names() -> None:
    assert set(list_models()) >= {"flanet", "flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb", "unet", "unetplusplus"}


@pytest.mark.parametrize("name", [name for name, _ in TABLE3_ROWS])
def test_gradients_reach_every_parameter(name: str) -> None:
    model = create_model(name, encoder="resnet18").train()
    for module in model.modules():  # timm zero-inits each block's last BN gamma, which blocks
        if isinstance(module, torch.nn.BatchNorm2d):  # gradients inside the block at step 0
            torch.nn.init.ones_(module.weight)
    out = model(torch.randn(2, 3, 3, SIZE, SIZE))
    loss = out.mask_logits.square().mean()
    if out.heatmap is not None:
        loss = loss + out.heatmap.square().mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_encode_decode_equals_forward(models: dict) -> None:
    model = models["flanet"].eval()
    clip = torch.randn(2, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        full = model(clip)
        feats = [model.encode(clip[:, k]) for k in range(3)]
        halves = model.decode(feats)
    torch.testing.assert_close(halves.mask_logits, full.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(halves.heatmap, full.heatmap, atol=1e-5, rtol=1e-5)


def test_forward_windows_matches_each_window(models: dict) -> None:
    model = models["flanet"].eval()
    clip = torch.randn(2, 5, 3, SIZE, SIZE)  # [t, t-1, t-2, t-3, t-4] -> windows for t, t-1, t-2
    with torch.no_grad():
        out = model.forward_windows(clip)
        assert out.mask_logits.shape == (2, 3, 1, SIZE, SIZE)
        for w in range(3):
            ref = model(clip[:, w : w + 3])
            torch.testing.assert_close(out.mask_logits[:, w], ref.mask_logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.heatmap[:, w], ref.heatmap, atol=1e-5, rtol=1e-5)


def test_encoder_runs_once_per_frame(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    model = models["flanet"].eval()
    seen: list[int] = []
    original = model.encoder.forward
    monkeypatch.setattr(model.encoder, "forward", lambda x: seen.append(x.shape[0]) or original(x))
    with torch.no_grad():
        model(torch.randn(2, 3, 3, SIZE, SIZE))
        model.forward_windows(torch.randn(2, 4, 3, SIZE, SIZE))
    assert seen == [6, 8]  # one batched encoder call, each frame once


def test_bad_input_sizes_name_the_sizes_that_work(models: dict) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        models["flanet"](torch.randn(1, 3, 3, 70, 64))
    with pytest.raises(ValueError, match="multiple of 32"):
        models["unet"](torch.randn(1, 3, 3, 70, 64))
    with pytest.raises(ValueError, match="needs exactly 3"):
        models["flanet"](torch.randn(1, 2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        models["flanet"](torch.randn(1, 3, SIZE, SIZE))


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'flanet-x'.*flanet-basic"):
        create_model("flanet-x")


def test_version_1_unet_checkpoint_loads_without_the_flanet_keys_it_stored(tmp_path) -> None:
    """Version 1 stored every FLA-Net keyword for every model; a UNet's load with its own options only."""
    from flanet.models import load_checkpoint, save_checkpoint

    model = create_model("unet", encoder="resnet18")
    path = save_checkpoint(tmp_path / "unet.pt", model)
    payload = torch.load(path, weights_only=True)
    payload.pop("model")
    payload["model_config"] = {"name": "unet", "encoder": "resnet18", "encoder_weights": None, "num_frames": 3,
                               "neck_channels": [32, 64, 128, 256], "mask_stride": 4}
    payload["version"] = 1
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config == {"name": "unet", "options": {"encoder": "resnet18", "encoder_weights": None}}
    torch.testing.assert_close(loaded.model.state_dict(), model.state_dict())


@pytest.mark.parametrize("name", [name for name, _ in TABLE3_ROWS])
def test_config_rebuilds_same_architecture(name: str) -> None:
    options = dict(num_frames=2, neck_channels=(8, 16, 24, 40), decoder_channels=(40, 24, 16, 8),
                   head_channels=12, ffa_levels=(1, 3), attention_reduction=4)  # none of them a default
    model = create_model(name, encoder="resnet18", **options).eval()
    recorded = {"encoder": "resnet18", "encoder_weights": None, "num_frames": 2,
                "neck_channels": [8, 16, 24, 40], "decoder_channels": [40, 24, 16, 8],
                "head_channels": 12, "ffa_levels": [1, 3], "attention_reduction": 4}
    assert model.config["name"] == name
    assert {k: model.config["options"][k] for k in recorded} == recorded
    rebuilt = rebuild_model(model.config).eval()
    assert rebuilt.config == model.config
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    clip = torch.randn(1, 2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(clip).mask_logits, model(clip).mask_logits, rtol=0, atol=0)
    default = create_model(name, encoder="resnet18")
    assert {k: tuple(v.shape) for k, v in default.state_dict().items()} != shapes  # the options took effect


def test_res2net50_paper_configuration_forward() -> None:
    model = create_model("flanet").eval()  # default encoder: res2net50_26w_4s, as the paper
    assert model.config["options"]["encoder"] == "res2net50_26w_4s"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 3, SIZE, SIZE))
    assert out.mask_logits.shape == (1, 1, SIZE, SIZE)
    assert out.heatmap.shape == (1, 1, SIZE, SIZE)


def test_other_frame_counts() -> None:
    model = create_model("flanet", encoder="resnet18", num_frames=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3, SIZE, SIZE)).mask_logits.shape == (1, 1, SIZE, SIZE)


def test_swapping_previous_frames_changes_the_output(models: dict) -> None:
    """Order-aware FFA (one attention block per frame pair): t-1 and t-2 are not interchangeable."""
    model = models["flanet-ffa"].eval()
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(clip).mask_logits
        swapped = model(clip[:, [0, 2, 1]]).mask_logits
    assert (out - swapped).abs().max() > 1e-4


def test_ffa_spatial_and_fft_models_agree() -> None:
    spatial = create_model("flanet", encoder="resnet18").eval()
    fft = create_model("flanet", encoder="resnet18", ffa_compute="fft").eval()
    fft.load_state_dict(spatial.state_dict())
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        a, b = spatial(clip), fft(clip)
    torch.testing.assert_close(a.mask_logits, b.mask_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.heatmap, b.heatmap, atol=1e-4, rtol=1e-4)


def test_v01_checkpoint_loads_with_the_shared_gate(tmp_path) -> None:
    """A checkpoint saved before the FFA options existed rebuilds v0.1's shared attention."""
    from flanet.models import load_checkpoint, save_checkpoint

    model = create_model("flanet-ffa", encoder="resnet18", ffa_attention="shared")
    path = save_checkpoint(tmp_path / "v01.pt", model)
    as_version_1(path, drop=("ffa_attention", "ffa_compute"))
    loaded = load_checkpoint(path)
    assert loaded.config["options"]["ffa_attention"] == "shared"
    assert loaded.model.config["options"]["ffa_compute"] == "spatial"
    torch.testing.assert_close(loaded.model.state_dict(), model.state_dict())


@pytest.mark.parametrize("name", ["flanet", "flanet-basic"])
def test_stride2_mask_head(name: str) -> None:
    """mask_stride=2: the mask head refines with frame t's stride-2 map; streaming still equals forward."""
    model = create_model(name, encoder="resnet18", mask_stride=2).eval()
    assert model.encoder.reductions[0] == 2 and model.config["options"]["mask_stride"] == 2
    clip = torch.randn(2, 3, 3, SIZE, SIZE)
    seen: list[tuple[int, ...]] = []
    # the map the classifier turns into logits (the refinement's output)
    model.seg_head.refine.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        full = model(clip)
        halves = model.decode([model.encode(clip[:, k]) for k in range(3)])
    assert full.mask_logits.shape == (2, 1, SIZE, SIZE)
    assert seen[0] == (SIZE // 2, SIZE // 2)  # logits predicted at stride 2 (stride 4 before)
    torch.testing.assert_close(halves.mask_logits, full.mask_logits, atol=1e-5, rtol=1e-5)
    assert model.seg_head.refine is not None
    with pytest.raises(ValueError, match="mask_stride must be 4 or 2"):
        create_model(name, encoder="resnet18", mask_stride=8)


def test_checkpoint_without_mask_stride_loads_the_stride4_head(tmp_path) -> None:
    from flanet.models import load_checkpoint, save_checkpoint

    model = create_model("flanet", encoder="resnet18", mask_stride=4)
    path = save_checkpoint(tmp_path / "old.pt", model)
    as_version_1(path, drop=("mask_stride",))
    loaded = load_checkpoint(path)
    assert loaded.config["options"]["mask_stride"] == 4 and loaded.model.seg_head.refine is None


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_one_channel_map_is_the_1x1_convolution(layout: str) -> None:
    # the mask and heatmap heads compute their 1x1 convolution as a weighted channel sum
    from flanet.models.decoder import one_channel_map

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 1, 1)
    x = torch.randn(2, 32, 11, 13)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(one_channel_map(x, conv), conv(x), rtol=1e-5, atol=1e-5)
        conv.bias = None
        torch.testing.assert_close(one_channel_map(x, conv), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["flanet", "flanet-basic"])
def test_untrained_mask_head_starts_at_the_lesion_prior(name: str) -> None:
    """The mask classifier's bias starts at logit(mask_prior) (focal-loss prior initialisation), which
    removed FLA-Net's background probability floor (issue 31 item 9, docs/benchmarks.md): an untrained
    model predicts about the prior on a blank clip, and mask_prior=None keeps PyTorch's default."""
    torch.manual_seed(0)
    model = create_model(name, encoder="resnet18", encoder_weights=None).eval()
    bias = model.seg_head.classifier.bias
    assert torch.sigmoid(bias).item() == pytest.approx(0.01, rel=1e-5)
    with torch.no_grad():
        prob = torch.sigmoid(model(torch.zeros(1, 3, 3, 64, 64)).mask_logits)
    assert prob.median().item() < 0.1  # p = 0.5 at PyTorch's default init
    torch.manual_seed(0)
    default = create_model(name, encoder="resnet18", encoder_weights=None, mask_prior=None)
    assert abs(default.seg_head.classifier.bias.item()) < 1 / 16 ** 0.5  # U(-1/sqrt(fan_in), ..)
    assert create_model(name, encoder="resnet18", encoder_weights=None, mask_prior=0.2).config["options"][
        "mask_prior"] == 0.2
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="mask_prior"):
            create_model(name, encoder="resnet18", encoder_weights=None, mask_prior=bad)
