"""Video labels (issue 30 item 1): labels.csv in any layout, class folders, binary targets, ``data check`` counts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flanet.data import DataError, discover
from flanet.data.check import check_dataset, label_counts
from flanet.data.labels import binary_targets, folder_labels, label_value, merged_labels


def _frames(folder, count=3, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:03d}.png"), np.full((size, size, 3), 100, np.uint8))


def _mask(folder, count=3, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[4:9, 4:9] = 255
        cv2.imwrite(str(folder / f"{index:03d}.png"), mask)


@pytest.mark.parametrize("value, expected", [
    ("malignant", 1.0), ("Benign", 0.0), ("present", 1.0), ("absent", 0.0), ("1", 1.0), ("0", 0.0),
    ("yes", 1.0), ("FALSE", 0.0), ("", None), (" ? ", None), ("unknown", None),
])
def test_label_value_reads_binary_words(value, expected):
    assert label_value(value) == expected


def test_label_value_refuses_other_values():
    with pytest.raises(ValueError, match="'4a' is not a binary label"):
        label_value("4a")


def test_binary_targets_marks_missing_cells_and_missing_videos():
    labels = {"a": {"malignant": "1", "aln": ""}, "b": {"malignant": "benign", "aln": "present"}}
    values, known = binary_targets(labels, ["malignant", "aln"], ["a", "b", "c"])
    np.testing.assert_array_equal(values, [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(known, [[True, False], [True, True], [False, False]])


def test_binary_targets_names_the_bad_cell(tmp_path):
    with pytest.raises(DataError, match=r"video 'a', label 'birads': 'x' is not a binary label"):
        binary_targets({"a": {"birads": "x"}}, ["birads"], ["a"], tmp_path / "labels.csv")


def test_folder_labels_take_the_class_folder_nearest_the_video():
    found = folder_labels([("benign/c1", ["rawframes", "benign", "c1"]), ("x", ["img_list", "x"]),
                           ("malignant/benign_like", ["Malignant", "benign_like"])])
    assert found == {"benign/c1": {"pathology": "benign"}, "malignant/benign_like": {"pathology": "malignant"}}


def test_csv_cells_win_over_folder_labels_unless_blank():
    merged = merged_labels({"a": {"pathology": "malignant", "aln": "present"}, "b": {"pathology": " "}},
                           {"a": {"pathology": "benign"}, "b": {"pathology": "benign"}})
    assert merged == {"a": {"pathology": "malignant", "aln": "present"}, "b": {"pathology": "benign"}}


def test_labels_csv_in_a_frame_folder_layout(tmp_path):
    for name in ("v1", "v2", "v3"):
        _frames(tmp_path / name)
    (tmp_path / "labels.csv").write_text("video,malignant,aln_metastasis\nv1,1,0\nv2,0,\n")
    video_set = discover(tmp_path)
    assert video_set.layout == "frame-folders"
    assert video_set.labels == {"v1": {"malignant": "1", "aln_metastasis": "0"},
                                "v2": {"malignant": "0", "aln_metastasis": ""}}
    counts, unlabelled = label_counts(video_set)
    assert unlabelled == ["v3"]
    assert counts["aln_metastasis"]["all"] == {"0": 1, "missing": 2}


def test_class_folders_give_pathology_in_the_frame_folder_layout(tmp_path):
    _frames(tmp_path / "benign" / "case1")
    _frames(tmp_path / "malignant" / "case2")
    _frames(tmp_path / "other")
    video_set = discover(tmp_path)
    assert [video.id for video in video_set.videos] == ["benign/case1", "malignant/case2", "other"]
    assert video_set.videos[0].num_frames == 3
    assert video_set.labels == {"benign/case1": {"pathology": "benign"}, "malignant/case2": {"pathology": "malignant"}}


def test_class_folders_in_the_authors_layout_pair_their_masks(tmp_path):
    for label, name in (("benign", "c1"), ("malignant", "c2")):
        _frames(tmp_path / "img_list" / label / name)
        _mask(tmp_path / "mask_list" / label / name)
    video_set = discover(tmp_path)
    assert [(v.id, v.num_masks) for v in video_set.videos] == [("benign/c1", 3), ("malignant/c2", 3)]
    assert video_set.labels["malignant/c2"] == {"pathology": "malignant"}
    assert not [note for note in video_set.notes if note.severity != "note"]


def test_data_check_reports_label_counts_per_split_and_unlabelled_videos(tmp_path):
    for name in ("v1", "v2", "v3", "v4"):
        _frames(tmp_path / "img_list" / name)
        _mask(tmp_path / "mask_list" / name)
    (tmp_path / "train_list.csv").write_text("v1\nv2\n")
    (tmp_path / "test_list.csv").write_text("v3\nv4\n")
    (tmp_path / "labels.csv").write_text("video,pathology\nv1,malignant\nv2,benign\nv3,benign\n")
    report = check_dataset(tmp_path, progress=False)
    assert report.label_counts["pathology"] == {"all": {"malignant": 1, "benign": 2, "missing": 1},
                                                "train": {"malignant": 1, "benign": 1},
                                                "test": {"benign": 1, "missing": 1}}
    assert report.unlabelled == ["v4"]
    text = report.format()
    assert "pathology: benign 2, malignant 1, missing 1 (test: benign 1, missing 1; train: benign 1, malignant 1)" in text
    assert "1 video without labels: v4" in text


def test_data_check_notes_a_label_that_is_not_binary(tmp_path):
    for name in ("v1", "v2"):
        _frames(tmp_path / name)
    (tmp_path / "labels.csv").write_text("video,birads\nv1,4a\nv2,3\n")
    report = check_dataset(tmp_path, progress=False)
    notes = [p.message for p in report.problems if p.severity == "note"]
    assert any("label 'birads' has values that are not binary (3, 4a)" in message for message in notes)
