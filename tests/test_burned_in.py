"""Issue 22 item 2: burned-in identifiers never reach the overlay or the viewer of a de-identified output."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from dicom_writer import colour_frames, write_cine
from flanet.cli import main
from flanet.data.deidentify import blank_outside
from flanet.data.dicom import Region

REGION = (8, 12, 55, 43)  # x0, y0, x1, y1: the imaging region of the 64 x 48 frames; "text" above it


def _cine(path: Path, *, burned_in: str | None, region: bool) -> Path:
    frames = colour_frames(3)
    frames[:, :10] = 255  # the patient's name and MRN drawn in white above the imaging region
    write_cine(path, frames, region=REGION if region else None)
    ds = pydicom.dcmread(path)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.save_as(path)
    return path


def _overlay_frames(out: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _predict(cine: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["predict", str(cine), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress", *extra])


def test_text_outside_the_regions_is_blanked_in_the_overlay_and_the_viewer(checkpoint: Path, tmp_path: Path) -> None:
    """The text above the region was copied, readable, into overlay.mp4 and the thumbnails, exit 0."""
    out = tmp_path / "out"
    assert _predict(_cine(tmp_path / "us.dcm", burned_in="YES", region=True), out, checkpoint) == 0
    frames = _overlay_frames(out)
    assert len(frames) == 3
    for frame in frames:
        assert frame[:10].mean() < 30  # the text rows: black but for the overlay's own frame label
        assert frame[14:40, 10:50].mean() > 40  # the imaging region is still there
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"][0]["burned_in_annotation"] == {"declared": True,
                                                            "handling": "blanked outside 1 ultrasound region(s)"}


def test_a_burned_in_file_without_regions_is_refused_or_allowed_by_name(checkpoint: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    cine = _cine(tmp_path / "us.dcm", burned_in="YES", region=False)
    out = tmp_path / "out"
    assert _predict(cine, out, checkpoint) == 2
    err = capsys.readouterr().err
    assert "declares BurnedInAnnotation YES" in err and "--allow-burned-in" in err and "us.dcm" in err
    assert not out.exists()
    assert _predict(cine, out, checkpoint, "--allow-burned-in") == 0
    entry = json.loads((out / "summary.json").read_text())["videos"][0]["burned_in_annotation"]
    assert entry["declared"] is True and "--allow-burned-in" in entry["handling"]
    assert min(frame[:10].mean() for frame in _overlay_frames(out)) > 120  # unblanked (white but for the frame label), as stated


@pytest.mark.parametrize(("declared", "option", "blanked"), [("NO", [], False), ("NO", ["--blank-outside-regions"], True),
                                                             (None, ["--blank-outside-regions"], True)])
def test_blanking_on_request(declared: str | None, option: list[str], blanked: bool, checkpoint: Path,
                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(_cine(tmp_path / "us.dcm", burned_in=declared, region=True), out, checkpoint, *option) == 0
    top = max(frame[:10].mean() for frame in _overlay_frames(out))
    assert (top < 30) == blanked


def test_blank_outside_keeps_the_union_of_regions() -> None:
    rgb = np.full((10, 12, 3), 200, np.uint8)
    out = blank_outside(rgb, (Region(0, 0, 2, 2), Region(8, 5, 11, 9)))
    assert out[:3, :3].min() == 200 and out[5:, 8:].min() == 200 and out[4, 4].max() == 0 and out[0, 11].max() == 0
    assert blank_outside(rgb, ()) is rgb


@pytest.mark.parametrize("region", [True, False])
def test_the_evaluate_viewer_frames_are_blanked_too(region: bool, tmp_path: Path) -> None:
    """evaluate's viewer and worst-frames figure read frames of a DICOM data set: blanked the same way."""
    from flanet.data import discover
    from flanet.data.video_io import VideoFrameReader
    from flanet.evaluation.evaluate import _read_rgb

    (tmp_path / "data").mkdir()
    _cine(tmp_path / "data" / "us.dcm", burned_in="YES", region=region)
    (video,) = discover(tmp_path / "data").videos
    rgb = _read_rgb(video, 0, VideoFrameReader())
    assert rgb[:10].max() == 0  # the text rows
    assert (rgb[14:40, 10:50].mean() > 40) == region  # the imaging region kept; without regions all blank
