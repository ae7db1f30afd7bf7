"""What ``flanet predict`` accepts as INPUT: one set of video suffixes for files and folders alike; a data set
root with a stray image read as the data set; a truncated video reported; a one-video split written in the
layout ``evaluate --pred-dir`` reads."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from flanet.cli import main
from flanet.data.synth import CONTACT_SHEET, generate_dataset
from flanet.data.video_io import VIDEO_EXTENSIONS
from flanet.inference import predict_to_folder
from flanet.inference.runs.sources import resolve_sources


@pytest.mark.parametrize("suffix", sorted(VIDEO_EXTENSIONS))
def test_a_video_file_is_accepted_with_every_suffix_a_folder_accepts(
    tmp_path: Path, suffix: str, write_video, solid_frames
) -> None:
    # Before: `flanet predict scan.mpg` was refused while a folder holding scan.mpg was read.
    written = write_video(tmp_path / "scan.avi", solid_frames([20, 120, 220]), fourcc="MJPG")
    video = tmp_path / f"scan{suffix}"
    if video != written:
        shutil.copy(written, video)  # FFmpeg reads by content, whatever the suffix
    (source,) = resolve_sources(video)
    assert source.location == video and source.frame_count == 3
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(video, folder / video.name)
    assert [s.location.name for s in resolve_sources(folder)] == [video.name]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=5, frames=4, size=64, seed=0)
    assert (root / CONTACT_SHEET).is_file()  # the stray image at the root
    return root


def _split(root: Path, name: str) -> list[str]:
    return (root / f"{name}_list.csv").read_text().split()


def test_predict_on_a_dataset_root_with_a_stray_image_segments_the_requested_split(
    small_checkpoint: Path, data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(small_checkpoint), str(data_root), "--split", "test", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(v["video"] for v in summary["videos"]) == sorted(_split(data_root, "test"))
    assert summary["frames"] == 4 * len(_split(data_root, "test"))


def test_predict_of_a_single_video_split_round_trips_through_evaluate_pred_dir(
    small_checkpoint: Path, data_root: Path, tmp_path: Path
) -> None:
    data = generate_dataset(tmp_path / "one", videos=5, frames=4, size=64, seed=0)
    video = _split(data, "val")[0]
    (data / "val_list.csv").write_text(video + "\n")  # a split of one video
    pred, report = tmp_path / "pred", tmp_path / "eval"
    assert main(["predict", "--checkpoint", str(small_checkpoint), str(data), "--split", "val", "--out", str(pred),
                 "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in (pred / video / "masks").iterdir()) == sorted(
        p.with_suffix(".png").name for p in (data / "img_list" / video).iterdir())
    assert main(["evaluate", "--pred-dir", str(pred), "--data", str(data), "--split", "val", "--out", str(report),
                 "--no-progress", "--jobs", "1", "--resamples", "10"]) == 0
    assert json.loads((report / "metrics.json").read_text())["num_frames"] == 4
    # the library call writes the same layout for a dataset root
    library = predict_to_folder(small_checkpoint, data, tmp_path / "lib", split="val", device="cpu", progress=False)
    assert (library / video / "masks").is_dir() and not (library / "masks").exists()


def test_truncated_video_is_reported_with_the_count_read(
    small_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, disc_frames: Any, write_video: Any
) -> None:
    whole = write_video(tmp_path / "whole.avi", disc_frames(10), fourcc="MJPG").read_bytes()
    video = tmp_path / "scan.avi"
    video.write_bytes(whole[: int(len(whole) * 0.7)])  # the last frames and the index are gone
    with caplog.at_level(logging.WARNING):
        out = predict_to_folder(small_checkpoint, video, tmp_path / "pred", image_size=32, device="cpu", progress=False)
    entry = json.loads((out / "summary.json").read_text())["videos"][0]
    assert 0 < entry["frames"] < 10 and entry["frames_declared"] == 10 and entry["truncated"] is True
    assert f"read {entry['frames']} of the 10 frames" in caplog.text


def test_complete_video_is_not_reported_as_truncated(
    small_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, disc_frames: Any, write_video: Any
) -> None:
    video = write_video(tmp_path / "scan.avi", disc_frames(4), fourcc="MJPG")
    with caplog.at_level(logging.WARNING):
        out = predict_to_folder(small_checkpoint, video, tmp_path / "pred", image_size=32, device="cpu", progress=False)
    entry = json.loads((out / "summary.json").read_text())["videos"][0]
    assert entry["frames"] == entry["frames_declared"] == 4 and entry["truncated"] is False
    assert "truncated" not in caplog.text
