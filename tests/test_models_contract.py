"""Every registered model meets the one model contract (as timm's and smp's shared model tests).

A model is tested here by being registered in :func:`flanet.models.list_models`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from flanet.models import SegmentationOutput, create_model, list_models
from flanet.models.contract import VideoSegmentationModel

SIZE = 64


@pytest.fixture(scope="module", params=list_models())
def model(request: pytest.FixtureRequest, tiny_options: Callable[[str], dict]) -> VideoSegmentationModel:
    torch.manual_seed(0)
    return create_model(request.param, **tiny_options(request.param)).eval()


def test_model_meets_the_contract(model: VideoSegmentationModel) -> None:
    assert isinstance(model, VideoSegmentationModel)
    assert isinstance(model.num_frames, int) and model.num_frames >= 1
    assert isinstance(model.size_multiple, int) and SIZE % model.size_multiple == 0
    assert isinstance(model.has_heatmap, bool)
    assert model.config["name"] in list_models()
    assert sum(p.numel() for p in model.encoder.parameters()) > 0


def test_decode_of_encoded_frames_equals_forward(model: VideoSegmentationModel) -> None:
    clip = torch.randn(2, model.num_frames, 3, SIZE, SIZE)
    with torch.no_grad():
        full = model(clip)
        halves = model.decode([model.encode(clip[:, k]) for k in range(model.num_frames)])
    assert isinstance(full, SegmentationOutput) and full.mask_logits.shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(halves.mask_logits, full.mask_logits, atol=1e-5, rtol=1e-5)
    assert (full.heatmap is not None) == model.has_heatmap == (halves.heatmap is not None)
    if model.has_heatmap:
        assert full.heatmap.shape == (2, 1, SIZE, SIZE)
        torch.testing.assert_close(halves.heatmap, full.heatmap, atol=1e-5, rtol=1e-5)


def test_decode_refuses_the_wrong_number_of_frames(model: VideoSegmentationModel) -> None:
    features = model.encode(torch.randn(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="decode needs features of"):
        model.decode([features] * (model.num_frames + 1))
