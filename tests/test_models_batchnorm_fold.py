"""BatchNorm folding for inference: same outputs, the trained model untouched, on by default on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import _noise_frames
from flanet.inference import VideoSegmenter
from flanet.models import create_model, load_checkpoint
from flanet.models.encoder import fold_batch_norms

SIZE = 64


def _batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """resnet18 FLA-Net with BatchNorm statistics and affine terms far from the identity."""
    torch.manual_seed(0)
    model = create_model("flanet", encoder="resnet18")
    for m in model.encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 3.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


def test_folded_encoder_gives_the_same_features_and_leaves_the_model_alone(model: nn.Module) -> None:
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batch_norms(model)
    assert _batch_norms(folded.encoder) == 0 < _batch_norms(model.encoder)
    assert model.training and not folded.training  # a model being trained stays a training model
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    frames = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        expected = model.eval().encode(frames)
        for a, b in zip(folded.encode(frames), expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_streaming_on_cpu_folds_by_default_with_the_same_results(model: nn.Module) -> None:
    model.train()
    frames = _noise_frames(4)
    default = VideoSegmenter(model, SIZE, "cpu")
    assert not model.training  # the segmenter puts the given model in eval mode, folded copy or not
    plain = VideoSegmenter(model, SIZE, "cpu", fold_batchnorm=False)
    assert _batch_norms(default.runner.model.encoder) == 0  # the PyTorch runner runs the folded copy
    assert plain.runner.model is model and _batch_norms(model.encoder) > 0
    for a, b in zip(default.stream(frames), plain.stream(frames), strict=True):
        torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(a.heatmap, b.heatmap, rtol=0, atol=1e-4)


def test_image_baselines_are_left_as_they_are() -> None:
    baseline = create_model("unet", encoder="resnet18").eval()
    assert fold_batch_norms(baseline) is baseline
    assert VideoSegmenter(baseline, SIZE, "cpu").runner.model is baseline


def _storages(module: nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in (*module.parameters(), *module.buffers())}


def test_the_folded_copy_shares_every_tensor_but_the_folded_convolutions(model: nn.Module) -> None:
    """Issue 28 item 6: the copy held +211 MB for Res2Net-50 (a deep copy of the whole model, and fuse's own
    copy of the backbone); only the folded convolutions need new tensors."""
    folded = fold_batch_norms(model)
    outside = [name for name, _ in folded.named_children() if name != "encoder"]
    assert outside
    for name in outside:
        assert _storages(getattr(folded, name)) <= _storages(model), name
    new = _storages(folded) - _storages(model)
    convs = [m for m in folded.encoder.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert new and new <= {t.untyped_storage().data_ptr() for m in convs for t in m.parameters()}


def test_a_segmenter_of_a_checkpoint_folds_the_model_it_loaded_in_place(checkpoint: Path) -> None:
    """A segmenter built from a checkpoint owns its model: the fold replaces the original instead of sitting
    beside it (one set of weights), with the results of a folded copy."""
    owned = VideoSegmenter.from_checkpoint(checkpoint, device="cpu")
    assert owned.runner.model is owned.model and _batch_norms(owned.model.encoder) == 0
    assert not owned.model.training
    copy_of = VideoSegmenter(load_checkpoint(checkpoint).model, device="cpu")
    assert copy_of.runner.model is not copy_of.model and _batch_norms(copy_of.model.encoder) > 0
    frames = _noise_frames(4)
    for a, b in zip(owned.stream(frames), copy_of.stream(frames), strict=True):
        torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=0)
