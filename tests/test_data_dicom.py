"""DICOM cine reading: pydicom's real ultrasound cine, one file per transfer syntax / photometric, truncation."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from dicom_writer import IDENTIFIERS, colour_frames, write_cine
from flanet.data import ClipDataset, DataError, discover
from flanet.data.check import check_dataset
from flanet.data.dicom import Region, iter_dicom_frames, probe_dicom, read_dicom
from flanet.data.video_io import VideoFrameReader, iter_video_frames, probe_video

REAL_CINE = Path(get_testdata_file("examples_ybr_color.dcm"))


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[..., 0])


def test_real_ultrasound_cine_decodes_in_pydicoms_colours() -> None:
    info = probe_dicom(REAL_CINE)
    assert (info.frame_count, info.width, info.height) == (30, 320, 240)
    assert info.transfer_syntax == "JPEG Baseline (Process 1)" and info.photometric == "YBR_FULL_422"
    assert info.fps == pytest.approx(1000 / 33.333) and info.fps_source == "FrameTime"
    # Its regions (x 84..595, y 31..414) were not rescaled with the 320x240 pixels: whole frame, no mm.
    assert info.region is None and info.spacing_mm is None and "does not fit" in info.region_problem
    frames = list(iter_dicom_frames(REAL_CINE))
    assert len(frames) == 30 and all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    ds = pydicom.dcmread(REAL_CINE)
    for index, fragment in enumerate(generate_frames(ds.PixelData, number_of_frames=30)):
        if index % 10:
            continue
        reference = np.asarray(Image.open(io.BytesIO(fragment)).convert("RGB")).astype(int)  # the JPEG's own RGB
        assert np.abs(frames[index].astype(int) - reference).max() <= 3
        twice = convert_color_space(frames[index], "YBR_FULL", "RGB").astype(int)  # a second YBR -> RGB
        assert np.abs(twice - reference).max() > 20
    assert probe_video(REAL_CINE).frame_count == 30


CASES = [
    (ExplicitVRLittleEndian, "RGB", 0),
    (ImplicitVRLittleEndian, "RGB", 0),
    (ExplicitVRBigEndian, "RGB", 0),
    (ExplicitVRLittleEndian, "YBR_FULL", 1),
    (ExplicitVRLittleEndian, "YBR_FULL_422", 8),
    (JPEGBaseline8Bit, "YBR_FULL_422", 60),
    (JPEG2000Lossless, "RGB", 0),
    (RLELossless, "RGB", 0),
]


@pytest.mark.parametrize(("syntax", "photometric", "tolerance"), CASES, ids=lambda v: getattr(v, "name", v))
def test_colour_files_per_transfer_syntax(tmp_path: Path, syntax: str, photometric: str, tolerance: int) -> None:
    frames = colour_frames()
    path = write_cine(tmp_path / "cine.dcm", frames, syntax, photometric)
    info = probe_dicom(path)
    assert info.transfer_syntax == pydicom.uid.UID(syntax).name and info.photometric == photometric
    decoded = np.stack(list(iter_dicom_frames(path)))
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - frames)
    assert error.max() <= tolerance and error.mean() < 2.5
    reader = VideoFrameReader()
    np.testing.assert_array_equal(reader.read(path, 2), decoded[2])  # random access gives the same frame
    np.testing.assert_array_equal(reader.read(path, 0), decoded[0])


@pytest.mark.parametrize(
    ("syntax", "bits"), [(ExplicitVRLittleEndian, 8), (RLELossless, 8), (JPEG2000Lossless, 12),
                         (ExplicitVRBigEndian, 12), (JPEGBaseline8Bit, 8)],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_monochrome2_files(tmp_path: Path, syntax: str, bits: int) -> None:
    gray = _gray(colour_frames())
    path = write_cine(tmp_path / "gray.dcm", gray, syntax, "MONOCHROME2", bits_stored=bits)
    decoded = np.stack(list(iter_dicom_frames(path)))
    assert decoded.shape == (*gray.shape, 3)
    assert (decoded[..., 0] == decoded[..., 2]).all()
    assert np.abs(decoded[..., 0].astype(int) - gray).max() <= (12 if syntax == JPEGBaseline8Bit else 1)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    gray = _gray(colour_frames())
    path = write_cine(tmp_path / "m1.dcm", gray, ExplicitVRLittleEndian, "MONOCHROME1")
    assert pydicom.dcmread(path).PixelData[0] == 255 - gray.flat[0]  # stored inverted
    np.testing.assert_array_equal(np.stack(list(iter_dicom_frames(path)))[..., 1], gray)


def test_palette_colour_goes_through_the_lookup_table(tmp_path: Path) -> None:
    indices = _gray(colour_frames())
    path = write_cine(tmp_path / "palette.dcm", indices, ExplicitVRLittleEndian, "PALETTE COLOR")
    decoded = np.stack(list(iter_dicom_frames(path)))
    entries = indices.astype(np.uint16) * 257  # the 16-bit ramp of the writer, scaled (1, 0.5, 0.25)
    expected = np.stack([(entries * s).astype(np.uint16) >> 8 for s in (1.0, 0.5, 0.25)], axis=-1)
    np.testing.assert_array_equal(decoded, expected.astype(np.uint8))


def test_single_frame_file(tmp_path: Path) -> None:
    path = write_cine(tmp_path / "one.dcm", colour_frames(1)[0], ExplicitVRLittleEndian, "RGB")
    assert probe_dicom(path).frame_count == 1
    assert [f.shape for f in iter_video_frames(path)] == [(48, 64, 3)]


@pytest.mark.parametrize(
    ("rates", "fps", "source"),
    [((40.0, 10.0, 5.0), 25.0, "FrameTime"), ((None, 10.0, 5.0), 10.0, "CineRate"),
     ((None, None, 5.0), 5.0, "RecommendedDisplayFrameRate"), ((None, None, None), None, None)],
)
def test_frame_rate_order(tmp_path: Path, rates: tuple, fps: float | None, source: str | None) -> None:
    frame_time, cine, display = rates
    path = write_cine(tmp_path / "r.dcm", colour_frames(2), frame_time_ms=frame_time, cine_rate=cine,
                      display_rate=display)
    info = probe_dicom(path)
    assert (info.fps, info.fps_source) == (fps, source)


def test_ultrasound_region_and_calibration(tmp_path: Path) -> None:
    path = write_cine(tmp_path / "us.dcm", colour_frames(2), region=(8, 4, 55, 39), delta_cm=(0.01, 0.02))
    info = probe_dicom(path)
    assert info.region == Region(8, 4, 55, 39) and (info.region.width, info.region.height) == (48, 36)
    assert info.spacing_mm == pytest.approx((0.1, 0.2)) and info.calibration_source == "SequenceOfUltrasoundRegions"
    summary = info.summary()
    assert summary["image_region"] == [8, 4, 55, 39] and summary["calibration"]["mm_per_pixel_y"] == pytest.approx(0.2)


def test_identifiers_are_named_never_valued(tmp_path: Path) -> None:
    path = write_cine(tmp_path / "id.dcm", colour_frames(2), identifiers=True)
    summary = str(probe_dicom(path).summary())
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"):
        assert keyword in summary
    assert not any(value in summary for value in IDENTIFIERS.values())


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEGBaseline8Bit], ids=lambda v: v.name)
def test_truncated_file_is_a_clear_error(tmp_path: Path, syntax: str) -> None:
    data = write_cine(tmp_path / "full.dcm", colour_frames(), syntax, "RGB" if syntax != JPEGBaseline8Bit else "YBR_FULL_422").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut\.dcm: truncated"):
        read_dicom(cut)
    with pytest.raises(DataError, match=r"cut\.dcm"):
        list(iter_video_frames(cut))
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.dcm: empty"):
        probe_dicom(tmp_path / "empty.dcm")
    (tmp_path / "text.dcm").write_text("not dicom")
    with pytest.raises(DataError, match=r"text\.dcm: not a readable DICOM"):
        probe_dicom(tmp_path / "text.dcm")


def test_dicom_folder_layout_trains_and_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "cines"
    root.mkdir()
    frames = colour_frames(4)
    write_cine(root / "case1.dcm", frames, RLELossless, "RGB")
    write_cine(root / "case2.dcm", _gray(frames), JPEG2000Lossless, "MONOCHROME2")
    (root / "masks" / "case1").mkdir(parents=True)
    for index in (1, 3):
        mask = np.zeros((48, 64), np.uint8)
        mask[10:26, 8 + 4 * index : 24 + 4 * index] = 255
        cv2.imwrite(str(root / "masks" / "case1" / f"{index:06d}.png"), mask)
    video_set = discover(root)
    assert video_set.layout == "dicom" and [v.id for v in video_set.videos] == ["case1", "case2"]
    assert video_set.videos[0].num_frames == 4 and video_set.videos[0].num_masks == 2
    dataset = ClipDataset(video_set, split=None, image_size=32)
    assert len(dataset) == 2 and dataset[1]["frames"].shape == (3, 3, 32, 32)
    assert dataset[1]["mask"].sum() > 0 and tuple(dataset[1]["orig_size"].tolist()) == (48, 64)
    report = check_dataset(root, progress=False)
    assert report.usable() and report.frames == 8 and report.masked_frames == 2
    assert any("RLE Lossless, RGB, 4 frame(s)" in p.message for p in report.problems)
    cut = (root / "case1.dcm").read_bytes()
    (root / "case3.dcm").write_bytes(cut[: len(cut) // 2])
    report = check_dataset(root, progress=False)
    assert not report.usable()
    assert any(p.severity == "error" and p.path.name == "case3.dcm" for p in report.problems)


@pytest.mark.parametrize("spacing", [["0", "0"], ["-0.2", "0.1"], ["NaN", "0.1"], ["inf", "inf"], ["0.2"]])
def test_bad_pixel_spacing_is_set_aside_once_for_every_command(tmp_path: Path, spacing: list[str]) -> None:
    """Issue 22 item 6: PixelSpacing 0, negative, NaN or inf gave 0 mm, negative mm or invalid JSON."""
    import json

    import pydicom

    from flanet.data.dicom import dicom_problems

    path = write_cine(tmp_path / "s.dcm", colour_frames(2))
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = spacing if len(spacing) > 1 else spacing[0]
    ds.save_as(path)
    info = probe_dicom(path)
    assert info.spacing_mm is None and info.calibration_source is None
    assert info.calibration_problem is not None and "PixelSpacing" in info.calibration_problem
    json.loads(json.dumps(info.summary(), allow_nan=False))  # valid JSON
    warnings = [p.message for p in dicom_problems(path) if p.severity == "warning"]
    assert any("PixelSpacing" in w and "ignored" in w for w in warnings)


def test_good_pixel_spacing_is_kept(tmp_path: Path) -> None:
    import pydicom

    path = write_cine(tmp_path / "s.dcm", colour_frames(2))
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["0.2", "0.1"]  # rows 0.2 mm apart (y), columns 0.1 mm (x)
    ds.save_as(path)
    info = probe_dicom(path)
    assert info.spacing_mm == pytest.approx((0.1, 0.2)) and info.calibration_problem is None


@pytest.mark.parametrize(("frame_time", "fps", "source"), [(1e-9, 10.0, "CineRate"), (float("inf"), 10.0, "CineRate"),
                                                           (-5.0, 10.0, "CineRate")])
def test_impossible_frame_rate_is_set_aside_naming_the_attribute(tmp_path: Path, frame_time: float, fps: float,
                                                                 source: str) -> None:
    """Issue 22 item 9: FrameTime=1e-9 (1e12 frames/s) failed after the output folder was made."""
    path = write_cine(tmp_path / "r.dcm", colour_frames(2), frame_time_ms=frame_time, cine_rate=10.0)
    info = probe_dicom(path)
    assert (info.fps, info.fps_source) == (fps, source)
    assert info.rate_problem is not None and info.rate_problem.startswith("FrameTime")


def test_region_ending_one_past_the_last_pixel_keeps_its_calibration(tmp_path: Path) -> None:
    """Issue 27 item 2: MaxX1 / MaxY1 equal to the width / height (an exclusive end) lost the calibration."""
    path = write_cine(tmp_path / "us.dcm", colour_frames(2), region=(0, 0, 64, 48), delta_cm=(0.01, 0.02))
    info = probe_dicom(path)
    assert info.region == Region(0, 0, 63, 47) and info.region_problem is None
    assert info.spacing_mm == pytest.approx((0.1, 0.2)) and info.calibration_source == "SequenceOfUltrasoundRegions"
    assert [q.split(" ", 1)[0] for q in info.quirks] == ["RegionLocationMaxX1", "RegionLocationMaxY1"]
    assert info.summary()["header_quirks"] == list(info.quirks) and set(info.quirks) <= set(info.problems)
    # two past is no deviation we can read as meant: the region is still refused
    info = probe_dicom(write_cine(tmp_path / "off.dcm", colour_frames(2), region=(0, 0, 65, 47)))
    assert info.region is None and info.spacing_mm is None and "does not fit" in info.region_problem


@pytest.mark.parametrize(("written", "meant"), [("ISO IR 100", "ISO_IR 100"), ("ISO-IR 192", "ISO_IR 192"),
                                                ("ISO_IR 999", "ISO_IR 6")])
def test_misspelled_character_set_is_read_as_meant_and_said_once(
    tmp_path: Path, written: str, meant: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cine(tmp_path / "us.dcm", colour_frames(2), region=(0, 0, 63, 47), identifiers=True)
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = written
    with pytest.warns(UserWarning):  # pydicom itself objects while we write the bad value
        ds.save_as(path)
    caplog.set_level("WARNING")
    caplog.clear()
    ds, info = read_dicom(path)
    assert info.quirks == (f"SpecificCharacterSet '{written}' is not a defined term: read as '{meant}'",)
    assert ds.SpecificCharacterSet == meant and str(ds.PatientName) == "Doe^Jane"
    assert info.spacing_mm == pytest.approx((0.1, 0.2))  # the calibration is kept
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]  # said once, by us


def test_odd_headers_are_findings_of_their_file_not_a_crash(tmp_path: Path) -> None:
    """Issue 27 item 2: an empty RegionSpatialFormat stopped `flanet data check` with a TypeError."""
    from flanet.cli import main

    root = tmp_path / "cines"
    root.mkdir()
    write_cine(root / "good.dcm", colour_frames(4), region=(0, 0, 63, 47))
    odd = write_cine(root / "odd.dcm", colour_frames(4), region=(0, 0, 63, 47))
    ds = pydicom.dcmread(odd)
    ds.SequenceOfUltrasoundRegions[0].RegionSpatialFormat = None
    ds.save_as(odd)
    info = probe_dicom(odd)
    assert info.region is None and info.quirks == (
        "ultrasound region 1: RegionSpatialFormat empty or not an integer: region skipped",)
    broken = write_cine(root / "broken.dcm", colour_frames(4))
    ds = pydicom.dcmread(broken)
    ds.Columns = None  # an empty required attribute
    ds.save_as(broken)
    with pytest.raises(DataError, match="malformed DICOM header"):
        probe_dicom(broken)
    report = check_dataset(root, progress=False)
    by_file = {p.path.name: p for p in report.problems if p.severity in ("error", "warning")}
    assert by_file["odd.dcm"].severity == "warning" and "RegionSpatialFormat" in by_file["odd.dcm"].message
    assert by_file["broken.dcm"].severity == "error" and "malformed DICOM header" in by_file["broken.dcm"].message
    assert "good.dcm" not in by_file
    assert main(["data", "check", str(root), "-q"]) == 1  # a finding, not a crash
