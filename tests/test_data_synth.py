"""Synthetic breast-ultrasound videos: layout, determinism, lesion appearance, hard frames, CLI."""

from __future__ import annotations

import csv
import hashlib

import cv2
import numpy as np
import pytest

from flanet import colours
from flanet.cli import main
from flanet.data import ClipDataset, DataError, discover
from flanet.data.check import check_dataset
from flanet.data.synth import CONTACT_SHEET, generate_dataset
from flanet.data.synth_render import _lesion_mask, plan_video


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synth") / "set", videos=6, frames=12, size=128, seed=0)


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_layout_labels_and_splits(synth_root):
    video_set = discover(synth_root)
    assert video_set.layout == "authors" and len(video_set.videos) == 6
    assert all(v.num_frames == 12 and v.num_masks == 12 and v.bboxes is not None for v in video_set.videos)
    assert sorted(sum(video_set.splits.values(), [])) == [v.id for v in video_set.videos]
    assert all(video_set.splits[name] for name in ("train", "val", "test"))
    assert {v["pathology"] for v in video_set.labels.values()} <= {"benign", "malignant"}
    assert {v["aln_metastasis"] for v in video_set.labels.values()} <= {"present", "absent"}
    sheet = cv2.imread(str(synth_root / CONTACT_SHEET))
    assert sheet is not None and sheet.shape[0] >= 6 * 128
    assert (sheet == colours.bgr(colours.TRUTH_RGB)).all(-1).any()  # mask contours in the ground-truth colour


def test_passes_data_check(synth_root):
    report = check_dataset(synth_root, progress=False)
    assert report.usable(strict=True), report.format()
    assert report.frames == 72 and report.image_sizes == {(128, 128): 72}


def test_deterministic_per_seed(tmp_path, synth_root):
    again = generate_dataset(tmp_path / "again", videos=6, frames=12, size=128, seed=0)
    assert _digest(again) == _digest(synth_root)
    other = generate_dataset(tmp_path / "other", videos=6, frames=12, size=128, seed=1)
    assert _digest(other)["img_list/video000/00000.jpg"] != _digest(synth_root)["img_list/video000/00000.jpg"]


def _lesion_contrast(root, video, frame):
    image = cv2.imread(str(root / "img_list" / video / frame), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    mask = cv2.imread(str(root / "mask_list" / video / frame.replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE) > 0
    ring = (cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0) & ~mask
    return (image[ring].mean() - image[mask].mean()) / image.std(), int(mask.sum())


def test_lesion_is_hypoechoic_except_in_hard_frames(synth_root):
    with (synth_root / "frame_info.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    contrast: dict[str, list[float]] = {"normal": [], "hard": []}
    for row in rows:
        value, area = _lesion_contrast(synth_root, row["video"], row["frame"])
        if area >= 20:
            contrast["normal" if row["hard"] == "none" else "hard"].append(value)
    assert {row["hard"] for row in rows} - {"none"}, "no hard frames were generated"
    assert min(contrast["normal"]) > 0.8  # clearly darker than its surroundings
    assert np.median(contrast["hard"]) < 0.4 * np.median(contrast["normal"])
    hard_first = [row for row in rows if row["hard"] != "none" and int(row["frame"][:5]) < 2]
    assert not hard_first  # the first two frames of a video are always easy


def _largest_lesion_height_over_width(plan, frames: int, size: int) -> float:
    masks = np.stack([_lesion_mask(plan, index, size) > 0.5 for index in range(frames)])  # (T, S, S)
    largest = masks[int(masks.sum((1, 2)).argmax())]
    rows, cols = np.nonzero(largest)
    return (np.ptp(rows) + 1) / (np.ptp(cols) + 1)


def test_malignant_lesions_are_taller_than_wide_and_benign_ones_wider():
    """BI-RADS orientation (issue 30 item 4): "not parallel" (taller than wide) is a malignant cue."""
    ratios: dict[bool, list[float]] = {True: [], False: []}
    for seed in range(40):
        plan = plan_video(np.random.default_rng(seed), 20, 128)
        ratios[plan.malignant].append(_largest_lesion_height_over_width(plan, 20, 128))
    malignant, benign = np.array(ratios[True]), np.array(ratios[False])
    assert len(malignant) >= 8 and len(benign) >= 8
    assert (malignant > 1).mean() >= 0.85 and np.median(malignant) > 1.15  # measured on the drawn masks
    assert (benign < 1).all()


def test_clip_dataset_on_synthetic_data(synth_root):
    sample = ClipDataset(discover(synth_root), "train", image_size=64, augment=True, with_previous=True)[5]
    assert sample["frames"].shape == (4, 3, 64, 64) and sample["mask"].shape == (1, 64, 64)


def test_refuses_non_empty_output_and_cli(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(tmp_path / "full", videos=1, frames=3, size=32)
    assert main(["data", "synth", str(tmp_path / "full"), "--videos", "1", "--frames", "3", "--size", "32"]) == 2
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    arguments = ["--videos", "2", "--frames", "3", "--size", "32", "--seed", "4"]
    assert main(["data", "synth", str(tmp_path / "new"), *arguments]) == 0
    assert "contact sheet" in capsys.readouterr().out
    assert len(discover(tmp_path / "new").videos) == 2
