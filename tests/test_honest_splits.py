"""Issue 31: no test video in training or model selection; nested video ids; Train/Test-only sets.

Each test builds a public data set's folder shape in ``tmp_path`` and runs ``flanet`` commands only.
Before the fix: a set without split lists was evaluated on every video (training videos included)
with exit status 0; predicting a data set root with ids like ``Test/0004`` deleted the results;
VTUS (``Train/`` + ``Test/``, one training video) could not be trained; ``flanet data split``
moved the official test video into training and wrote an empty ``val_list.csv``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.data import discover
from flanet.data.split_record import video_list_hash
from flanet.models import create_model, save_checkpoint

TINY = ["data.image_size=64", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.num_workers=0",
        "data.batch_size=2", "trainer.limit_train_batches=2"]
SIZE = (40, 48)


def _video(frames_dir: Path, masks_dir: Path, count: int = 3, seed: int = 0) -> None:
    """``count`` frames of a bright disc on noise, with their masks."""
    rng = np.random.default_rng(seed)
    frames_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        mask = np.zeros(SIZE, np.uint8)
        cv2.circle(mask, (16 + 2 * index + seed % 5, 20), 7, 255, -1)
        frame = rng.integers(0, 80, (*SIZE, 3), dtype=np.uint8)
        frame[mask > 0] = 200
        cv2.imwrite(str(frames_dir / f"{index + 1}.jpg"), frame)
        cv2.imwrite(str(masks_dir / f"{index + 1}.png"), mask)


def vtus_root(root: Path, train: int = 1, test: int = 1) -> Path:
    """VTUS shape: ``Train/<video>/`` + ``Train_GT/<video>/``, ``Test/...`` + ``Test_GT/...``."""
    for split, count in (("Train", train), ("Test", test)):
        for n in range(count):
            video = f"{n + 4:04d}" if split == "Test" else f"{n + 1:04d}"
            _video(root / split / video, root / f"{split}_GT" / video, seed=n + (10 if split == "Test" else 0))
    return root


def vps_root(root: Path) -> Path:
    """MICCAI-VPS test-set shape: ``VPS-TestSet/<set>/{Frame,GT}/<seq>/``."""
    for n, name in enumerate(("CVC-ColonDB-300", "CVC-ClinicDB-612-Valid")):
        _video(root / "VPS-TestSet" / name / "Frame" / "1", root / "VPS-TestSet" / name / "GT" / "1", seed=n)
    return root


def sun_seg_root(root: Path) -> Path:
    """SUN-SEG shape: ``TrainDataset/{Frame,GT}/<case>/``, ``TestEasyDataset/Seen/{Frame,GT}/<case>/``."""
    _video(root / "TrainDataset" / "Frame" / "case1_1", root / "TrainDataset" / "GT" / "case1_1")
    seen = root / "TestEasyDataset" / "Seen"
    _video(seen / "Frame" / "case2_3", seen / "GT" / "case2_3", seed=3)
    return root


def no_lists_root(root: Path, videos: int = 6) -> Path:
    """BUV2022 shape, no split lists: ``images/<video>/``, ``labels/<video>/``."""
    for n in range(videos):
        _video(root / "images" / f"v{n}", root / "labels" / f"v{n}", seed=n)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("flanet", encoder="mobilenetv3_small_100", neck_channels=[16, 24, 48, 96],
                         decoder_channels=[64, 32, 24, 16], head_channels=16)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, {"image_size": 64})


def _error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"flanet {command}: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("shape", ["vtus", "vps", "sun-seg"])
def test_nested_video_ids_predict_and_round_trip_through_evaluate(
    shape: str, checkpoint: Path, tmp_path: Path
) -> None:
    """Item 5: ``Test/0004``-style ids get nested folders; ``evaluate --pred-dir`` reads them back."""
    root = {"vtus": vtus_root, "vps": vps_root, "sun-seg": sun_seg_root}[shape](tmp_path / shape)
    ids = [v.id for v in discover(root).subset("test")]
    assert all("/" in video_id for video_id in ids)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), str(root), "--split", "test", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    for video_id in ids:
        assert len(list((out / video_id / "masks").glob("*.png"))) == 3, video_id
    assert not list(out.rglob("*.partial"))
    report = tmp_path / "eval"
    assert main(["evaluate", "--pred-dir", str(out), "--data", str(root), "--split", "test", "--out", str(report),
                 "--resamples", "20", "--jobs", "1", "--no-progress"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["num_videos"] == len(ids) and metrics["num_frames"] == 3 * len(ids)
    assert metrics["context"]["scored_videos"]["hash"] == video_list_hash(ids)


def test_vtus_trains_predicts_and_evaluates_with_flanet_commands_only(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Items 1 and 3: Train/Test only, one training video: trains without validation (last.pt), test untouched."""
    root = vtus_root(tmp_path / "VTUS")
    assert main(["train", "--config", "cpu-small", f"data.root={root}", f"output.run_dir={tmp_path / 'run'}",
                 *TINY]) == 0
    record = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert record["train"] == ["Train/0001"] and record["val"] == [] and record["selection_split"] is None
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert last.is_file() and not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert main(["predict", "--checkpoint", str(last), str(root), "--split", "test", "--out", str(tmp_path / "p"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert main(["evaluate", "--pred-dir", str(tmp_path / "p"), "--data", str(root), "--out", str(tmp_path / "e1"),
                 "--resamples", "20", "--jobs", "1", "--no-progress"]) == 0
    assert main(["evaluate", "--checkpoint", str(last), "--data", str(root), "--out", str(tmp_path / "e2"),
                 "--resamples", "20", "--jobs", "1", "--no-progress", "--device", "cpu"]) == 0
    table = (tmp_path / "e2" / "table.md").read_text()
    assert f"Scored split `test`: 1 video (list hash `{video_list_hash(['Test/0004'])}`" in table
    assert "n/a (1 video)" in table  # no interval from one video (item 7)
    capsys.readouterr()
    # ... and the training video is refused as a test set
    assert main(["evaluate", "--checkpoint", str(last), "--data", str(root), "--split", "train",
                 "--out", str(tmp_path / "e3"), "--no-progress", "--device", "cpu"]) == 2
    assert "1 were training videos" in _error_line(capsys, "evaluate")


def test_validation_on_the_official_test_split_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Item 3: ``data.val_split=test`` is refused with the true reason (not 'shares videos')."""
    root = vtus_root(tmp_path / "VTUS")
    assert main(["train", "--config", "cpu-small", f"data.root={root}", "data.val_split=test",
                 f"output.run_dir={tmp_path / 'run'}", *TINY]) == 2
    line = _error_line(capsys, "train")
    assert "is a test split: choosing the checkpoint on test videos" in line and "shares" not in line
    assert not (tmp_path / "run").exists()


def test_data_split_keeps_the_official_test_split_and_writes_no_empty_list(tmp_path: Path, capsys) -> None:
    """Item 3: ``flanet data split`` on Train/ + Test/ leaves the test videos where they are."""
    root = vtus_root(tmp_path / "VTUS", train=1, test=2)
    assert main(["data", "split", str(root)]) == 0
    assert (root / "test_list.csv").read_text().split() == ["Test/0004", "Test/0005"]
    assert (root / "train_list.csv").read_text().split() == ["Train/0001"]
    assert not (root / "val_list.csv").exists()
    assert "no validation list" in capsys.readouterr().out
    root = vtus_root(tmp_path / "VTUS5", train=5, test=2)
    assert main(["data", "split", str(root), "--ratios", "3:2:5"]) == 0
    lists = {name: (root / f"{name}_list.csv").read_text().split() for name in ("train", "val", "test")}
    assert lists["test"] == ["Test/0004", "Test/0005"]
    assert sorted(lists["train"] + lists["val"]) == [f"Train/{n:04d}" for n in range(1, 6)]
    assert len(lists["val"]) == 2  # train:val = 3:2 of the five training videos


def test_a_set_without_split_lists_is_scored_on_held_out_videos_only(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Item 1: BUV2022 has no split lists. Training holds test videos out (recorded); evaluate scores
    exactly those; a model without such a record is refused rather than scored on every video."""
    root = no_lists_root(tmp_path / "buv")
    assert main(["train", "--config", "cpu-small", f"data.root={root}", f"output.run_dir={tmp_path / 'run'}",
                 *TINY]) == 0
    record = json.loads((tmp_path / "run" / "splits.json").read_text())
    test, trained = record["test"], record["train"] + record["val"]
    assert test and not set(test) & set(trained) and sorted(test + trained) == [f"v{n}" for n in range(6)]
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(root), "--out", str(tmp_path / "e"),
                 "--resamples", "20", "--jobs", "1", "--no-progress", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["context"]["scored_videos"]["ids"] == test
    assert {row["video"] for row in _per_video(tmp_path / "e")} == set(test)
    assert f"list hash `{video_list_hash(test)}`" in (tmp_path / "e" / "table.md").read_text()
    capsys.readouterr()
    # a prediction folder carries no record: refused, with how to make split lists
    assert main(["evaluate", "--pred-dir", str(tmp_path / "e"), "--data", str(root), "--out", str(tmp_path / "f"),
                 "--no-progress"]) == 2
    assert re.search(r"flanet data split .*--ratios 4:2:4", _error_line(capsys, "evaluate"))
    # the checkpoint was chosen on its validation videos: scoring them is refused, or flagged when allowed
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(root), "--split", "all",
                 "--out", str(tmp_path / "g"), "--no-progress", "--device", "cpu"]) == 2
    assert "chose the checkpoint" in _error_line(capsys, "evaluate")
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(root), "--split", "all", "--allow-seen",
                 "--out", str(tmp_path / "g"), "--resamples", "20", "--jobs", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    assert (tmp_path / "g" / "table.md").read_text().startswith("**NOT A HELD-OUT SCORE")


def _per_video(folder: Path) -> list[dict[str, str]]:
    import csv

    with (folder / "per_video.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))
