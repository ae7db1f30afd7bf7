"""Layout detection and readers, each on a small tree built in tmp_path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from flanet.data import DataError, discover


def _frame(path, value=100, size=(8, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def _mask(path, box=(2, 2, 5, 5), size=(8, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(size, np.uint8)
    if box:
        mask[box[1]:box[3], box[0]:box[2]] = 255
    cv2.imwrite(str(path), mask)


def _video_dirs(frames_dir, masks_dir, names, frame_ext=".jpg"):
    for name in names:
        _frame(frames_dir / f"{name}{frame_ext}")
        _mask(masks_dir / f"{name}.png")


def test_authors_layout_natural_order_masks_bboxes_splits_labels(tmp_path):
    names = ["frame10", "frame2", "frame1"]
    _video_dirs(tmp_path / "img_list" / "v2", tmp_path / "mask_list" / "v2", names)
    _video_dirs(tmp_path / "img_list" / "v10", tmp_path / "mask_list" / "v10", ["a"])
    (tmp_path / "bbox.json").write_text(json.dumps({"v2": {"frame2.jpg": [2, 2, 5, 5], "frame10.jpg": None}}))
    (tmp_path / "train_list.csv").write_text("video\nv2\n")
    (tmp_path / "test_list.csv").write_text("v10\n")
    labels = "video,pathology,aln_metastasis\nv2,benign,absent\nv10,malignant,present\n"
    (tmp_path / "video_labels.csv").write_text(labels)
    video_set = discover(tmp_path)
    assert video_set.layout == "authors"
    assert [v.id for v in video_set.videos] == ["v2", "v10"]
    v2 = video_set.video("v2")
    assert [f.name for f in v2.frames] == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    assert [m.name for m in v2.masks] == ["frame1.png", "frame2.png", "frame10.png"]
    assert v2.bboxes == [None, (2.0, 2.0, 5.0, 5.0), None]
    assert video_set.video("v10").bboxes is None
    assert video_set.splits == {"test": ["v10"], "train": ["v2"]}
    assert [v.id for v in video_set.subset("train")] == ["v2"]
    assert video_set.labels["v10"] == {"pathology": "malignant", "aln_metastasis": "present"}
    assert video_set.notes == []


def test_missing_masks_stray_files_and_unknown_split(tmp_path):
    _video_dirs(tmp_path / "img_list" / "v", tmp_path / "mask_list" / "v", ["1", "2"])
    (tmp_path / "mask_list" / "v" / "2.png").unlink()
    (tmp_path / "img_list" / "v" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "img_list" / "v" / "Thumbs.db").write_bytes(b"x")
    video_set = discover(tmp_path)
    assert video_set.videos[0].masks[1] is None and video_set.videos[0].masks[0] is not None
    assert sorted(n.path.name for n in video_set.notes if "stray" in n.message) == [".DS_Store", "Thumbs.db"]
    with pytest.raises(DataError, match="no split 'train'"):
        video_set.subset("train")


def test_split_list_naming_a_missing_video_fails_subset_with_the_list_file(tmp_path):
    _video_dirs(tmp_path / "img_list" / "v", tmp_path / "mask_list" / "v", ["1"])
    (tmp_path / "train_list.csv").write_text("v\nghost\n")
    with pytest.raises(DataError, match="ghost") as info:
        discover(tmp_path).subset("train")
    assert "train_list.csv" in str(info.value)


def test_buv2022_layout(tmp_path):
    _video_dirs(tmp_path / "images" / "benign_1", tmp_path / "labels" / "benign_1", ["0", "1", "2"], ".png")
    video_set = discover(tmp_path)
    assert video_set.layout == "buv2022" and video_set.videos[0].num_masks == 3 and video_set.splits == {}


def test_video_polyp_layout_with_split_folders_and_aliases(tmp_path):
    for split in ("TrainSet", "TestSet"):
        for case in ("case2", "case10"):
            _video_dirs(tmp_path / split / "Frame" / case, tmp_path / split / "GT" / case, ["img1", "img2"])
    video_set = discover(tmp_path)
    assert video_set.layout == "video-polyp"
    assert video_set.splits["TrainSet"] == ["TrainSet/case2", "TrainSet/case10"]
    assert video_set.splits["train"] == video_set.splits["TrainSet"]
    assert video_set.splits["test"] == ["TestSet/case2", "TestSet/case10"]
    assert all(v.num_masks == 2 for v in video_set.videos)


def test_polyp_layout_reports_stray_files_and_missing_gt(tmp_path):
    _video_dirs(tmp_path / "Test" / "Frame" / "c1", tmp_path / "Test" / "GT" / "c1", ["1"])
    _frame(tmp_path / "Test" / "Frame" / "c2" / "1.jpg")
    (tmp_path / "Test" / "Frame" / "c1" / "Thumbs.db").write_bytes(b"x")
    video_set = discover(tmp_path)
    assert [v.num_masks for v in video_set.videos] == [1, 0]
    assert {(n.path.name, n.severity) for n in video_set.notes} == {("Thumbs.db", "note"), ("c2", "warning")}


def test_sun_seg_and_vps_test_nesting(tmp_path):
    root = tmp_path / "SUN-SEG"
    _video_dirs(root / "TrainDataset" / "Frame" / "case1_1", root / "TrainDataset" / "GT" / "case1_1", ["a-image1"])
    seen = root / "TestEasyDataset" / "Seen"
    _video_dirs(seen / "Frame" / "case2_3", seen / "GT" / "case2_3", ["b"])
    vps = tmp_path / "VPS-TestSet"
    _video_dirs(vps / "CVC-ClinicDB-612-Valid" / "Frame" / "1", vps / "CVC-ClinicDB-612-Valid" / "GT" / "1", ["1"])
    _video_dirs(vps / "CVC-ColonDB-300" / "Frame" / "1", vps / "CVC-ColonDB-300" / "GT" / "1", ["1"])
    sun = discover(root)
    assert sun.splits["train"] == ["TrainDataset/case1_1"]
    assert sun.splits["test"] == ["TestEasyDataset/Seen/case2_3"]
    # Table 4's test sets are test splits, never validation (CVC-ClinicDB-612-Valid is CVC-612-V; issue 31 item 2)
    assert "val" not in discover(vps).splits
    assert sorted(discover(vps).splits["test"]) == ["CVC-ClinicDB-612-Valid/1", "CVC-ColonDB-300/1"]
    assert [v.id for v in discover(vps).subset("CVC-ColonDB-300")] == ["CVC-ColonDB-300/1"]


@pytest.mark.parametrize("per_sequence", [True, False])
def test_miccai_vps_train_variants(tmp_path, per_sequence):
    base = tmp_path / "VPS-TrainSet" / "ASU-Mayo_Clinic" / "Train"
    for seq in ("2", "10"):
        if per_sequence:  # Train/<seq>/{Frame,GT}
            _video_dirs(base / seq / "Frame", base / seq / "GT", ["1", "2"])
        else:  # Train/{Frame,GT}/<seq>
            _video_dirs(base / "Frame" / seq, base / "GT" / seq, ["1", "2"])
    video_set = discover(tmp_path)
    prefix = "VPS-TrainSet/ASU-Mayo_Clinic/Train"
    assert [v.id for v in video_set.videos] == [f"{prefix}/2", f"{prefix}/10"]
    assert video_set.splits["train"] == [f"{prefix}/2", f"{prefix}/10"]
    assert all(v.num_masks == 2 for v in video_set.videos)


def test_video_files_with_optional_masks(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "scan.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 12))
    for value in range(0, 200, 40):
        writer.write(np.full((12, 16, 3), value, np.uint8))
    writer.release()
    (tmp_path / "empty.mp4").write_bytes(b"")
    _mask(tmp_path / "masks" / "scan" / "frame_3.png", size=(12, 16))
    with pytest.raises(DataError, match="unreadable video, so the folder cannot be read whole") as refused:
        discover(tmp_path)  # issue 22 item 6: never a folder read without one of its videos
    assert refused.value.path.name == "empty.mp4"
    video_set = discover(tmp_path, list_unreadable=True)  # flanet data check lists it among every problem
    assert video_set.layout == "video-files"
    (video,) = video_set.videos
    assert video.video_file.name == "scan.avi" and video.frames == [] and video.num_frames == 5
    assert [m is not None for m in video.masks] == [False, False, False, True, False]
    assert any(n.severity == "error" and n.path.name == "empty.mp4" for n in video_set.notes)


def test_frame_folders_and_unknown_layout(tmp_path):
    _frame(tmp_path / "clips" / "a" / "1.png")
    video_set = discover(tmp_path / "clips")
    assert video_set.layout == "frame-folders" and video_set.videos[0].masks == [None]
    for name in ("frame10.png", "frame9.png"):
        _frame(tmp_path / "one" / name)
    (video,) = discover(tmp_path / "one").videos
    assert video.id == "one" and [f.name for f in video.frames] == ["frame9.png", "frame10.png"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no known data layout"):
        discover(tmp_path / "nothing")
    with pytest.raises(DataError, match="not a folder"):
        discover(tmp_path / "missing")


def _avi(path, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 12))
    for value in range(frames):
        writer.write(np.full((12, 16, 3), 40 * value, np.uint8))
    writer.release()


def test_a_folder_mixing_video_files_dicom_and_frame_folders_reads_them_all(tmp_path):
    """Issue 22 item 6: the frame folders beside video files were dropped silently."""
    from dicom_writer import colour_frames, write_cine

    _avi(tmp_path / "scan.avi")
    write_cine(tmp_path / "cine.dcm", colour_frames(2))
    _frame(tmp_path / "clip" / "1.png")
    _frame(tmp_path / "clip" / "2.png")
    _mask(tmp_path / "masks" / "scan" / "frame_1.png", size=(12, 16))  # the video files' masks: not a video
    video_set = discover(tmp_path)
    assert video_set.layout == "mixed"
    assert sorted(v.id for v in video_set.videos) == ["cine", "clip", "scan"]
    assert {v.id: v.num_frames for v in video_set.videos} == {"cine": 2, "clip": 2, "scan": 3}


def test_an_unreadable_video_in_a_mixed_folder_is_refused_by_name_not_skipped(tmp_path, capsys, checkpoint):
    """Issue 22 item 6: predict read the frame folder and the good video and dropped the broken one, exit 0."""
    from flanet.cli import main
    from flanet.inference.runs.sources import resolve_sources

    (tmp_path / "data").mkdir()
    _avi(tmp_path / "data" / "scan.avi")
    (tmp_path / "data" / "broken.avi").write_bytes(b"RIFF but not a video")
    _frame(tmp_path / "data" / "clip" / "1.png")
    with pytest.raises(DataError, match="unreadable video") as refused:
        resolve_sources(tmp_path / "data")
    assert refused.value.path.name == "broken.avi"
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "data"), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flanet predict: error: unreadable video") and "broken.avi" in err[0]
    assert not out.exists()


def test_loose_frames_beside_other_videos_are_refused_by_discover_and_predict(tmp_path):
    from flanet.inference.runs.sources import resolve_sources

    _avi(tmp_path / "scan.avi")
    _frame(tmp_path / "loose.png")
    for read in (discover, resolve_sources):
        with pytest.raises(DataError, match=r"holds frames directly \(loose.png.*scan.avi"):
            read(tmp_path)


def test_two_inputs_giving_one_video_id_are_refused(tmp_path):
    _avi(tmp_path / "a.avi")
    _frame(tmp_path / "a" / "1.png")
    with pytest.raises(DataError, match="a.avi and a/ both give video id 'a'"):
        discover(tmp_path)


@pytest.mark.parametrize("root_frames", [False, True])
def test_frames_sharing_a_stem_are_refused_with_both_names(tmp_path, root_frames):
    """Issue 22 item 6: f1.jpg and f1.png wrote one mask over the other."""
    from flanet.inference.runs.sources import resolve_sources

    folder = tmp_path if root_frames else tmp_path / "video"
    _frame(folder / "f1.jpg")
    _frame(folder / "f1.png")
    _frame(folder / "f2.png")
    for read in (discover, resolve_sources):
        with pytest.raises(DataError, match=r"two frames share the name 'f1' \(f1.jpg and f1.png\)"):
            read(tmp_path)
    with pytest.raises(DataError, match="two frames share the name 'f1'"):
        resolve_sources(folder)


def _read_scans(root, notes):
    """A layout made up for the test below: ``scans/<video>/<frame>``, no masks."""
    from flanet.data.listing import frame_files, list_dir
    from flanet.data.videoset import LayoutRead, Video

    if not (root / "scans").is_dir():
        return None
    folders = list_dir(root / "scans", notes)[0]
    return LayoutRead("scans", [Video(f.name, frame_files(f), [None] * len(frame_files(f))) for f in folders])


def test_a_new_layout_is_one_reader_and_its_line_in_layouts(tmp_path, monkeypatch):
    """Adding an input format touches its reader and its registration only (docs/architecture.md)."""
    from flanet.data import layouts

    for video in ("b", "a10", "a2"):
        _frame(tmp_path / "data" / "scans" / video / "1.png")
    with pytest.raises(DataError, match=r"no known data layout: expected img_list/ \+ mask_list/ \(authors\), .*"
                                        r"one folder of frames per video \(see docs/data.md\)"):
        discover(tmp_path / "data")
    registered = {"scans": layouts.Layout(f"{__name__}:_read_scans", "scans/<video>/ (made up)"), **layouts.LAYOUTS}
    monkeypatch.setattr(layouts, "LAYOUTS", registered)
    video_set = discover(tmp_path / "data")
    assert video_set.layout == "scans" and [v.id for v in video_set.videos] == ["a2", "a10", "b"]
    assert [f.name for f in video_set.video("b").frames] == ["1.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected scans/<video>/ \(made up\), img_list/"):
        discover(tmp_path / "empty")
    with pytest.raises(ValueError, match="layout 'scan': expected one of scans, authors"):
        layouts.layout_reader("scan")


def test_every_registered_layout_reader_imports_and_passes_over_an_empty_folder(tmp_path):
    from flanet.data.layouts import LAYOUTS, layout_reader

    assert list(LAYOUTS)[-1] == "files"  # video files and plain frame folders: tried last, they match most roots
    for name in LAYOUTS:
        assert layout_reader(name)(tmp_path, []) is None, name
