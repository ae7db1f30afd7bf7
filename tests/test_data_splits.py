"""Split lists by video (stratified, never overwritten without --force; train and evaluate refuse splits that
share videos) and video-level labels."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.data import DataError, discover, make_splits, read_labels
from flanet.data.splits import parse_ratios, read_split_list
from flanet.data.synth import generate_dataset


def test_parse_ratios():
    assert parse_ratios("4:2:4") == (0.4, 0.2, 0.4)
    assert parse_ratios("7:0:3") == (0.7, 0.0, 0.3)
    for bad in ("4:2", "a:b:c", "-1:1:1", "0:0:0"):
        with pytest.raises(DataError, match="ratios"):
            parse_ratios(bad)


def test_make_splits_partitions_videos_by_ratio_and_is_seeded():
    ids = [f"v{i}" for i in range(20)]
    splits = make_splits(ids, (0.4, 0.2, 0.4), seed=1)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 4, 8]
    assert sorted(sum(splits.values(), [])) == sorted(ids)
    assert make_splits(ids, (0.4, 0.2, 0.4), seed=1) == splits
    assert make_splits(ids, (0.4, 0.2, 0.4), seed=2) != splits
    assert [len(v) for v in make_splits(ids[:3], (0.4, 0.2, 0.4), 0).values()] == [1, 1, 1]


def test_make_splits_is_stratified():
    ids = [f"v{i}" for i in range(30)]
    strata = {v: ("malignant" if i < 10 else "benign") for i, v in enumerate(ids)}
    splits = make_splits(ids, (0.4, 0.2, 0.4), seed=0, strata=strata)
    per_split = {name: Counter(strata[v] for v in members) for name, members in splits.items()}
    assert per_split["train"] == {"malignant": 4, "benign": 8}
    assert per_split["val"] == {"malignant": 2, "benign": 4}
    assert per_split["test"] == {"malignant": 4, "benign": 8}


def _tree(root, videos=10):
    for i in range(videos):
        (root / "images" / f"vid{i}").mkdir(parents=True)
        (root / "labels" / f"vid{i}").mkdir(parents=True)
        cv2.imwrite(str(root / "images" / f"vid{i}" / "0.png"), np.zeros((4, 4), np.uint8))
    rows = "".join(f"vid{i},{'malignant' if i % 2 else 'benign'}\n" for i in range(videos))
    (root / "video_labels.csv").write_text("video,pathology\n" + rows)
    return root


def test_split_command_writes_lists_and_refuses_to_overwrite(tmp_path, capsys):
    root = _tree(tmp_path)
    assert main(["data", "split", str(root), "--ratios", "4:2:4", "--seed", "3"]) == 0
    lists = {name: read_split_list(root / f"{name}_list.csv") for name in ("train", "val", "test")}
    assert sorted(sum(lists.values(), [])) == sorted(f"vid{i}" for i in range(10))
    assert Counter("malignant" if int(v[3:]) % 2 else "benign" for v in lists["train"]) == {"malignant": 2, "benign": 2}
    assert discover(root).splits == lists
    before = (root / "train_list.csv").read_text()
    assert main(["data", "split", str(root), "--seed", "4"]) == 2
    assert "use --force" in capsys.readouterr().err
    assert (root / "train_list.csv").read_text() == before
    assert main(["data", "split", str(root), "--seed", "4", "--force", "--ratios", "1:0:1"]) == 0
    assert not (root / "val_list.csv").exists()
    assert set(discover(root).splits) == {"train", "test"}


def test_labels_csv_reading_and_errors(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video,pathology,aln_metastasis\ncase1,malignant,present\n\ncase2,benign,absent\n")
    assert read_labels(path) == {
        "case1": {"pathology": "malignant", "aln_metastasis": "present"},
        "case2": {"pathology": "benign", "aln_metastasis": "absent"},
    }
    path.write_text("video,pathology\ncase1,benign\ncase1,malignant\n")
    with pytest.raises(DataError, match="listed twice"):
        read_labels(path)
    path.write_text("video,pathology\ncase1\n")
    with pytest.raises(DataError, match="line 2 has 1 columns"):
        read_labels(path)


def _split(root: Path, name: str) -> list[str]:
    return (root / f"{name}_list.csv").read_text().split()


def _error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("flanet ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.fullmatch(rf"flanet {command}: error: .+", lines[0])
    return lines[0]


def _overlapping(tmp_path: Path) -> tuple[Path, str]:
    data = generate_dataset(tmp_path / "data", videos=5, frames=4, size=64, seed=0)
    shared = _split(data, "train")[0]
    (data / "test_list.csv").write_text("\n".join([*_split(data, "test"), shared]) + "\n")
    return data, shared


def test_train_refuses_a_split_sharing_videos_with_another(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, shared = _overlapping(tmp_path)
    args = ["train", "--config", "cpu-small", f"data.root={data}", "data.image_size=64", "trainer.enable_progress_bar=false",
            f"output.dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    line = _error(capsys, "train")
    assert shared in line and "train_list.csv" in line and "test_list.csv" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_evaluate_refuses_a_split_sharing_videos_with_another(
    small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, shared = _overlapping(tmp_path)
    assert main(["evaluate", "--checkpoint", str(small_checkpoint), "--data", str(data), "--split", "test",
                 "--out", str(tmp_path / "eval"), "--no-progress", "--jobs", "1", "--num-workers", "0"]) == 2
    line = _error(capsys, "evaluate")
    assert shared in line and "train_list.csv" in line and "test_list.csv" in line
