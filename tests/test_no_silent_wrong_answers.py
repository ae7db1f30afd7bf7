"""Issue 13 item 3: inputs that used to give a wrong answer with exit status 0.

A dataset root with a stray image (the contact sheet `flanet data synth` writes) was segmented as
one video of that image; a split sharing videos with another was trained and evaluated on; a
truncated video was segmented as if complete; a single-video split was written in a layout that
`evaluate --pred-dir` could not read.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from flanet.cli import main
from flanet.data.synth import CONTACT_SHEET, generate_dataset
from flanet.inference import predict_to_folder
from flanet.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=5, frames=4, size=64, seed=0)
    assert (root / CONTACT_SHEET).is_file()  # the stray image at the root
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("flanet", encoder="mobilenetv3_small_100", neck_channels=[16, 24, 48, 96],
                         decoder_channels=[64, 32, 24, 16], head_channels=16)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model, {"image_size": 64})


def _split(root: Path, name: str) -> list[str]:
    return (root / f"{name}_list.csv").read_text().split()


def _error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("flanet ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.fullmatch(rf"flanet {command}: error: .+", lines[0])
    return lines[0]


def test_predict_on_a_dataset_root_with_a_stray_image_segments_the_requested_split(
    checkpoint: Path, data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), str(data_root), "--split", "test", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(v["video"] for v in summary["videos"]) == sorted(_split(data_root, "test"))
    assert summary["frames"] == 4 * len(_split(data_root, "test"))


def test_predict_of_a_single_video_split_round_trips_through_evaluate_pred_dir(
    checkpoint: Path, data_root: Path, tmp_path: Path
) -> None:
    data = generate_dataset(tmp_path / "one", videos=5, frames=4, size=64, seed=0)
    video = _split(data, "val")[0]
    (data / "val_list.csv").write_text(video + "\n")  # a split of one video
    pred, report = tmp_path / "pred", tmp_path / "eval"
    assert main(["predict", "--checkpoint", str(checkpoint), str(data), "--split", "val", "--out", str(pred),
                 "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in (pred / video / "masks").iterdir()) == sorted(
        p.with_suffix(".png").name for p in (data / "img_list" / video).iterdir())
    assert main(["evaluate", "--pred-dir", str(pred), "--data", str(data), "--split", "val", "--out", str(report),
                 "--no-progress", "--jobs", "1", "--resamples", "10"]) == 0
    assert json.loads((report / "metrics.json").read_text())["num_frames"] == 4
    # the library call writes the same layout for a dataset root
    library = predict_to_folder(checkpoint, data, tmp_path / "lib", split="val", device="cpu", progress=False)
    assert (library / video / "masks").is_dir() and not (library / "masks").exists()


def _overlapping(tmp_path: Path) -> tuple[Path, str]:
    data = generate_dataset(tmp_path / "data", videos=5, frames=4, size=64, seed=0)
    shared = _split(data, "train")[0]
    (data / "test_list.csv").write_text("\n".join([*_split(data, "test"), shared]) + "\n")
    return data, shared


def test_train_refuses_a_split_sharing_videos_with_another(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, shared = _overlapping(tmp_path)
    args = ["train", "--config", "cpu-small", f"data.root={data}", "data.image_size=64", "trainer.enable_progress_bar=false",
            f"output.dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    line = _error(capsys, "train")
    assert shared in line and "train_list.csv" in line and "test_list.csv" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_evaluate_refuses_a_split_sharing_videos_with_another(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, shared = _overlapping(tmp_path)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test",
                 "--out", str(tmp_path / "eval"), "--no-progress", "--jobs", "1", "--num-workers", "0"]) == 2
    line = _error(capsys, "evaluate")
    assert shared in line and "train_list.csv" in line and "test_list.csv" in line


def test_truncated_video_is_reported_with_the_count_read(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, disc_frames: Any, write_video: Any
) -> None:
    whole = write_video(tmp_path / "whole.avi", disc_frames(10), fourcc="MJPG").read_bytes()
    video = tmp_path / "scan.avi"
    video.write_bytes(whole[: int(len(whole) * 0.7)])  # the last frames and the index are gone
    with caplog.at_level(logging.WARNING):
        out = predict_to_folder(checkpoint, video, tmp_path / "pred", image_size=32, device="cpu", progress=False)
    entry = json.loads((out / "summary.json").read_text())["videos"][0]
    assert 0 < entry["frames"] < 10 and entry["frames_declared"] == 10 and entry["truncated"] is True
    assert f"read {entry['frames']} of the 10 frames" in caplog.text


def test_complete_video_is_not_reported_as_truncated(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, disc_frames: Any, write_video: Any
) -> None:
    video = write_video(tmp_path / "scan.avi", disc_frames(4), fourcc="MJPG")
    with caplog.at_level(logging.WARNING):
        out = predict_to_folder(checkpoint, video, tmp_path / "pred", image_size=32, device="cpu", progress=False)
    entry = json.loads((out / "summary.json").read_text())["videos"][0]
    assert entry["frames"] == entry["frames_declared"] == 4 and entry["truncated"] is False
    assert "truncated" not in caplog.text
