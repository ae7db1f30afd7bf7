"""What is particular to the video comparison methods (STM, PNSNet) and to streaming with a memory.

The registry-driven contract test (tests/test_models_contract.py) builds, trains, streams, exports and
round-trips every registered model; here: their registration, the bounded memory (its policy, and flat
state over a long stream), bf16 streaming, evaluation's stream mode for a memory model, and the export
that a memory model is refused. Tiny sizes: resnet18, narrow heads, 32-64 px inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import _noise_frames
from flanet.cli import main
from flanet.data import discover, to_model_input
from flanet.data.synth import generate_dataset
from flanet.evaluation import evaluate_model
from flanet.evaluation.model_predictions import choose_mode, iter_streamed_predictions, logits_to_uint8
from flanet.inference import VideoSegmenter
from flanet.models import SegmentationOutput, create_model, list_models, save_checkpoint
from flanet.models.memory import FrameMemory
from flanet.models.registry import default_mask_loss, model_spec

#: Tiny options of every video method.
TINY: dict[str, dict] = {
    "stm": {"encoder": "resnet18", "key_channels": 8, "value_channels": 16, "decoder_width": 16,
            "memory_size": 3, "memory_every": 2},
    "pnsnet": {"encoder": "resnet18", "num_frames": 3, "low_channels": 8, "high_channels": 16, "rfb_channels": 16,
               "head_channels": 4, "dilations": [1, 3]},
}
#: The methods with a memory beyond a fixed window (their own checks below).
MEMORY = ("stm",)


def test_the_video_methods_are_registered_with_their_table_rows_and_losses() -> None:
    assert set(TINY) <= set(list_models(kind="video"))
    assert model_spec("stm").row(2).label == "STM" and default_mask_loss("stm") == "bce"
    assert model_spec("stm").default_encoder == "resnet50"
    assert model_spec("pnsnet").row(4).label == "PNSNet" and default_mask_loss("pnsnet") == "bce"
    assert model_spec("pnsnet").default_encoder == "res2net50_26w_4s"
    assert [create_model(n, **TINY[n]).init_state().window is None for n in TINY] == [n in MEMORY for n in TINY]


def _tagging_memory(size: int, every: int, keep_first: bool = True) -> FrameMemory:
    """A memory whose entry of a frame is its index (what the frame's read saw)."""
    return FrameMemory(lambda levels, output: [levels[0]], size, every, keep_first)


def _stream_indices(memory: FrameMemory, count: int) -> list[list[int]]:
    """The frame indices in the memory read by each of ``count`` frames."""
    seen = []
    for index in range(count):
        entries = memory.read([torch.tensor([float(index)])])
        seen.append([int(entry[0].item()) for entry in entries[1:]])
        memory.write(SegmentationOutput(torch.zeros(1), None))
    return seen


def test_the_memory_holds_the_first_previous_and_every_kth_frame_within_its_bound() -> None:
    seen = _stream_indices(_tagging_memory(size=4, every=3), 14)
    assert seen[:5] == [[], [0], [1, 0], [2, 0], [3, 0]]
    assert seen[7] == [6, 3, 0] and seen[8] == [7, 6, 3, 0]  # previous, sampled newest first, first
    assert seen[13] == [12, 9, 0]  # 3 and 6 dropped: 4 entries at most, one slot for the previous frame
    assert max(len(s) for s in seen) == 4
    memory = _tagging_memory(size=3, every=5)
    _stream_indices(memory, 3000)
    assert memory.held_frames == 3 and memory.frames_seen == 3000
    assert _stream_indices(_tagging_memory(size=1, every=2), 5) == [[], [0], [1], [2], [3]]  # the previous frame only
    assert _stream_indices(_tagging_memory(size=3, every=1), 6)[-1] == [4, 3, 0]  # every frame sampled: all 3 slots
    assert _stream_indices(_tagging_memory(size=2, every=1, keep_first=False), 4)[-1] == [2, 1]


def test_a_memory_reads_one_frame_then_its_write() -> None:
    memory = _tagging_memory(size=2, every=1)
    with pytest.raises(RuntimeError, match="write follows"):
        memory.write(SegmentationOutput(torch.zeros(1), None))
    memory.read([torch.zeros(1)])
    with pytest.raises(RuntimeError, match="was not written"):
        memory.read([torch.zeros(1)])
    with pytest.raises(ValueError, match="one frame at a time"):
        _tagging_memory(size=2, every=1).read([torch.zeros(1)], torch.tensor([0]))
    with pytest.raises(ValueError, match="must be >= 1"):
        _tagging_memory(size=0, every=1)


@pytest.fixture(scope="module", params=list(TINY))
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(request.param, **TINY[request.param]).eval()


@pytest.fixture(scope="module", params=MEMORY)
def memory_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(request.param, **TINY[request.param]).eval()


def _state_bytes(state) -> int:
    """Bytes of the tensors a state holds: what its memory costs."""
    return sum(t.numel() * t.element_size() for t in _tensors(vars(state)))


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def test_a_long_stream_keeps_the_state_flat(model: torch.nn.Module) -> None:
    state, sizes = model.init_state(), []
    frames = torch.randn(16, 3, 32, 32)
    with torch.inference_mode():
        levels = model.encode(frames)
        for k in range(frames.shape[0]):
            _, state = model.step(state, [level[k : k + 1] for level in levels])
            sizes.append((state.held_frames, _state_bytes(state)))
    bound = model.config["options"]["memory_size"] if state.window is None else model.num_frames
    assert max(held for held, _ in sizes) <= bound and state.frames_seen == 16
    assert set(sizes[8:]) == set(sizes[4:8])  # a steady cycle from the bound on: nothing grows


def test_bf16_weights_stream_close_to_float32(model: torch.nn.Module) -> None:
    import copy

    frames = _noise_frames(4, height=64, width=64)
    full = [r.probability for r in VideoSegmenter(model, 64, "cpu").stream(frames)]
    half = [r.probability for r in VideoSegmenter(copy.deepcopy(model).to(torch.bfloat16), 64, "cpu").stream(frames)]
    for a, b in zip(full, half, strict=True):
        assert np.isfinite(b).all() and np.abs(a - b).max() < 0.1


@pytest.fixture(scope="module")
def video_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("videos") / "data", videos=2, frames=5, size=48, seed=3)


def test_evaluation_streams_a_memory_model_equal_to_its_full_history(memory_model: torch.nn.Module,
                                                                     video_data: Path) -> None:
    model = memory_model
    videos = discover(video_data).subset(None)
    assert choose_mode(model, videos, "auto") == "stream"
    with pytest.raises(ValueError, match="reads a memory of earlier frames.*stream"):
        choose_mode(model, videos, "clips")
    chunks = list(iter_streamed_predictions(model, videos, 64, torch.device("cpu"), batch_size=3, progress=False))
    assert sum(len(c.indices) for c in chunks) == sum(v.num_masks for v in videos)
    by_id = {v.id: v for v in videos}
    with torch.inference_mode():
        for chunk in chunks:
            inputs = [to_model_input(f, 64) for f in by_id[chunk.video].iter_frames(chunk.indices[-1])]
            for index, prob in zip(chunk.indices, chunk.prob):
                history = torch.stack(inputs[: index + 1][::-1])[None]  # frames index, ..., 0
                expected = logits_to_uint8(model(history).mask_logits, prob.shape)[0]
                assert np.abs(expected.astype(int) - prob.astype(int)).max() <= 1
    result = evaluate_model(model, discover(video_data), "all", image_size=64, device="cpu")
    assert np.isfinite(result.metrics["dice"])


def test_flanet_export_of_a_memory_model_is_refused(memory_model: torch.nn.Module, tmp_path: Path, capsys) -> None:
    model = memory_model
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, {"image_size": 64})
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("flanet export: error:") and "backend pytorch only" in error
    assert not (tmp_path / "export.onnx").exists()


def test_stream_cost_counts_a_step_at_full_memory(memory_model: torch.nn.Module) -> None:
    from flanet.models.cost import count_gflops, measure_cost

    model = memory_model
    cost = measure_cost(model, 32)
    image = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        first = count_gflops(model.step, model.init_state(), model.encode(image))  # an empty memory
    assert cost.stream_gflops > cost.encoder_gflops + first > cost.encoder_gflops > 0


def test_one_tiny_training_step_reaches_every_part(model: torch.nn.Module) -> None:
    """The default loss trains every part: a memory model's memory encoder through the frames it memorised."""
    from flanet.losses import FLANetLoss

    name = model.config["name"]
    net = create_model(name, **model.config["options"]).train()
    clip, mask = torch.randn(2, net.num_frames, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    out = net(clip)
    loss = FLANetLoss(mask_loss=default_mask_loss(name))(out.mask_logits, mask).total
    loss.backward()
    # every part gets a gradient (within a part, timm zero-initialises each residual block's last BatchNorm)
    silent = [part for part, module in net.named_children()
              if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())]
    assert torch.isfinite(loss) and not silent, f"{name}: no gradient reaches {silent}"


def test_checkpoint_round_trip_of_a_tiny_model(model: torch.nn.Module, tmp_path: Path) -> None:
    from flanet.models import load_checkpoint

    loaded = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model, {"image_size": 32})).model
    assert loaded.config == model.config
    clip = torch.randn(1, model.num_frames + 2, 3, 32, 32)[:, : model.num_frames if model.init_state().window else None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip).mask_logits, model(clip).mask_logits, rtol=0, atol=1e-6)


def test_runs_of_windows_are_refused_for_a_memory_model(tmp_path: Path) -> None:
    from flanet.training import load_config
    from flanet.training.module import FLANetModule
    from flanet.training.schema import ConfigError

    config = load_config("cpu-small", ["model.name=stm", "model.encoder=resnet18", f"data.root={tmp_path}",
                                       "data.sequence_length=4"])
    with pytest.raises(ConfigError, match="data.sequence_length.*memory"):
        FLANetModule(config)


def test_stream_fps_times_only_frames_that_read_a_full_memory(monkeypatch) -> None:
    """A memory model's frames/s (benchmarks, ``flanet compare``) is of frames reading its full memory."""
    from flanet.experiments.costs import stream_fps
    from flanet.models.cost import frames_to_fill

    torch.manual_seed(0)
    model = create_model("stm", **TINY["stm"]).eval()
    small = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode():
        assert frames_to_fill(model, small) == 4  # frame 4 reads [3, 2, 0]: 3 entries, the bound
        assert frames_to_fill(create_model("pnsnet", **TINY["pnsnet"]).eval(), small) == 2  # a 3-frame window
    held: list[int] = []
    step = model.step

    def spying_step(state, features):
        held.append(state.held_frames)
        return step(state, features)

    monkeypatch.setattr(model, "step", spying_step)
    stream_fps(model, 64, frames=3, warmup=2)
    assert len(held) >= 4 + 3 and held.index(3) < len(held) - 3  # the memory filled before the 3 timed frames
    assert set(held[-3:]) <= {2, 3}  # steady state: the previous frame is also the sampled one every other frame


@pytest.mark.parametrize("name", ["pnsnet", "pnsplus"])
def test_mask_prior_gives_the_bias_free_classifier_a_bias_at_the_lesion_prior(name: str, tmp_path: Path) -> None:
    """Default: the authors' bias-free 1x1 classifier (state keys unchanged, old checkpoints load); with
    ``mask_prior`` a bias at logit(prior), so an untrained model starts far below 0.5 on every pixel."""
    import math

    from flanet.models import load_checkpoint

    small = {"encoder": "resnet18", "high_channels": 16, "low_channels": 8, "rfb_channels": 16}
    torch.manual_seed(0)
    plain = create_model(name, **small).eval()
    torch.manual_seed(0)
    primed = create_model(name, **small, mask_prior=0.01).eval()
    added = set(primed.state_dict()) - set(plain.state_dict())
    assert len(added) == 1 and set(plain.state_dict()) <= set(primed.state_dict())
    bias = primed.state_dict()[added.pop()]
    torch.testing.assert_close(bias, torch.tensor([math.log(0.01 / 0.99)]))
    clip = torch.randn(1, plain.num_frames, 3, 64, 64)
    with torch.no_grad():
        shift = primed(clip).mask_logits - plain(clip).mask_logits
    torch.testing.assert_close(shift, torch.full_like(shift, math.log(0.01 / 0.99)), rtol=0, atol=1e-4)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "primed.pt", primed, {"image_size": 64})).model
    assert loaded.config["options"]["mask_prior"] == 0.01 and set(loaded.state_dict()) == set(primed.state_dict())
    with pytest.raises(ValueError, match="mask_prior must be in"):
        create_model(name, **small, mask_prior=1.0)
