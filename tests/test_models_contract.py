"""Every registered model meets the one model contract (timm's ``test_models.py`` pattern).

A model is tested here by being registered (:func:`flanet.models.list_models`): it is built at a small
size, decodes its encoded frames as ``forward`` does and streams equal to ``forward`` on each frame's
full input (its window, or for a memory model the whole video so far; every model, in the default
suite), takes one training step on the CPU with its default loss, exports to ONNX with the
same outputs (a memory model: the export is refused, saying why), and round-trips a checkpoint. The last three are the heavy ones (10-25 s a model on 2
cores): the default suite runs them for FLA-Net and one image model (:data:`FULLY_TESTED`), the slow
suite (``make test-slow``) for every model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import _noise_frames
from flanet.data import to_model_input
from flanet.data.synth import generate_dataset
from flanet.inference import VideoSegmenter
from flanet.models import SegmentationOutput, create_model, list_models, load_checkpoint, model_spec, save_checkpoint
from flanet.models.contract import VideoSegmentationModel
from flanet.models.state import StreamState

SIZE = 64
#: Small timm encoders, the first one a model can use is the one it is tested with (else its default).
SMALL_ENCODERS = ("resnet18", "vit_tiny_patch16_224", "vit_tiny_r_s16_p8_224")


#: The models whose heavy checks (training step, ONNX export, checkpoint) run in the default suite.
FULLY_TESTED = ("flanet", "unet")


def _heavy(names: list[str]) -> list:
    """``names`` as parameters, those not in :data:`FULLY_TESTED` marked slow."""
    return [name if name in FULLY_TESTED else pytest.param(name, marks=pytest.mark.slow) for name in names]


#: A heavy check: every registered model, in the slow suite except :data:`FULLY_TESTED`.
heavy_per_model = pytest.mark.parametrize("model", _heavy(list_models()), indirect=True)


def small_encoder(name: str) -> str:
    spec = model_spec(name)
    return next((e for e in SMALL_ENCODERS if spec.accepts_encoder(e)), spec.default_encoder)


@pytest.fixture(scope="module", params=list_models())
def model(request: pytest.FixtureRequest) -> VideoSegmentationModel:
    torch.manual_seed(0)
    return create_model(request.param, encoder=small_encoder(request.param)).eval()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=4, frames=4, size=SIZE, seed=0)


def test_model_meets_the_contract(model: VideoSegmentationModel) -> None:
    assert isinstance(model, VideoSegmentationModel)
    assert isinstance(model.num_frames, int) and model.num_frames >= 1
    assert isinstance(model.size_multiple, int) and SIZE % model.size_multiple == 0
    assert isinstance(model.has_heatmap, bool)
    assert model.config["name"] in list_models()
    assert sum(p.numel() for p in model.encoder.parameters()) > 0
    spec = model_spec(model.config["name"])
    state = model.init_state()
    assert isinstance(state, StreamState) and state.frames_seen == 0 and state.held_frames == 0
    assert state.window in (None, model.num_frames)
    assert spec.info.kind == ("image" if model.num_frames == 1 and state.window == 1 else "video")
    assert spec.info.paper and spec.info.reference and spec.info.loss_terms


def test_stepping_through_a_clip_equals_forward(model: VideoSegmentationModel) -> None:
    clip = torch.randn(1, model.num_frames + 1, 3, SIZE, SIZE)  # current frame first
    with torch.no_grad():
        full = model(clip[:, : model.num_frames]) if model.init_state().window else model(clip)
        state = model.init_state()
        for k in range(clip.shape[1] - 1, -1, -1):  # oldest first
            out, state = model.step(state, model.encode(clip[:, k]))
    assert state.frames_seen == clip.shape[1] and state.context_frames >= 1
    torch.testing.assert_close(out.mask_logits, full.mask_logits, atol=1e-5, rtol=1e-5)


def test_decode_of_encoded_frames_equals_forward(model: VideoSegmentationModel) -> None:
    if model.init_state().window is None:
        pytest.skip("a memory model's decode reads its memory's entries (test_stepping_through_a_clip_equals_forward)")
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
    if model.init_state().window is None:
        pytest.skip("a memory model's decode reads any number of memory entries")
    features = model.encode(torch.randn(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="decode needs features of"):
        model.decode([features] * (model.num_frames + 1))


def _causal_clip(inputs: list[torch.Tensor], t: int, num_frames: int) -> torch.Tensor:
    return torch.stack([inputs[max(t - k, 0)] for k in range(num_frames)])[None]


def test_streaming_equals_forward(model: VideoSegmentationModel) -> None:
    frames = _noise_frames(4)
    results = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    inputs = [to_model_input(f, SIZE) for f in frames]
    window = model.init_state().window
    with torch.inference_mode():
        for t, result in enumerate(results):  # each frame's full input: its window, or the video so far
            expected = model(_causal_clip(inputs, t, window or t + 1))
            torch.testing.assert_close(result.mask_logits, expected.mask_logits[0], rtol=0, atol=1e-4)


@heavy_per_model
def test_onnx_export_streams_the_same_masks(model: VideoSegmentationModel, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLANET_CACHE_DIR", str(tmp_path))
    frames = _noise_frames(3, seed=1)
    if model.init_state().window is None:
        with pytest.raises(ValueError, match="reads a memory of earlier frames.*backend pytorch"):
            VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime")
        return
    torch_results = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    onnx_results = list(VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime").stream(frames))
    for a, b in zip(torch_results, onnx_results, strict=True):
        torch.testing.assert_close(torch.as_tensor(b.mask_logits), a.mask_logits, rtol=0, atol=1e-3)


@heavy_per_model
def test_checkpoint_round_trip(model: VideoSegmentationModel, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", model, {"image_size": SIZE})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.model.config == model.config
    clip = torch.randn(1, model.num_frames, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip).mask_logits, model(clip).mask_logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", _heavy(list_models()))
def test_one_training_step_on_cpu_with_its_default_loss(name: str, data_root: Path) -> None:
    from flanet.training import load_config
    from flanet.training.datamodule import VideoDataModule
    from flanet.training.module import FLANetModule

    torch.manual_seed(0)
    config = load_config("cpu-small", [f"model.name={name}", f"model.encoder={small_encoder(name)}",
                                       f"data.root={data_root}", f"data.image_size={SIZE}"])
    module = FLANetModule(config)
    data = VideoDataModule(module.config, clip_len=module.model.num_frames, with_previous=module.use_previous)
    data.setup("fit")
    dataset = data.train_dataset
    batch = torch.utils.data.default_collate([dataset[0], dataset[len(dataset) - 1]])
    before = [p.detach().clone() for p in module.model.parameters()]
    optimiser = torch.optim.Adam(module.model.parameters(), lr=1e-3)
    module.model.train()
    loss = module._losses(batch).total
    assert torch.isfinite(loss)
    loss.backward()
    optimiser.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, module.model.parameters()))
    assert changed > len(before) // 2, f"{name}: only {changed} of {len(before)} parameter tensors changed"
