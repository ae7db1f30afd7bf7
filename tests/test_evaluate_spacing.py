"""Centre error in millimetres: each DICOM cine's calibration, else `flanet evaluate --pixel-spacing`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from dicom_writer import colour_frames, write_cine
from flanet.cli import main
from flanet.data import Video, discover
from flanet.evaluation.spacing import resolve_spacing

SHAPE = (48, 64)  # H, W of the cines
REGION = (8, 4, 55, 39)  # ultrasound region that fits the frame: its deltas are the calibration
TRUTH = (slice(10, 20), slice(20, 30))  # 10 x 10 lesion: bbox centre (x, y) = (25, 15)
# per video and frame, the prediction is the lesion shifted by (dx, dy) pixels: centroid error = hypot(dx, dy)
SHIFTS = {"case1": [(3, 4), (6, 0)], "case2": [(0, 2), (0, 2)]}
CASE1_MM = (math.hypot(3 * 0.1, 4 * 0.2), 6 * 0.1)  # PhysicalDeltaX 0.01 cm, PhysicalDeltaY 0.02 cm


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture(scope="module")
def cines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """case1.dcm with an ultrasound region of 0.1 x 0.2 mm pixels, case2.dcm without calibration; predictions."""
    root = tmp_path_factory.mktemp("spacing")
    data, preds = root / "cines", root / "preds"
    data.mkdir()
    write_cine(data / "case1.dcm", colour_frames(2), region=REGION, delta_cm=(0.01, 0.02))
    write_cine(data / "case2.dcm", colour_frames(2))
    for video, shifts in SHIFTS.items():
        for index, (dx, dy) in enumerate(shifts):
            mask = np.zeros(SHAPE, np.uint8)
            mask[TRUTH] = 255
            _write(data / "masks" / video / f"{index:06d}.png", mask)
            _write(preds / video / f"{index + 1:06d}.png", np.roll(mask, (dy, dx), axis=(0, 1)))
    return data, preds


def _evaluate(cines: tuple[Path, Path], out: Path, *extra: str) -> tuple[dict, dict[str, dict[str, str]], str]:
    data, preds = cines
    assert main(["evaluate", "--pred-dir", str(preds), "--data", str(data), "--split", "all", "--out", str(out),
                 "--resamples", "20", "--no-progress", "--jobs", "1", *extra]) == 0  # no split lists: every video
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    with (out / "per_video.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["video"]: row for row in csv.DictReader(handle)}
    return metrics, rows, (out / "table.md").read_text(encoding="utf-8")


def test_dicom_calibration_reaches_the_videos(cines: tuple[Path, Path], tmp_path: Path) -> None:
    video_set = discover(cines[0])
    assert video_set.video("case1").pixel_spacing == pytest.approx((0.2, 0.1))  # (row mm, column mm)
    assert video_set.video("case1").spacing_source == "SequenceOfUltrasoundRegions"
    assert video_set.video("case2").pixel_spacing is None
    ds = pydicom.dcmread(cines[0] / "case2.dcm")
    ds.PixelSpacing = [0.3, 0.4]  # row spacing, column spacing
    ds.save_as(tmp_path / "case3.dcm")
    video = discover(tmp_path).video("case3")
    assert video.pixel_spacing == pytest.approx((0.3, 0.4)) and video.spacing_source == "PixelSpacing"


def test_centre_error_in_mm_from_the_dicom_calibration(cines: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    metrics, rows, table = _evaluate(cines, tmp_path / "eval")
    assert f"loc_error_mm {sum(CASE1_MM) / 2:.3f} [" in capsys.readouterr().out
    assert metrics["loc_error_px"] == pytest.approx((5 + 6 + 2 + 2) / 4)
    assert metrics["loc_error_mm"] == pytest.approx(sum(CASE1_MM) / 2)  # case1's frames only
    localisation = metrics["video_behaviour"]["localisation"]
    assert localisation["videos_with_spacing"] == 1 and localisation["frames_with_spacing"] == 2
    assert localisation["spacing_sources"] == {"DICOM SequenceOfUltrasoundRegions": 1, "none": 1}
    assert float(rows["case1"]["loc_error_mm"]) == pytest.approx(sum(CASE1_MM) / 2)
    assert float(rows["case1"]["spacing_row_mm"]) == pytest.approx(0.2)
    assert float(rows["case1"]["spacing_column_mm"]) == pytest.approx(0.1)
    assert rows["case2"]["loc_error_mm"] == rows["case2"]["spacing_source"] == ""
    assert float(rows["case2"]["loc_error_px"]) == pytest.approx(2)
    assert "1 of 2 videos carry a pixel spacing (1 DICOM SequenceOfUltrasoundRegions)" in table
    assert f"{sum(CASE1_MM) / 2:.3f}" in table


def test_pixel_spacing_flag_fills_videos_without_calibration(cines: tuple[Path, Path], tmp_path: Path) -> None:
    metrics, rows, _ = _evaluate(cines, tmp_path / "eval", "--pixel-spacing", "0.5")
    assert metrics["loc_error_mm"] == pytest.approx((sum(CASE1_MM) + 2 * 0.5 + 2 * 0.5) / 4)
    assert rows["case2"]["spacing_source"] == "given" and float(rows["case2"]["loc_error_mm"]) == pytest.approx(1.0)
    assert float(rows["case1"]["spacing_column_mm"]) == pytest.approx(0.1)  # the file's own calibration wins
    assert metrics["video_behaviour"]["localisation"]["videos_with_spacing"] == 2


@pytest.mark.parametrize("value", ["0", "-1", "a", "0.1,0.2,0.3", "nan"])
def test_bad_pixel_spacing_is_refused(value: str, cines: tuple[Path, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--pred-dir", str(cines[1]), "--data", str(cines[0]), "--out", str(tmp_path / "o"),
              "--pixel-spacing", value])
    assert stop.value.code == 2 and "--pixel-spacing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resolve_spacing_rows_and_columns() -> None:
    videos = [Video("a", [], [], pixel_spacing=(0.2, 0.1), spacing_source="PixelSpacing"), Video("b", [], [])]
    assert resolve_spacing(videos, None).keys() == {"a"}
    given = resolve_spacing(videos, {"b": (0.3, 0.4)})["b"]
    assert (given.row_mm, given.column_mm, given.source) == (0.3, 0.4, "given")
    with pytest.raises(ValueError, match="'b'"):
        resolve_spacing(videos, (0.0, 1.0))
