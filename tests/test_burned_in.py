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
    from flanet.evaluation.shown_frames import read_shown_frame

    (tmp_path / "data").mkdir()
    _cine(tmp_path / "data" / "us.dcm", burned_in="YES", region=region)
    (video,) = discover(tmp_path / "data").videos
    rgb = read_shown_frame(video, 0, VideoFrameReader())
    assert rgb[:10].max() == 0  # the text rows
    assert (rgb[14:40, 10:50].mean() > 40) == region  # the imaging region kept; without regions all blank


def _text_video(path: Path, count: int = 3) -> Path:
    """A recorded scan (mp4) with white "text" rows above the imaging area: no declaration, no regions."""
    frames = colour_frames(count)
    frames[:, :10] = 255
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _shows_only_the_region(frame: np.ndarray) -> bool:
    """The white text rows are black but for the overlay's frame label and contours (white they average > 200);
    the region is there."""
    return frame[:10].mean() < 100 and frame[14:40, 10:50].mean() > 40


def test_a_dicom_file_is_refused_as_a_live_source(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--source played a DICOM through OpenCV (unblanked where it could decode it) or failed as "not a video"."""
    cine = _cine(tmp_path / "us.dcm", burned_in="YES", region=True)
    out = tmp_path / "out"
    assert main(["predict", "--source", str(cine), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a DICOM file is segmented as INPUT" in err[0] and "us.dcm" in err[0]
    assert not out.exists()
    assert main(["predict", "--source", str(cine), "--checkpoint", str(checkpoint), "--full-frame", "--no-progress"]) == 2
    assert "--full-frame applies to DICOM INPUT files" in capsys.readouterr().err


def test_live_outputs_keep_only_the_given_region_and_blanking_without_one_is_refused(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--blank-outside-regions with --source was ignored: the overlay showed the text, exit 0."""
    video = _text_video(tmp_path / "scan.mp4")
    base = ["predict", "--source", str(video), "--checkpoint", str(checkpoint), "--no-progress"]
    refused = tmp_path / "refused"
    assert main([*base, "--out", str(refused), "--blank-outside-regions"]) == 2
    err = capsys.readouterr().err
    assert "--blank-outside-regions" in err and "a live source" in err and "--keep-region" in err and not refused.exists()
    out = tmp_path / "out"
    assert main([*base, "--out", str(out), "--keep-region", ",".join(map(str, REGION))]) == 0
    frames = _overlay_frames(out)
    assert frames and all(_shows_only_the_region(frame) for frame in frames)
    handling = json.loads((out / "summary.json").read_text())["burned_in_annotation"]["handling"]
    assert handling == "blanked outside the given region (--keep-region 8,12,55,43)"


def test_a_recorded_video_is_blanked_on_request_or_refused_without_a_region(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--blank-outside-regions on a video file did nothing (no regions), silently: the overlay showed the text."""
    video = _text_video(tmp_path / "scan.mp4")
    refused = tmp_path / "refused"
    assert _predict(video, refused, checkpoint, "--blank-outside-regions") == 2
    assert "not a DICOM file" in capsys.readouterr().err and not refused.exists()
    out = tmp_path / "out"
    assert _predict(video, out, checkpoint, "--keep-region", "8,12,55,43") == 0
    assert all(_shows_only_the_region(frame) for frame in _overlay_frames(out))
    with pytest.raises(SystemExit):
        main(["predict", str(video), "--checkpoint", str(checkpoint), "--keep-region", "9,0,3,5"])


def test_an_archive_resume_refuses_other_burned_in_options(checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A rerun with --blank-outside-regions reused the overlays made without it: the text stayed."""
    (tmp_path / "scans").mkdir()
    _cine(tmp_path / "scans" / "a.dcm", burned_in="NO", region=True)
    out = tmp_path / "out"
    assert _predict(tmp_path / "scans", out, checkpoint) == 0
    assert _predict(tmp_path / "scans", out, checkpoint, "--blank-outside-regions") == 2
    assert "segmented with other settings (blank_outside_regions" in capsys.readouterr().err
    assert min(frame[:10].mean() for frame in _overlay_frames(out / "a")) > 120  # left as it was


def test_the_evaluate_pictures_are_blanked_on_request(tmp_path: Path) -> None:
    """evaluate had no option to blank every video: viewer and worst frames showed undeclared text."""
    from flanet.data import discover
    from flanet.data.video_io import VideoFrameReader
    from flanet.evaluation.shown_frames import Blanking, read_shown_frame

    (tmp_path / "dicom").mkdir()
    _cine(tmp_path / "dicom" / "us.dcm", burned_in="NO", region=True)
    (video,) = discover(tmp_path / "dicom").videos
    reader = VideoFrameReader()
    assert read_shown_frame(video, 0, reader)[:10].min() > 200  # nothing declared, nothing asked
    rgb = read_shown_frame(video, 0, reader, Blanking(blank_always=True))
    assert rgb[:10].max() == 0 and rgb[14:40, 10:50].mean() > 40
    frames = colour_frames(1)[0]
    frames[:10] = 255
    (tmp_path / "clips" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "clips" / "a" / "1.png"), cv2.cvtColor(frames, cv2.COLOR_RGB2BGR))
    (clip,) = discover(tmp_path / "clips").videos
    kept = read_shown_frame(clip, 0, reader, Blanking(keep_region=REGION))
    assert kept[:10].max() == 0 and kept[14:40, 10:50].mean() > 40
    assert read_shown_frame(clip, 0, reader, Blanking(blank_always=True)).max() == 0  # no region: all black
