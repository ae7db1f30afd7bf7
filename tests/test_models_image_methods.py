"""The image comparison methods of Tables 2 and 4 (ResUNet++, ACSNet, PraNet, TransUNet, SETR) at tiny sizes.

Each is built, trained one CPU step with its own loss, streamed, exported and rebuilt from its
configuration. Small timm backbones, 64-px inputs, no pretrained weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from flanet.inference import VideoSegmenter
from flanet.inference.export import export_model
from flanet.losses import FLANetLoss
from flanet.models import ModelError, SegmentationOutput, create_model, list_models, load_checkpoint, save_checkpoint
from flanet.models.contract import VideoSegmentationModel
from flanet.models.image_methods.vit import ViTEncoder
from flanet.models.registry import default_mask_terms, default_side_weight, model_spec

SIZE = 64
METHODS = ("resunetplusplus", "acsnet", "pranet", "transunet", "setr")
#: Side outputs each method gives in training (deep supervision).
SIDES = {"resunetplusplus": 0, "acsnet": 4, "pranet": 3, "transunet": 0, "setr": 3}


def test_the_five_methods_are_registered_with_their_table_rows() -> None:
    assert set(METHODS) <= set(list_models(kind="image"))
    assert {n for n in METHODS if model_spec(n).row(4)} == {"resunetplusplus", "acsnet", "pranet"}
    assert {n for n in METHODS if model_spec(n).row(2)} == {"transunet", "setr"}
    assert default_mask_terms("pranet") == ["wbce", "wiou"] and default_side_weight("pranet") == 1.0
    assert default_mask_terms("setr") == ["bce"] and default_side_weight("setr") == 0.4
    assert default_mask_terms("flanet") == ["bce", "iou"] and default_side_weight("flanet") == 0.0


@pytest.fixture(scope="module", params=METHODS)
def model(request: pytest.FixtureRequest, tiny_options: Callable[[str], dict]) -> VideoSegmentationModel:
    torch.manual_seed(0)
    return create_model(request.param, **tiny_options(request.param)).eval()


def test_forward_shapes_and_side_outputs_only_in_training(model: VideoSegmentationModel) -> None:
    clip = torch.randn(2, 1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(clip)
        assert isinstance(out, SegmentationOutput) and out.mask_logits.shape == (2, 1, SIZE, SIZE)
        assert out.heatmap is None and out.side_logits == ()
        model.train()
        try:
            sides = model(clip).side_logits
        finally:
            model.eval()
    assert len(sides) == SIDES[model.config["name"]]
    assert all(side.shape == (2, 1, SIZE, SIZE) for side in sides)
    assert model.num_frames == 1 and not model.has_heatmap and SIZE % model.size_multiple == 0


def test_a_longer_clip_is_segmented_from_its_current_frame(model: VideoSegmentationModel) -> None:
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(clip).mask_logits, model(clip[:, :1]).mask_logits)


def test_one_training_step_with_the_methods_own_loss(model: VideoSegmentationModel) -> None:
    name = model.config["name"]
    net = create_model(name, **model.config["options"]).train()
    net.load_state_dict(model.state_dict())
    criterion = FLANetLoss(mask_terms=default_mask_terms(name), side_weight=default_side_weight(name))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    clip = torch.randn(2, 1, 3, SIZE, SIZE)
    mask = torch.zeros(2, 1, SIZE, SIZE)
    mask[:, :, 16:40, 20:44] = 1
    out = net(clip)
    terms = criterion(out.mask_logits, mask, side_logits=out.side_logits)
    assert torch.isfinite(terms.total)
    assert (terms.side is not None) == (SIDES[model.config["name"]] > 0)
    before = [p.detach().clone() for p in net.parameters()]
    optimiser.zero_grad()
    terms.total.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    optimiser.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_decode_of_encoded_frame_equals_forward_and_streaming(model: VideoSegmentationModel) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for i in range(3)]
    clip = torch.randn(2, 1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model.decode([model.encode(clip[:, 0])]).mask_logits, model(clip).mask_logits)
    segmenter = VideoSegmenter(model, SIZE, "cpu", adaptive_threads=False)
    streamed = list(segmenter.stream(frames))
    clipped = list(VideoSegmenter(model, SIZE, "cpu", reuse_features=False, adaptive_threads=False).stream(frames))
    assert len(streamed) == 3
    for a, b in zip(streamed, clipped):
        torch.testing.assert_close(a.mask_logits, b.mask_logits, atol=1e-5, rtol=1e-5)


def test_onnx_export_reproduces_pytorch(model: VideoSegmentationModel, tmp_path: Path) -> None:
    manifest = export_model(model, tmp_path / "m.onnx", "onnx", SIZE)
    assert [part["name"] for part in manifest["parts"]] == ["step"]
    assert manifest["model"]["name"] == model.config["name"]


def test_checkpoint_round_trip(model: VideoSegmentationModel, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, {"image_size": SIZE})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    clip = torch.randn(1, 1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip).mask_logits, model(clip).mask_logits)


def test_an_option_of_another_model_is_refused() -> None:
    with pytest.raises(ModelError, match="'pranet' has no option 'neck_channels'"):
        create_model("pranet", encoder="resnet18", neck_channels=[8, 8, 8, 8])


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
                       decoder_channels=[8, 8, 8, 8], encoder_kwargs={"depth": 1}).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 3, SIZE, SIZE)).mask_logits.shape == (1, 1, SIZE, SIZE)
    assert net.skip_blocks == ()


@pytest.mark.parametrize("name, kwargs, cnn", [
    ("vit_base_r50_s16_384", {"depth": 2, "embed_dim": 32, "num_heads": 2}, 3),
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
