"""Split lists by video (stratified, never overwritten without --force) and video-level labels."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.data import DataError, discover, make_splits, read_labels
from flanet.data.splits import parse_ratios, read_split_list


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
