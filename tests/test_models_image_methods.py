"""What is particular to the image comparison methods of Tables 2 and 4 (ResUNet++, ACSNet, PraNet, TransUNet, SETR).

The registry-driven contract test (tests/test_models_contract.py) builds, trains, streams, exports and
round-trips every registered model; here: their registration, deep-supervision side outputs, their
ViT encoders against timm's own, and what each refuses. Tiny sizes: small timm backbones, 64-px
inputs, no pretrained weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from flanet.losses import FLANetLoss
from flanet.models import ModelError, SegmentationOutput, create_model, list_models
from flanet.models.contract import VideoSegmentationModel
from flanet.models.image_methods.vit import ViTEncoder
from flanet.models.registry import default_mask_loss, default_side_weight, model_spec

SIZE = 64
#: Tiny options of every method.
TINY: dict[str, dict] = {
    "resunetplusplus": {"channels": [8, 8, 16, 16]},
    "acsnet": {"encoder": "resnet18", "gcm_channels": 8},
    "pranet": {"encoder": "resnet18", "rfb_channels": 8, "ra_channels": [8, 8, 16]},
    "transunet": {"img_size": SIZE, "cup_channels": [16, 16, 8, 8],
                  "encoder_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}},
    "setr": {"encoder": "vit_tiny_patch16_224", "img_size": SIZE, "pup_channels": 16,
             "encoder_kwargs": {"depth": 6}},  # auxiliary heads at layers 1, 3, 4
}
#: Side outputs each method gives in training (deep supervision).
SIDES = {"resunetplusplus": 0, "acsnet": 4, "pranet": 3, "transunet": 0, "setr": 3}


def test_the_five_methods_are_registered_with_their_table_rows_and_losses() -> None:
    assert set(TINY) <= set(list_models(kind="image"))
    assert {n for n in TINY if model_spec(n).row(4)} == {"resunetplusplus", "acsnet", "pranet"}
    assert {n for n in TINY if model_spec(n).row(2)} == {"transunet", "setr"}
    assert default_mask_loss("pranet") == "wbce-wiou" and default_side_weight("pranet") == 1.0
    assert default_mask_loss("setr") == "bce" and default_side_weight("setr") == 0.4
    assert default_mask_loss("flanet") == "bce-iou" and default_side_weight("flanet") == 0.0


@pytest.fixture(scope="module", params=list(TINY))
def model(request: pytest.FixtureRequest) -> VideoSegmentationModel:
    torch.manual_seed(0)
    return create_model(request.param, **TINY[request.param]).eval()


def test_side_outputs_in_training_only_and_their_loss(model: VideoSegmentationModel) -> None:
    name = model.config["name"]
    clip = torch.randn(2, 1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(clip)
    assert isinstance(out, SegmentationOutput) and out.mask_logits.shape == (2, 1, SIZE, SIZE)
    assert out.heatmap is None and out.side_logits == ()
    net = create_model(name, **model.config["options"]).train()
    net.load_state_dict(model.state_dict())
    out = net(clip)
    assert len(out.side_logits) == SIDES[name]
    assert all(side.shape == (2, 1, SIZE, SIZE) for side in out.side_logits)
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[:, :, 16:40, 20:44] = 1
    terms = FLANetLoss(mask_loss=default_mask_loss(name), side_weight=default_side_weight(name))(
        out.mask_logits, mask, side_logits=out.side_logits)
    assert (terms.side is not None) == (SIDES[name] > 0) and torch.isfinite(terms.total)
    terms.total.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_a_longer_clip_is_segmented_from_its_current_frame(model: VideoSegmentationModel) -> None:
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(clip).mask_logits, model(clip[:, :1]).mask_logits)


def test_a_cpu_small_recipe_fits_every_method() -> None:
    """FLA-Net's recipe options (decoder_channels, neck_channels...) do not reach the methods: no option shares a name."""
    from flanet.training import load_config
    from flanet.training.model_defaults import resolve_model_defaults

    for name in TINY:
        config = resolve_model_defaults(load_config("cpu-small", [f"model.name={name}"]))
        assert config.model.options == {} and config.loss.mask_loss == default_mask_loss(name)


def test_an_option_of_another_model_is_refused() -> None:
    with pytest.raises(ModelError, match="'pranet' has no option 'neck_channels'"):
        create_model("pranet", encoder="resnet18", neck_channels=[8, 8, 8, 8])


def test_resunetplusplus_own_encoder_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="has no pretrained weights"):
        create_model("resunetplusplus", encoder_weights="imagenet")


def test_setr_refuses_a_hybrid_and_transunet_a_cnn() -> None:
    with pytest.raises(ValueError, match="plain ViT"):
        create_model("setr", encoder="vit_base_r50_s16_384", img_size=SIZE,
                     encoder_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
    with pytest.raises(ModelError, match="cannot use encoder 'resnet18'"):
        create_model("transunet", encoder="resnet18")
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        ViTEncoder("resnet18", None, [-1], SIZE)


def test_transunet_on_a_plain_vit_has_no_skips() -> None:
    net = create_model("transunet", encoder="vit_tiny_patch16_224", img_size=SIZE,
                       cup_channels=[8, 8, 8, 8], encoder_kwargs={"depth": 1}).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 3, SIZE, SIZE)).mask_logits.shape == (1, 1, SIZE, SIZE)
    assert net.skip_blocks == ()


@pytest.mark.parametrize("name, kwargs, cnn", [
    # the hybrid builds a full ResNet-50 (about 25 s on 2 loaded cores): slow suite; TransUNet's tests above
    # run its CNN levels in the default suite
    pytest.param("vit_base_r50_s16_384", {"depth": 2, "embed_dim": 32, "num_heads": 2}, 3, marks=pytest.mark.slow),
    ("vit_tiny_patch16_224", {"depth": 3}, 0),
])
def test_vit_encoder_layers_equal_timms_own(name: str, kwargs: dict, cnn: int) -> None:
    encoder = ViTEncoder(name, None, [0, -1], SIZE, cnn, kwargs).eval()
    for size in (SIZE, 96):  # 96: positional embedding resampled
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ours = encoder(x)
            theirs = encoder.vit.forward_intermediates(x, indices=[0, len(encoder.vit.blocks) - 1], norm=True,
                                                       intermediates_only=True)
        assert len(ours) == cnn + 2
        for a, b in zip(ours[cnn:], theirs):
            torch.testing.assert_close(a, b)


def test_vit_weights_load_from_a_file_at_another_grid(tmp_path: Path) -> None:
    timm_vit = timm.create_model("vit_tiny_patch16_224", depth=1, pretrained=False)
    path = tmp_path / "vit.pth"
    torch.save(timm_vit.state_dict(), path)
    encoder = ViTEncoder("vit_tiny_patch16_224", str(path), [-1], SIZE, timm_kwargs={"depth": 1})
    torch.testing.assert_close(encoder.vit.blocks[0].attn.qkv.weight, timm_vit.blocks[0].attn.qkv.weight)
    assert encoder.vit.pos_embed.shape[1] == 1 + (SIZE // 16) ** 2
