"""Runs of consecutive frames (``data.sequence_length``): each frame encoded once, the clips' loss and gradients."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from flanet.data import ClipDataset, discover
from flanet.data.sequences import SequenceDataset
from flanet.data.synth import generate_dataset
from flanet.training.config import ConfigError, load_config
from flanet.training.module import FLANetModule

#: Frames whose masks are removed: context only, as in a sparsely annotated set.
UNANNOTATED = {"video000": [1, 4], "video001": [0, 6]}


@pytest.fixture(scope="module")
def sparse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=3, frames=7, size=64, seed=0)
    for video, frames in UNANNOTATED.items():
        masks = sorted((root / "mask_list" / video).iterdir())
        for index in frames:
            masks[index].unlink()
    return root


def _targets_of(dataset: SequenceDataset, run: int) -> list[tuple[int, int]]:
    sample = dataset[run]
    return [(sample["video_index"], int(f)) for f, t in zip(sample["frame_index"], sample["target"]) if t]


def test_runs_cover_every_target_frame_once_and_hold_their_context(sparse_root: Path) -> None:
    video_set = discover(sparse_root)
    clips = ClipDataset(video_set, None, image_size=64, with_previous=True)
    runs = SequenceDataset(video_set, None, image_size=64, with_previous=True, run_length=3)
    covered = [pair for run in range(len(runs)) for pair in _targets_of(runs, run)]
    assert sorted(covered) == sorted(map(tuple, clips.samples.tolist()))  # each target exactly once
    assert runs.target_count == len(clips)
    # 7 frames in runs of 3: [0,3) [3,6) and the last moved back to [4,7), covering frame 6 only
    assert runs.runs[runs.runs[:, 0] == 2].tolist() == [[2, 2, 0], [2, 5, 3], [2, 6, 6]]
    last = runs[len(runs) - 1]
    assert last["frames"].shape == (3 + 2 + 1, 3, 64, 64)  # L windows + T-1 context + the t-1 window's frame
    assert last["frame_index"].tolist() == [6, 5, 4] and last["target"].tolist() == [True, False, False]
    first = runs[0]  # video start: windows before frame 0 are the first frame repeated, never targets
    assert first["frame_index"].tolist() == [2, 1, 0] and first["target"].tolist() == [True, False, True]
    assert first["prev_distinct"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="causal"):
        SequenceDataset(video_set, None, run_length=3, edge="lookahead")


def _frozen_batchnorm(module: FLANetModule) -> FLANetModule:
    """BatchNorm on running statistics: a run batch and a clip batch hold different frame multisets."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()
    return module


def test_runs_give_the_loss_and_gradients_of_clips_on_the_same_targets(sparse_root: Path) -> None:
    overrides = [f"data.root={sparse_root}", "data.image_size=64", "loss.alpha=1.0"]
    clip_module = _frozen_batchnorm(FLANetModule(load_config("cpu-small", overrides)))
    run_module = _frozen_batchnorm(FLANetModule(load_config("cpu-small", [*overrides, "data.sequence_length=4"])))
    run_module.model.load_state_dict(clip_module.model.state_dict())
    video_set = discover(sparse_root)
    runs = SequenceDataset(video_set, None, image_size=64, with_previous=True, run_length=4)
    clips = ClipDataset(video_set, None, image_size=64, with_previous=True)
    picked = [0, 1, 2, 4]  # two runs of video000 (one at its start, one moved back), then two others
    assert [int(runs.runs[i, 0]) for i in picked] == [0, 0, 1, 2]
    order = [pair for run in picked for pair in _targets_of(runs, run)]  # run order, latest target first
    index = {pair: i for i, pair in enumerate(map(tuple, clips.samples.tolist()))}
    run_batch = default_collate([runs[i] for i in picked])
    clip_batch = default_collate([clips[index[pair]] for pair in order])

    encoded: list[int] = []
    for module in (run_module, clip_module):
        module.model.encoder.register_forward_hook(lambda _m, args, _o: encoded.append(args[0].shape[0]))
    run_terms = run_module._losses(run_batch)
    clip_terms = clip_module._losses(clip_batch)
    assert encoded == [4 * (4 + 3), 4 * len(order)]  # runs: L + 3 frames for up to L targets; clips: 4 per target
    assert len(order) == 12 and run_terms.triplet_fraction > 0 and run_terms.contrastive > 0
    for name in ("total", "bce", "iou", "heatmap", "contrastive", "negative_fraction", "triplet_fraction"):
        torch.testing.assert_close(getattr(run_terms, name), getattr(clip_terms, name), rtol=1e-5, atol=1e-6)
    run_terms.total.backward()
    clip_terms.total.backward()
    for (name, mine), theirs in zip(run_module.model.named_parameters(), clip_module.model.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6), name


def test_the_paper_recipe_keeps_random_clips_and_runs_need_the_causal_edge() -> None:
    assert load_config("buv-paper").data.sequence_length is None
    assert load_config("cpu-small", ["data.sequence_length=8"]).data.sequence_length == 8
    with pytest.raises(ConfigError, match="data.edge"):
        load_config("cpu-small", ["data.sequence_length=8", "data.edge=lookahead"])
    with pytest.raises(ConfigError, match="data.sequence_length"):
        load_config("cpu-small", ["data.sequence_length=0"])


def test_flanet_train_with_runs_writes_a_run(sparse_root: Path, tmp_path: Path) -> None:
    from flanet.training import train

    run_dir = train("cpu-small", [f"data.root={sparse_root}", "data.image_size=64", "data.sequence_length=4",
                                  "data.batch_size=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                                  f"output.run_dir={tmp_path / 'run'}", "data.test_fraction=0"])
    assert load_config(run_dir / "config.yaml").data.sequence_length == 4
    (row,) = list(csv.DictReader((run_dir / "metrics.csv").open(newline="")))
    assert float(row["train_loss"]) > 0 and row["val_dice"] != ""
