"""`flanet predict` on DICOM cines: imaging region, millimetre columns, de-identified outputs, truncation."""

from __future__ import annotations

import csv
import json
import math
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.uid import JPEGBaseline8Bit

from dicom_writer import IDENTIFIERS, colour_frames, write_cine
from flanet.cli import main
from flanet.data.dicom import Region, iter_dicom_frames
from flanet.inference import VideoSegmenter, predict_to_folder
from flanet.inference.runs.measurements import FrameGeometry, feret_diameter
from flanet.models import load_checkpoint

REAL_CINE = Path(get_testdata_file("examples_ybr_color.dcm"))
REGION = (8, 4, 55, 39)  # x0, y0, x1, y1 inclusive: 48 x 36 pixels of the 64 x 48 frames


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> torch.nn.Module:
    return load_checkpoint(checkpoint).model


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _screen_frames(count: int = 4) -> np.ndarray:
    """Frames with scanner 'text' (white bars) outside the imaging region."""
    frames = colour_frames(count)
    frames[:, :4] = 255
    frames[:, :, 56:] = 255
    return frames


def test_feret_diameter_by_hand() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:13] = True  # 10 x 4 pixel rectangle
    assert feret_diameter(mask) == pytest.approx(math.hypot(10, 4))
    assert feret_diameter(mask, (0.5, 0.25)) == pytest.approx(math.hypot(5, 1))
    mask[15, 25] = True  # a second, one-pixel lesion: the largest lesion's diameter counts
    assert feret_diameter(mask) == pytest.approx(math.hypot(10, 4))
    assert feret_diameter(np.zeros((4, 4), bool)) == 0.0
    geometry = FrameGeometry(Region(3, 2, 29, 19), (0.5, 0.25))
    measures = geometry.measure(mask[:, :] & (np.arange(30)[None] < 20))
    assert geometry.columns == ["area_mm2", "max_diameter_mm", "centroid_x_mm", "centroid_y_mm"]
    assert measures["area_mm2"] == pytest.approx(40 * 0.125)
    assert measures["centroid_x_mm"] == pytest.approx((7.5 - 3) * 0.5)
    assert measures["centroid_y_mm"] == pytest.approx((3.5 - 2) * 0.25)
    assert FrameGeometry().columns == ["area_px2", "max_diameter_px", "centroid_x_px", "centroid_y_px"]


def test_real_cine_end_to_end(checkpoint: Path, model: torch.nn.Module, tmp_path: Path) -> None:
    out = predict_to_folder(checkpoint, REAL_CINE, tmp_path / "out", device="cpu", progress=False)
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 30
    expected = VideoSegmenter(model, 64, "cpu").stream(islice(iter_dicom_frames(REAL_CINE), 4))  # causal: a prefix
    for mask_path, result in zip(masks, expected):
        np.testing.assert_array_equal(cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED) == 255, result.mask)
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.01)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    ok, bgr = capture.read()
    capture.release()
    first = next(iter_dicom_frames(REAL_CINE)).astype(int)
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    drawn = cv2.dilate(mask, np.ones((7, 7), np.uint8)) != cv2.erode(mask, np.ones((7, 7), np.uint8))
    drawn[:40] = True  # the contour and the frame label; elsewhere the overlay keeps the cine's colours
    difference = np.abs(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(int) - first)[~drawn]
    assert ok and difference.mean(axis=0).max() < 3
    rows = _rows(out / "frames.csv")
    assert len(rows) == 30 and {"area_px2", "max_diameter_px", "centroid_x_px"} <= set(rows[0])  # no calibration
    video = json.loads((out / "summary.json").read_text())["videos"][0]
    assert video["input_fps"] == pytest.approx(30.0, abs=0.01) and video["measurement_unit"] == "px"
    assert "PatientName" in video["dicom"]["deidentification"]["withheld_tags"]
    assert "does not fit" in video["dicom"]["region_problem"]


def test_region_crop_paste_back_and_millimetres(checkpoint: Path, model: torch.nn.Module, tmp_path: Path) -> None:
    frames = _screen_frames()
    cine = write_cine(tmp_path / "cine.dcm", frames, region=REGION, delta_cm=(0.01, 0.02))
    out = predict_to_folder(checkpoint, cine, tmp_path / "out", device="cpu", progress=False, threshold=1e-6)
    x0, y0, x1, y1 = REGION
    crops = [np.ascontiguousarray(f[y0 : y1 + 1, x0 : x1 + 1]) for f in frames]
    expected = list(VideoSegmenter(model, 64, "cpu", threshold=1e-6).stream(crops))
    inside = np.zeros((48, 64), bool)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    for index, result in enumerate(expected):
        mask = cv2.imread(str(out / "masks" / f"{index + 1:06d}.png"), cv2.IMREAD_UNCHANGED) == 255
        assert mask.shape == (48, 64) and not mask[~inside].any()  # full-frame mask, nothing on the screen text
        np.testing.assert_array_equal(mask[inside].reshape(36, 48), result.mask)
    rows = _rows(out / "frames.csv")
    for row in rows:  # threshold ~0: the lesion is the whole 48 x 36 region
        assert int(row["area_px"]) == 48 * 36
        assert float(row["area_mm2"]) == pytest.approx(48 * 36 * 0.1 * 0.2)
        assert float(row["max_diameter_mm"]) == pytest.approx(math.hypot(48 * 0.1, 36 * 0.2))
        assert float(row["centroid_x_mm"]) == pytest.approx(23.5 * 0.1)
        assert float(row["centroid_y_mm"]) == pytest.approx(17.5 * 0.2)
        assert float(row["centroid_x"]) == pytest.approx(x0 + 23.5)
    video = json.loads((out / "summary.json").read_text())["videos"][0]
    assert video["model_region"] == list(REGION) and video["mm_per_pixel"] == pytest.approx([0.1, 0.2])
    assert video["largest_area_mm2"] == pytest.approx(48 * 36 * 0.02) and video["largest_area_mm2_frame"] == 0
    assert video["input_fps"] == pytest.approx(25.0) and video["dicom"]["fps_source"] == "FrameTime"
    full = predict_to_folder(checkpoint, cine, tmp_path / "full", device="cpu", progress=False, full_frame=True)
    reference = list(VideoSegmenter(model, 64, "cpu").stream(list(frames)))
    mask = cv2.imread(str(full / "masks" / "000004.png"), cv2.IMREAD_UNCHANGED) == 255  # frame 3 (0-based) is named 000004
    np.testing.assert_array_equal(mask, reference[3].mask)
    assert not np.array_equal(reference[3].probability[inside].reshape(36, 48), expected[3].probability)
    assert json.loads((full / "summary.json").read_text())["videos"][0]["model_region"] is None


def test_outputs_never_name_the_patient(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cine = write_cine(tmp_path / "cine.dcm", _screen_frames(3), JPEGBaseline8Bit, "YBR_FULL_422",
                      region=REGION, identifiers=True)
    out = tmp_path / "result"
    args = ["predict", "--checkpoint", str(checkpoint), str(cine), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"overlay.mp4", "frames.csv", "summary.json", "000002.png"}
    for value in IDENTIFIERS.values():
        needles = {value, value.replace("^", " "), *value.split("^")}
        for needle in needles:
            assert needle not in printed.out + printed.err
            assert all(needle not in str(p.relative_to(tmp_path)) for p in files)
            assert all(needle.encode() not in p.read_bytes() for p in files), needle
    withheld = json.loads((out / "summary.json").read_text())["videos"][0]["dicom"]["deidentification"]
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
            "ReferringPhysicianName", "OperatorsName"} <= set(withheld["withheld_tags"])


def test_truncated_cine_is_a_clear_error_and_writes_nothing(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = REAL_CINE.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(checkpoint), str(cut), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("flanet predict: error: truncated DICOM file") and f"({cut})" in err
    assert "Traceback" not in err and not out.exists()


def test_folder_of_cines_is_an_archive_with_millimetres(checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "cines"
    root.mkdir()
    for name in ("case1", "case2"):
        write_cine(root / f"{name}.dcm", _screen_frames(3), region=REGION, delta_cm=(0.01, 0.02))
    base = ["predict", "--checkpoint", str(checkpoint), str(root), "--no-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a"), "--threshold", "1e-6"]) == 0
    rows = _rows(tmp_path / "a" / "case2" / "frames.csv")
    assert float(rows[0]["area_mm2"]) == pytest.approx(48 * 36 * 0.02)
    assert main([*base, "--out", str(tmp_path / "b"), "--full-frame"]) == 0
    video = json.loads((tmp_path / "b" / "case1" / "summary.json").read_text())
    assert video["model_region"] is None and video["measurement_unit"] == "mm"


def test_evaluate_scores_a_folder_of_cines(checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "cines"
    (root / "masks" / "case1").mkdir(parents=True)
    frames = _screen_frames(4)
    write_cine(root / "case1.dcm", frames, region=REGION)
    for index in (1, 3):  # masks at full-frame size, numbered by frame
        mask = np.zeros((48, 64), np.uint8)
        mask[10:26, 8 + 4 * index : 24 + 4 * index] = 255
        cv2.imwrite(str(root / "masks" / "case1" / f"{index:06d}.png"), mask)
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "all", "--out", str(out),
            "--resamples", "20", "--no-progress", "--jobs", "1", "--num-workers", "0", "--device", "cpu"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_frames"] == 2 and metrics["num_videos"] == 1 and 0 <= metrics["dice"] <= 1
