"""Small pieces of the training code: validation de-duplication, train/val split, precision."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet import colours
from flanet.data import DataError, Video, VideoSet
from flanet.data.split_record import SplitRecord, video_list_hash
from flanet.training.callbacks import loss_curve_figure, plot_loss_curve
from flanet.training.config import load_config
from flanet.training.datamodule import choose_splits, split_train_val
from flanet.training.module import _drop_duplicate_frames, _get_rng_states, _set_rng_states
from flanet.training.run import precision_for


def _video_set(ids: list[str], splits: dict[str, list[str]]) -> VideoSet:
    videos = [Video(id=i, frames=[Path(f"{i}/0.png")], masks=[Path(f"{i}/m0.png")]) for i in ids]
    return VideoSet(root=Path("/data"), layout="authors", videos=videos, splits=splits)


def test_gathered_validation_frames_are_counted_once() -> None:
    merged = {
        "video_index": torch.tensor([0, 0, 1, 0, 1, 1]),
        "frame_index": torch.tensor([3, 4, 3, 3, 3, 7]),  # (0, 3) and (1, 3) appear twice (sampler padding)
        "dice": torch.tensor([0.1, 0.2, 0.3, 0.1, 0.3, 0.4]),
    }
    kept = _drop_duplicate_frames(merged)
    pairs = sorted(zip(kept["video_index"].tolist(), kept["frame_index"].tolist()))
    assert pairs == [(0, 3), (0, 4), (1, 3), (1, 7)]
    assert sorted(kept["dice"].tolist()) == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_validation_split_is_used_when_present() -> None:
    data = load_config("buv-paper").data
    chosen = split_train_val(_video_set(list("abcd"), {"train": ["a", "b"], "val": ["c"], "test": ["d"]}), data, 0)
    assert chosen.splits["train"] == ["a", "b"] and chosen.splits["val"] == ["c"]


def test_videos_are_held_out_when_there_is_no_validation_split() -> None:
    data = dataclasses.replace(load_config("buv-paper").data, val_fraction=0.25)
    ids = [f"v{i}" for i in range(8)]
    chosen = split_train_val(_video_set(ids, {"train": ids}), data, seed=0)
    assert len(chosen.splits["val"]) == 2 and len(chosen.splits["train"]) == 6
    assert set(chosen.splits["val"]).isdisjoint(chosen.splits["train"])
    assert split_train_val(_video_set(ids, {"train": ids}), data, seed=0).splits == chosen.splits



def test_a_set_without_split_lists_holds_test_videos_out_and_records_them() -> None:
    """Issue 31 item 1: no split lists must not mean training on every video that is then scored."""
    data = dataclasses.replace(load_config("buv-paper").data, val_fraction=0.25, test_fraction=0.25)
    ids = [f"v{i}" for i in range(8)]
    chosen, record = choose_splits(_video_set(ids, {}), data, seed=0)
    train, val, test = (chosen.splits[k] for k in ("train", "val", "test"))
    assert len(test) == 2 and len(val) == 2 and len(train) == 4
    assert sorted(train + val + test) == ids and not set(test) & (set(train) | set(val))
    assert (record.train, record.val, record.test) == (train, val, test)
    assert record.source.startswith("held out by flanet (seed 0") and record.selection_split.startswith("val")
    assert choose_splits(_video_set(ids, {}), data, seed=0)[1] == record  # seeded
    assert SplitRecord.from_dict(record.to_dict()) == record
    assert record.to_dict()["hashes"]["test"] == video_list_hash(reversed(test))  # order-free


def test_a_test_split_is_never_the_validation_split() -> None:
    """Issue 31 items 2 and 3: the checkpoint is never chosen on a test split, whatever its folder is called."""
    data = load_config("buv-paper").data
    sets = {"Train": ["Train/a"], "Test": ["Test/b"], "train": ["Train/a"], "test": ["Test/b"]}
    video_set = _video_set(["Train/a", "Test/b"], sets)
    for name in ("test", "Test", "VPS-TestSet/CVC-ClinicDB-612-Valid", "CVC-ClinicDB-612-Valid"):
        with pytest.raises(DataError, match="is a test split: choosing the checkpoint on test videos"):
            choose_splits(video_set, dataclasses.replace(data, val_split=name), 0)


def test_one_training_video_trains_without_validation_and_keeps_the_test_split() -> None:
    """Issue 31 item 3 (VTUS: Train/ and Test/ only, one training video): last.pt, test untouched."""
    data = load_config("buv-paper").data
    sets = {"Train": ["Train/a"], "Test": ["Test/b"], "train": ["Train/a"], "test": ["Test/b"]}
    chosen, record = choose_splits(_video_set(["Train/a", "Test/b"], sets), data, 0)
    assert chosen.splits["train"] == ["Train/a"] and chosen.splits["val"] == []
    assert chosen.splits["test"] == ["Test/b"] and record.selection_split is None and record.test == []


def test_bad_splits_are_clear_errors() -> None:
    data = load_config("buv-paper").data
    with pytest.raises(DataError, match="no split 'train'"):
        split_train_val(_video_set(list("ab"), {"test": ["a", "b"]}), data, 0)
    with pytest.raises(DataError, match="cannot hold a test video out"):
        split_train_val(_video_set(["a"], {}), data, 0)  # no split lists, one video
    with pytest.raises(DataError, match="split 'train' shares 1 video"):
        split_train_val(_video_set(list("ab"), {"train": ["a", "b"], "val": ["b"]}), data, 0)
    same = dataclasses.replace(data, val_split="train")  # one split named for both roles
    with pytest.raises(DataError, match="videos in both"):
        split_train_val(_video_set(list("ab"), {"train": ["a", "b"]}), same, 0)


def test_rng_states_round_trip() -> None:
    states = _get_rng_states()
    first = (torch.rand(3), np.random.rand(), random.random())
    _set_rng_states(states)
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_precision_auto_is_fp32_on_cpu_and_explicit_values_pass_through() -> None:
    config = load_config("buv-fast", ["trainer.accelerator=cpu"])  # precision auto
    assert precision_for(config) == "32-true"
    assert precision_for(load_config("buv-paper", ["trainer.precision=16-mixed"])) == "16-mixed"


def test_loss_curve_never_draws_in_the_truth_or_prediction_colours(tmp_path: Path) -> None:
    columns = ("epoch", "step", "train_loss", "val_loss", "train_bce", "train_iou", "train_heatmap_mse",
               "train_contrastive", "val_dice", "val_jaccard", "val_f1")
    rows = [",".join(columns)] + [",".join(str(v) for v in (e, 10 * e, 1 - e / 5, 1.1 - e / 5, 0.5 - e / 10, 0.5 - e / 10,
                                                            0.1, 0.2, e / 5, e / 6, e / 5.5)) for e in range(4)]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plot_loss_curve(tmp_path / "metrics.csv", tmp_path / "loss.png")
    rgb = cv2.cvtColor(cv2.imread(str(tmp_path / "loss.png")), cv2.COLOR_BGR2RGB).reshape(-1, 3).astype(int)
    drawn = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in colours.SERIES_COLOURS}
    assert any((rgb == colour).all(1).any() for colour in drawn)  # the series colours are there
    for colour in ((0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28), colours.TRUTH_RGB, colours.PREDICTION_RGB):
        assert not (np.abs(rgb - colour).max(1) <= 8).any(), colour  # matplotlib's green / red, ours


def test_loss_curve_ticks_are_whole_epochs(tmp_path: Path) -> None:
    columns = ("epoch", "step", "train_loss", "val_loss", "val_dice")
    rows = [",".join(columns), "0,4,1.0,1.1,0.2", "1,8,0.8,0.9,0.4"]  # two epochs: matplotlib ticks 0.2 apart
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    figure = loss_curve_figure(tmp_path / "metrics.csv")
    for axes in figure.axes:
        ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
