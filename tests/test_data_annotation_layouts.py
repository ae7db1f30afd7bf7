"""Layouts read from annotation files and the last public video layouts: cvat, coco, cva-net, vtus."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.data import ClipDataset, DataError, discover, read_mask
from flanet.data.check import check_dataset
from flanet.data.rle import coco_runs, encode_coco

SIZE = (30, 40)  # (H, W)


def _frames(folder: Path, count: int, ext: str = ".png", name: str = "{:06d}") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [name.format(i) + ext for i in range(count)]
    for n in names:
        cv2.imwrite(str(folder / n), np.full((*SIZE, 3), 90, np.uint8))
    return names


def _cvat(path: Path, tracks: str, size: int = 4, extra_meta: str = "") -> Path:
    path.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><size>{size}</size><mode>interpolation</mode>{extra_meta}
<original_size><width>{SIZE[1]}</width><height>{SIZE[0]}</height></original_size></task></meta>
{tracks}</annotations>""")
    return path


def test_cvat_polygons_are_read_within_one_boundary_pixel_and_gaps_are_reported(tmp_path: Path) -> None:
    _frames(tmp_path / "images", 4, name="frame_{:06d}")
    square = "10,5;30,5;30,20;10,20"
    _cvat(tmp_path / "annotations.xml", f"""
<track id="0" label="lesion" source="manual">
 <polygon frame="0" keyframe="1" outside="0" occluded="0" points="{square}" z_order="0"/>
 <polygon frame="1" keyframe="0" outside="0" occluded="0" points="{square}" z_order="0"/>
 <polygon frame="2" keyframe="1" outside="1" occluded="0" points="{square}" z_order="0"/>
</track>
<track id="1" label="other" source="manual">
 <polygon frame="0" keyframe="1" outside="0" occluded="0" points="1,1;4,1;4,4" z_order="0"/>
 <polygon frame="3" keyframe="1" outside="0" occluded="0" points="1,1;4,1;4,4" z_order="0"/>
 <box frame="0" keyframe="1" outside="0" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5" z_order="0"/>
</track>""")
    video_set = discover(tmp_path)
    assert video_set.layout == "cvat" and [v.id for v in video_set.videos] == [tmp_path.name]
    masks = [read_mask(m) for m in video_set.videos[0].masks]
    exact = np.zeros(SIZE, bool)
    exact[5:20, 10:30] = True  # the square's pixels in pixel-edge coordinates
    ring = exact ^ cv2.erode(exact.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ring |= cv2.dilate(exact.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~exact
    for mask in masks[:2]:
        differ = mask[:, 12:] ^ exact[:, 12:]  # away from the other track's triangle
        assert not (differ & ~ring[:, 12:]).any()  # only pixels of the square's boundary ring may differ
    assert not masks[2][:, 12:].any()  # outside from frame 2 on
    messages = [str(p) for p in video_set.notes]
    assert any("track 1 lists frame 0 but not 1..2" in m and "annotations.xml" in m for m in messages)
    assert any("1 <box> shape(s) ignored" in m for m in messages)
    assert not any("sort differently" in m for m in messages)  # zero-padded names: both orders agree


@pytest.mark.parametrize(("content", "message"), [
    ("<annotations><meta><task><size>4", "malformed CVAT XML"),
    ("<root/>", "not a CVAT XML file"),
    ('<annotations><image id="0" name="a.png"/></annotations>', "CVAT for images"),
    ("<annotations><meta><project><tasks/></project></meta></annotations>", "CVAT project export"),
])
def test_malformed_cvat_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    content: str, message: str) -> None:
    _frames(tmp_path / "data" / "images", 4)
    xml = tmp_path / "data" / "annotations.xml"
    xml.write_text(content)
    with pytest.raises(DataError, match=message) as raised:
        discover(tmp_path / "data")
    assert raised.value.path == xml
    assert main(["evaluate", "--pred-dir", str(tmp_path), "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("flanet evaluate: error: ") and str(xml) in err and message in err


def test_cvat_frames_whose_natural_and_lexicographic_orders_differ_are_warned(tmp_path: Path) -> None:
    for name in ("img_2.png", "img_10.png"):
        _frames(tmp_path / "images", 1, name=name.removesuffix(".png"))
    _cvat(tmp_path / "annotations.xml", "", size=2)
    video = discover(tmp_path)
    assert [f.name for f in video.videos[0].frames] == ["img_2.png", "img_10.png"]
    assert [p.path for p in video.notes if "sort differently" in p.message] == [tmp_path / "images"]


def test_cvat_bad_shapes_and_frame_count_are_reported_on_the_file(tmp_path: Path) -> None:
    _frames(tmp_path / "v1" / "images", 4)
    _cvat(tmp_path / "v1" / "annotations.xml", """
<track id="0" label="lesion" source="auto">
 <mask frame="1" keyframe="1" outside="0" occluded="0" rle="3, 4" left="2" top="2" width="3" height="3" z_order="0"/>
 <mask frame="9" keyframe="1" outside="0" occluded="0" rle="0, 4" left="2" top="2" width="2" height="2" z_order="0"/>
</track>""")
    _frames(tmp_path / "v2" / "images", 3)
    _cvat(tmp_path / "v2" / "annotations.xml", "", size=4)
    report = check_dataset(tmp_path, progress=False)
    assert report.layout is None and report.count("error") == 1
    lines = report.format()
    assert f"{tmp_path / 'v2' / 'annotations.xml'}: the XML describes 4 frames, its images/ folder holds 3" in lines
    (tmp_path / "v2" / "annotations.xml").unlink()
    (tmp_path / "v2" / "images").rename(tmp_path / "v2" / "frames")
    report = check_dataset(tmp_path, progress=False)
    errors = [str(p) for p in report.problems if p.severity == "error"]
    assert len(errors) == 2 and all(str(tmp_path / "v1" / "annotations.xml") in e for e in errors), errors
    assert any("covers 7 pixels, its box 3x3 has 9" in e for e in errors)
    assert any("frame 9 is outside 0..3" in e for e in errors)


def _coco(images: list[tuple[int, str]], annotations: list[dict]) -> dict:
    return {"images": [{"id": i, "file_name": f, "width": SIZE[1], "height": SIZE[0]} for i, f in images],
            "annotations": annotations, "categories": [{"id": 1, "name": "lesion"}]}


def test_coco_layout_polygons_rle_context_frames_and_splits(tmp_path: Path) -> None:
    _frames(tmp_path / "images" / "a", 3, ".jpg")
    _frames(tmp_path / "images" / "b", 2, ".jpg")
    (tmp_path / "annotations").mkdir()
    square = [5, 5, 15, 5, 15, 15, 5, 15]
    counts = [SIZE[0] * 20 + 3, 4, SIZE[0] * SIZE[1] - SIZE[0] * 20 - 7]  # column-major: 4 pixels of column 20
    train = _coco([(1, "a/000000.jpg"), (2, "a/000001.jpg")], [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [square]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": list(SIZE), "counts": counts}},
        {"id": 3, "image_id": 7, "category_id": 1, "segmentation": [square]},
    ])
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(train))
    val = _coco([(1, "b/000000.jpg"), (2, "b/000005.jpg")], [])
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(val))
    video_set = discover(tmp_path)
    assert video_set.layout == "coco" and video_set.splits == {"train": ["a"], "val": ["b"]}
    a = video_set.video("a")
    assert a.masks[2] is None and read_mask(a.masks[1]).sum() == 0  # context frame; listed lesion-free frame
    mask = read_mask(a.masks[0])
    assert mask[3:7, 20].all() and mask[8:12, 8:12].all() and mask.sum() < 4 + 12 * 12
    messages = [str(p) for p in video_set.notes]
    assert any("ERROR" in m and "instances_train.json" in m and "image_id 7" in m for m in messages)
    assert any("000005.jpg" in m and "instances_val.json" in m for m in messages)
    assert video_set.split_files["train"] == tmp_path / "annotations" / "instances_train.json"


def test_malformed_coco_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _frames(tmp_path / "images" / "a", 3)
    (tmp_path / "annotations").mkdir()
    bad = tmp_path / "annotations" / "instances_default.json"
    bad.write_text('{"images": [}')
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR   {bad}: malformed COCO file: Expecting value (line 1, column 13)" in out
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a/x.png"}], "annotations": []}))
    with pytest.raises(DataError, match=r"images\[0\] needs an integer id") as raised:
        discover(tmp_path)
    assert raised.value.path == bad


def test_cva_net_layout_is_box_only_and_refused_for_mask_training(tmp_path: Path) -> None:
    _frames(tmp_path / "rawframes" / "benign" / "v1", 4)
    _frames(tmp_path / "rawframes" / "malignant" / "v2", 3)
    train = _coco([(1, "benign/v1/000001.png"), (2, "benign/v1/000002.png")],
                  [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 10, 8]},
                   {"id": 2, "image_id": 1, "category_id": 1, "bbox": [6, 2, 20, 4]}])
    (tmp_path / "imagenet_vid_train_15frames.json").write_text(json.dumps(train))
    val = _coco([(1, "malignant/v2/000000.png")], [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 20, 15, 5]}])
    (tmp_path / "imagenet_vid_val.json").write_text(json.dumps(val))
    video_set = discover(tmp_path)
    assert video_set.layout == "cva-net" and video_set.box_only
    assert video_set.splits["train"] == ["benign/v1"] and video_set.splits["val"] == ["malignant/v2"]
    v1 = video_set.video("benign/v1")
    assert v1.bboxes == [None, (4.0, 2.0, 26.0, 13.0), None, None] and v1.num_masks == 0
    with pytest.raises(DataError, match="box-only"):
        ClipDataset(video_set, "train", image_size=32)
    with pytest.raises(DataError, match="has lesion boxes but no masks"):
        video_set.ensure_masks(None)
    report = check_dataset(tmp_path, progress=False)
    errors = [str(p) for p in report.problems if p.severity == "error"]
    assert errors == [f"ERROR   {tmp_path / 'rawframes' / 'malignant' / 'v2' / '000000.png'}: "
                      "box (30.0, 20.0, 45.0, 25.0) lies outside the 40x30 image"]
    assert any("box-only" in str(p) for p in report.problems) and report.lesion_frames == 2


def test_vtus_layout_pairs_split_folders_with_their_gt_folders(tmp_path: Path) -> None:
    for split, videos in (("Train", ["1", "2"]), ("Test", ["1"])):
        for video in videos:
            names = _frames(tmp_path / split / video, 3, ".jpg")
            for name in names[:2] if (split, video) == ("Train", "2") else names:
                mask = np.zeros(SIZE, np.uint8)
                mask[4:9, 6:12] = 255
                (tmp_path / f"{split}_GT" / video).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / f"{split}_GT" / video / name.replace(".jpg", ".png")), mask)
    video_set = discover(tmp_path)
    assert video_set.layout == "vtus"
    assert [v.id for v in video_set.videos] == ["Test/1", "Train/1", "Train/2"]
    assert video_set.splits == {"Test": ["Test/1"], "Train": ["Train/1", "Train/2"],
                                "test": ["Test/1"], "train": ["Train/1", "Train/2"]}
    assert video_set.video("Train/2").masks[2] is None and video_set.video("Test/1").num_masks == 3
    report = check_dataset(tmp_path, progress=False)
    assert report.count("error") == 0 and report.masked_frames == 8
    assert [str(p.path) for p in report.problems if "missing mask" in p.message] == [
        str(tmp_path / "Train" / "2" / "000002.jpg")]
    assert len(ClipDataset(video_set, "train", image_size=32)) == 5
    # each split once in the summary, its alias beside it, counts in the singular where one
    assert report.split_sizes == {"Test (test)": (1, 3), "Train (train)": (2, 6)}
    assert "splits        Test (test) 1 video / 3 frames, Train (train) 2 videos / 6 frames" in report.format()


def test_coco_run_lengths_match_pycocotools_and_bad_rle_is_an_error_not_a_crash(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        flat = mask.ravel(order="F").astype(np.int8)  # COCO runs are column-major, background first
        runs = np.diff(np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))).tolist()
        assert coco_runs(encode_coco(mask)["counts"]) == ([0] if flat[0] else []) + runs
    _frames(tmp_path / "images" / "a", 3)
    (tmp_path / "annotations").mkdir()
    too_long = encode_coco(np.ones((SIZE[0] * 2, SIZE[1]), bool))["counts"].decode()  # twice the frame
    coco = _coco([(1, "a/000000.png"), (2, "a/000001.png")], [
        {"id": 1, "image_id": 1, "segmentation": {"size": list(SIZE), "counts": too_long}},
        {"id": 2, "image_id": 2, "segmentation": {"size": list(SIZE), "counts": [5, 3]}},
        {"id": 3, "image_id": 2, "segmentation": {"size": list(SIZE), "counts": "\x01"}},
        {"id": 4, "image_id": 2, "segmentation": [[1, 1, 5, 1, float("nan"), 4]]},
    ])
    (tmp_path / "annotations" / "x.json").write_text(json.dumps(coco))
    report = check_dataset(tmp_path, progress=False)
    errors = [p.message for p in report.problems if p.severity == "error"]
    assert [e.split(":")[0] for e in errors] == ["malformed annotation 1 (a/000000.png)",
                                                 "malformed annotation 2 (a/000001.png)",
                                                 "malformed annotation 3 (a/000001.png)",
                                                 "malformed annotation 4 (a/000001.png)"], errors
    assert "cover 2400 pixels" in errors[0] and "cover 8 pixels" in errors[1] and "outside the encoding" in errors[2]
    assert "finite numbers" in errors[3]
