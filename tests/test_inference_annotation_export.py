"""`flanet predict --export coco cvat`: the exports hold the predicted masks, and read back exactly."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import _disc_frames
from flanet.cli import main
from flanet.data import discover, read_mask
from flanet.data.check import check_dataset
from flanet.data.rle import decode_cvat, encode_cvat
from flanet.inference.runs.annotation_export import write_annotation_exports


def _masks(count: int, height: int = 40, width: int = 56, seed: int = 0) -> list[np.ndarray]:
    """Masks with blobs of random shape, one empty frame, two components, and lesion on the borders."""
    rng = np.random.default_rng(seed)
    masks = []
    for index in range(count):
        mask = np.zeros((height, width), bool)
        if index != 1:
            centre = rng.integers(8, [width - 8, height - 8])
            cv2.ellipse(mask.view(np.uint8), tuple(int(c) for c in centre), (int(rng.integers(3, 9)), 5),
                        float(rng.integers(0, 180)), 0, 360, 1, -1)
            mask |= rng.random((height, width)) < 0.02  # isolated pixels: runs of length 1
        if index == 2:
            mask[0, :] = mask[:, -1] = True  # touches the top and right borders
        masks.append(mask)
    return masks


def _write_frames(folder: Path, count: int, height: int = 40, width: int = 56) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"img_{i + 1}.jpg" for i in range(count)]
    for name, frame in zip(names, _disc_frames(count, height, width)):
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return names


def _coco_root(root: Path, frames: Path, coco: Path, video: str) -> Path:
    shutil.copytree(frames, root / "images" / video)
    (root / "annotations").mkdir(parents=True)
    shutil.copy(coco, root / "annotations" / "instances_default.json")
    return root


def _cvat_root(root: Path, frames: Path, xml: Path, video: str) -> Path:
    shutil.copytree(frames, root / video / "images")
    shutil.copy(xml, root / video / "annotations.xml")
    return root


@pytest.mark.parametrize("first", [False, True])
def test_cvat_rle_runs_start_with_background_and_decode_exactly(first: bool) -> None:
    mask = _masks(1, seed=3)[0]
    mask[mask.any(axis=1).argmax(), mask.any(axis=0).argmax()] = first  # the box's first pixel
    runs, (left, top, width, height) = encode_cvat(mask)
    assert (runs[0] == 0) == first and sum(runs) == width * height and all(r > 0 for r in runs[1:])
    np.testing.assert_array_equal(decode_cvat(runs, (left, top, width, height), *mask.shape), mask)
    assert encode_cvat(np.zeros((4, 5), bool)) is None
    with pytest.raises(ValueError, match="covers"):
        decode_cvat(runs[:-1], (left, top, width, height), *mask.shape)


def test_exports_read_back_pixel_for_pixel(tmp_path: Path) -> None:
    masks = _masks(5)
    names = _write_frames(tmp_path / "frames", 5)
    video_dir = tmp_path / "pred"
    (video_dir / "masks").mkdir(parents=True)
    for name, mask in zip(names, masks):
        cv2.imwrite(str(video_dir / "masks" / f"{Path(name).stem}.png"), mask.astype(np.uint8) * 255)
    frames = [(Path(name).stem, name) for name in names]
    written = write_annotation_exports(video_dir, "scan", frames, ["coco", "cvat"])
    assert written == [video_dir / "export" / "coco.json", video_dir / "export" / "cvat.xml"]

    coco = json.loads(written[0].read_text())
    assert [image["file_name"] for image in coco["images"]] == [f"scan/{name}" for name in names]
    assert len(coco["annotations"]) == 4 and coco["categories"][0]["name"] == "lesion"
    xml = ET.parse(written[1]).getroot()
    assert xml.findtext("version") == "1.1" and xml.findtext("meta/task/size") == "5"
    assert [t.find("mask").get("frame") for t in xml.iter("track")] == ["0", "2", "3", "4"]

    for layout, root in (("coco", _coco_root(tmp_path / "coco", tmp_path / "frames", written[0], "scan")),
                         ("cvat", _cvat_root(tmp_path / "cvat", tmp_path / "frames", written[1], "scan"))):
        video_set = discover(root)
        assert video_set.layout == layout and [v.id for v in video_set.videos] == ["scan"]
        video = video_set.videos[0]
        assert [f.name for f in video.frames] == names
        for expected, held in zip(masks, video.masks, strict=True):
            np.testing.assert_array_equal(read_mask(held), expected)
        report = check_dataset(root, progress=False)
        assert report.count("error") == 0 and report.masked_frames == 5 and report.lesion_frames == 4, report.format()


def test_cli_predict_export_both_formats_matches_its_masks(checkpoint: Path, tmp_path: Path) -> None:
    names = _write_frames(tmp_path / "scan", 4)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "scan"), "--out", str(out),
                 "--device", "cpu", "--no-progress", "--export", "cvat", "--export", "coco"]) == 0
    predicted = [read_mask(out / "masks" / f"{Path(name).stem}.png") for name in names]
    lesion = sum(int(mask.sum()) for mask in predicted)
    assert 0 < lesion < len(predicted) * predicted[0].size, lesion  # neither empty nor full: the test has teeth
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"][0]["exports"] == ["export/coco.json", "export/cvat.xml"]
    for layout, root in (("coco", _coco_root(tmp_path / "coco", tmp_path / "scan", out / "export" / "coco.json", "scan")),
                         ("cvat", _cvat_root(tmp_path / "cvat", tmp_path / "scan", out / "export" / "cvat.xml", "scan"))):
        video_set = discover(root)
        assert video_set.layout == layout
        for expected, held in zip(predicted, video_set.videos[0].masks, strict=True):
            np.testing.assert_array_equal(read_mask(held), expected)


def test_dataset_root_exports_per_video_and_resume_needs_the_same_formats(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for video in ("v1", "v2"):
        _write_frames(tmp_path / "data" / video, 3)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(checkpoint), str(tmp_path / "data"), "--out", str(out), "--device", "cpu",
            "--no-progress"]
    assert main([*args, "--export", "coco"]) == 0
    for video in ("v1", "v2"):
        coco = json.loads((out / video / "export" / "coco.json").read_text())
        assert [image["file_name"] for image in coco["images"]] == [f"{video}/img_{i}.jpg" for i in (1, 2, 3)]
        assert not (out / video / "export" / "cvat.xml").exists()
    capsys.readouterr()
    assert main(args) == 2  # resuming without --export: the finished videos were made with other settings
    assert "segmented with other settings (export" in capsys.readouterr().err


def test_export_is_refused_with_a_live_source(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", "--checkpoint", str(checkpoint), "--source", "0", "--export", "coco"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flanet predict: error: --export writes annotation files") and len(err.splitlines()) == 1
