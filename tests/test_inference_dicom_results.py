"""`flanet predict --dicom-out seg sr`: DICOM Segmentation and TID 1500 SR of a cine, checked by dciodvfy and
read back by highdicom, and the identity modes (source / deidentify)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicom_checks import dciodvfy_errors
from dicom_writer import IDENTIFIERS, colour_frames, write_cine
from flanet import __version__
from flanet.cli import main
from flanet.data.dicom_identity import DicomIdentity
from flanet.fileio import file_sha256
from flanet.inference.runs.dicom_seg import (
    Algorithm,
    build_segmentation,
    fractional_levels,
    mask_level,
    segmentation_masks,
)
from flanet.inference.runs.dicom_sr import report_measurements

REAL_CINE = Path(get_testdata_file("examples_ybr_color.dcm"))
THRESHOLD = "0.65"  # the small random model's probabilities on the real cine lie around 0.45..0.72: partial masks
REGION = (8, 4, 55, 39)


def _png_masks(out: Path) -> dict[int, np.ndarray]:
    return {int(p.stem): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == 255 for p in sorted((out / "masks").glob("*.png"))}


def _csv_rows(out: Path) -> list[dict[str, str]]:
    with (out / "frames.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _largest(rows: list[dict[str, str]], column: str) -> tuple[float, int]:
    """The CSV's largest value of ``column`` and its 1-based frame (the first frame holding it)."""
    values = [(float(row[column]) if row[column] else -1.0, int(row["frame"]) + 1) for row in rows]
    best = max(value for value, _ in values)
    return best, next(frame for value, frame in values if value == best)


@pytest.fixture(scope="module")
def real_run(small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "out"
    code = main(["predict", "--checkpoint", str(small_checkpoint), str(REAL_CINE), "--out", str(out), "--device", "cpu",
                 "--no-progress", "--threshold", THRESHOLD, "--dicom-out", "seg", "sr"])
    assert code == 0
    return out


def test_real_cine_seg_equals_png_masks_and_passes_dciodvfy(real_run: Path, small_checkpoint: Path) -> None:
    seg_path, sr_path = real_run / "dicom" / "seg.dcm", real_run / "dicom" / "sr.dcm"
    assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []
    seg = pydicom.dcmread(seg_path)
    pngs = _png_masks(real_run)
    lesion_frames = [number for number, mask in pngs.items() if mask.any()]
    assert 0 < len(lesion_frames) and int(seg.NumberOfFrames) == len(lesion_frames)
    masks = segmentation_masks(seg)
    assert sorted(masks) == lesion_frames
    for number, mask in masks.items():
        np.testing.assert_array_equal(mask, pngs[number])
        assert 0 < mask.mean() < 1  # partial masks: the comparison can fail
    assert seg.SegmentationType == "BINARY" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"  # the cine's class, not the one-frame view
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    parameters = dict(p.split("=", 1) for p in str(algorithm.AlgorithmParameters).split(","))
    assert algorithm.AlgorithmName == "flanet" and algorithm.AlgorithmVersion == __version__
    assert parameters["model"] == "flanet" and parameters["checkpoint_sha256"] == file_sha256(small_checkpoint)
    assert parameters["threshold"] == THRESHOLD


def test_real_cine_sr_numbers_are_the_csv_numbers(real_run: Path) -> None:
    seg = pydicom.dcmread(real_run / "dicom" / "seg.dcm")
    report = report_measurements(pydicom.dcmread(real_run / "dicom" / "sr.dcm"))
    rows = _csv_rows(real_run)
    assert set(report) == {"area", "diameter"}
    for kind, column, unit in (("area", "area_px2", "px2"), ("diameter", "max_diameter_px", "px")):
        value, frame = _largest(rows, column)
        assert report[kind][:3] == (pytest.approx(value), unit, frame)
        assert report[kind][3] == seg.SegmentSequence[0].TrackingUID  # the measurement tracks the SEG's segment
    summary = json.loads((real_run / "summary.json").read_text())["videos"][0]
    assert summary["dicom_outputs"]["sr"]["measurements"]["area"]["value"] == pytest.approx(summary["largest_area_px2"])
    assert summary["dicom_outputs"]["identity"] == "deidentify"


def test_fractional_seg_and_source_identity(small_checkpoint: Path, tmp_path: Path) -> None:
    frames = colour_frames(4)
    cine = write_cine(tmp_path / "cine.dcm", frames, region=REGION, delta_cm=(0.01, 0.02), identifiers=True)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(small_checkpoint), str(cine), "--out", str(out), "--device", "cpu",
                 "--no-progress", "--threshold", "0.6", "--dicom-out", "sr", "--seg-type", "fractional",
                 "--dicom-identity", "source"]) == 0
    seg, sr = pydicom.dcmread(out / "dicom" / "seg.dcm"), pydicom.dcmread(out / "dicom" / "sr.dcm")  # sr implies seg
    assert dciodvfy_errors(out / "dicom" / "seg.dcm") == [] and dciodvfy_errors(out / "dicom" / "sr.dcm") == []
    source = pydicom.dcmread(cine, stop_before_pixels=True)
    assert seg.SegmentationType == "FRACTIONAL" and seg.SegmentationFractionalType == "PROBABILITY"
    pngs = _png_masks(out)
    masks = segmentation_masks(seg)
    assert masks and all(np.array_equal(mask, pngs[number]) for number, mask in masks.items())
    for ds in (seg, sr):  # the source's patient and study, a new series
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientName == IDENTIFIERS["PatientName"]
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.PatientIdentityRemoved == "NO"
        assert "identity: source" in ds.SeriesDescription and ds.SeriesDate == ds.ContentDate  # a dated new series
    reference = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    report = report_measurements(sr)
    rows = _csv_rows(out)
    area, area_frame = _largest(rows, "area_mm2")
    diameter, diameter_frame = _largest(rows, "max_diameter_mm")
    assert report["area"][:3] == (pytest.approx(area), "mm2", area_frame)
    assert report["diameter"][:3] == (pytest.approx(diameter), "mm", diameter_frame)


def test_deidentify_leaves_no_identifier_and_keeps_references(small_checkpoint: Path, tmp_path: Path) -> None:
    cine = write_cine(tmp_path / "cine.dcm", colour_frames(4), identifiers=True)
    source = pydicom.dcmread(cine, stop_before_pixels=True)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(small_checkpoint), str(cine), "--out", str(out), "--device", "cpu",
                 "--no-progress", "--threshold", "0.6", "--dicom-out", "seg", "sr"]) == 0
    secrets = [*IDENTIFIERS.values(), source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {"seg.dcm", "sr.dcm", "summary.json", "frames.csv"} <= {path.name for path in files}
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data and secret not in str(path.relative_to(out)), (secret, path)
    assert dciodvfy_errors(out / "dicom" / "seg.dcm") == [] and dciodvfy_errors(out / "dicom" / "sr.dcm") == []
    seg, sr = pydicom.dcmread(out / "dicom" / "seg.dcm"), pydicom.dcmread(out / "dicom" / "sr.dcm")
    summary = json.loads((out / "summary.json").read_text())["videos"][0]["dicom_outputs"]
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == summary["study_instance_uid"] != source.StudyInstanceUID
    seg_source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    evidence = {item.ReferencedSOPInstanceUID for series in sr.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert {seg_source.ReferencedSOPInstanceUID, seg.SOPInstanceUID} == evidence  # replaced UIDs, consistent
    for ds in (seg, sr):
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.PatientName == "" and ds.PatientID.startswith("FLANET-")


def test_seg_has_one_frame_per_lesion_frame_referencing_it() -> None:
    header = DicomIdentity("deidentify").header(pydicom.dcmread(REAL_CINE, stop_before_pixels=True))
    rng = np.random.default_rng(0)
    masks = rng.random((2, 240, 320)) < 0.3
    algorithm = Algorithm("flanet", "resnet18", "ab" * 32, 0.5, 64)
    seg = build_segmentation(header, [(2, masks[0]), (5, masks[1])], algorithm=algorithm, fractional=False,
                             series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(),
                             series_description="test")
    assert int(seg.NumberOfFrames) == 2
    read = segmentation_masks(seg)
    assert sorted(read) == [2, 5]
    np.testing.assert_array_equal(read[5], masks[1])
    assert [item.FrameContentSequence[0].DimensionIndexValues for item in seg.PerFrameFunctionalGroupsSequence] == [
        [1, 2], [1, 5]]
    with pytest.raises(ValueError, match="at least one frame"):
        build_segmentation(header, [], algorithm=algorithm, fractional=False, series_uid="1.2", sop_uid="1.3",
                           series_description="test")


@pytest.mark.parametrize("threshold", [0.5, 0.2, 0.65, 1 / 255])
def test_fractional_levels_threshold_exactly_at_mask_level(threshold: float) -> None:
    probability = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    probability[0, :4] = [threshold, np.nextafter(np.float32(threshold), np.float32(0)), 0.0, 1.0]
    mask = probability >= threshold
    levels = fractional_levels(probability, mask, mask_level(threshold))
    np.testing.assert_array_equal(levels >= mask_level(threshold), mask)
    assert np.abs(levels.astype(float) - probability * 255.0).max() <= 1.0 + 1e-3  # at most one level off


def test_dicom_out_usage_errors(small_checkpoint: Path, tmp_path: Path, write_video, disc_frames,
                                capsys: pytest.CaptureFixture[str]) -> None:
    video = write_video(tmp_path / "clip.mp4", disc_frames(3))
    base = ["predict", "--checkpoint", str(small_checkpoint), "--device", "cpu", "--no-progress"]
    assert main([*base, str(video), "--out", str(tmp_path / "a"), "--dicom-out", "seg"]) == 2
    assert "needs a DICOM cine input" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main([*base, str(REAL_CINE), "--out", str(tmp_path / "b"), "--dicom-out", "seg", "--store"]) == 2
    assert "--store sends the results to the PACS" in capsys.readouterr().err
    assert main([*base, str(REAL_CINE), "--out", str(tmp_path / "c"), "--seg-type", "fractional"]) == 2
    assert "--seg-type applies" in capsys.readouterr().err


def test_identity_replaces_uids_consistently_and_keeps_standard_ones() -> None:
    source = pydicom.dcmread(REAL_CINE, stop_before_pixels=True)
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID, item.ReferencedSOPClassUID = source.SOPInstanceUID, source.SOPClassUID
    source.ReferencedImageSequence = [item]
    run, other = DicomIdentity("deidentify"), DicomIdentity("deidentify")
    header = run.header(source)
    assert header.SOPInstanceUID == run.uid(source.SOPInstanceUID) != source.SOPInstanceUID  # consistent in a run
    assert header.ReferencedImageSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID  # nested, same map
    assert other.uid(source.SOPInstanceUID) != header.SOPInstanceUID  # another run, another secret
    assert header.SOPClassUID == source.SOPClassUID and header.ReferencedImageSequence[0].ReferencedSOPClassUID == \
        source.SOPClassUID  # standard UIDs stay
    assert "PixelData" not in header and "PatientName" in header and header.PatientName == ""
    kept = DicomIdentity("source").header(source)
    assert kept.SOPInstanceUID == source.SOPInstanceUID and kept.PatientName == source.PatientName
    with pytest.raises(ValueError, match="unknown DICOM identity mode"):
        DicomIdentity("anonymous")
