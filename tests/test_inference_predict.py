"""`flanet predict` / predict_to_folder end to end on tiny synthetic videos, folders and datasets."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import _disc_frames as _frames
from conftest import _write_video
from flanet.cli import main
from flanet.data import DataError, read_image
from flanet.data.video_io import iter_video_frames
from flanet.inference import VideoSegmenter, predict_to_folder
from flanet.models import image_size_from_metadata, load_checkpoint

HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> torch.nn.Module:
    return load_checkpoint(checkpoint).model


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_video_end_to_end_outputs_match_the_streaming_api(
    checkpoint: Path, model: torch.nn.Module, tmp_path: Path
) -> None:
    video = _write_video(tmp_path / "scan.mp4", _frames(5), fps=10.0)
    out = predict_to_folder(checkpoint, video, tmp_path / "out", device="cpu", progress=False)
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i + 1:06d}.png" for i in range(5)]  # 1-based names (frame_name)
    rows = _read_csv(out / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(5))
    expected = VideoSegmenter(model, 64, "cpu").stream(iter_video_frames(video))
    for mask_path, row, result in zip(masks, rows, expected, strict=True):
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, result.mask)
        assert int(row["area_px"]) == int(result.mask.sum())
        assert row["lesion_present"] == str(bool(result.mask.any()))
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (WIDTH, HEIGHT)
    assert math.isclose(capture.get(cv2.CAP_PROP_FPS), 10.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 5 and summary["image_size"] == 64 and summary["streaming"] is True
    assert summary["frames_with_lesion"] == sum(r["lesion_present"] == "True" for r in rows)
    assert summary["largest_area_px"] == max(int(r["area_px"]) for r in rows)
    assert summary["fps_achieved"] > 0 and summary["videos"][0]["frames_with_full_context"] == 3


def test_frame_folder_keeps_names_order_and_input(model: torch.nn.Module, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, frame in zip(["img_1", "img_2", "img_10"], _frames(3)):
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = predict_to_folder(model, folder, tmp_path / "pred", image_size=64, device="cpu", fps=7.0, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [r["source"] for r in _read_csv(out / "frames.csv")] == ["img_1", "img_2", "img_10"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["img_1.png", "img_10.png", "img_2.png"]
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert math.isclose(capture.get(cv2.CAP_PROP_FPS), 7.0)
    capture.release()


def test_dataset_root_gets_one_folder_per_video(model: torch.nn.Module, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for video_id in ("v1", "v2"):
        for kind in ("img_list", "mask_list"):
            (root / kind / video_id).mkdir(parents=True)
        for i, frame in enumerate(_frames(3)):
            cv2.imwrite(str(root / "img_list" / video_id / f"{i}.png"), frame)
            cv2.imwrite(str(root / "mask_list" / video_id / f"{i}.png"), (frame[:, :, 0] > 100).astype(np.uint8) * 255)
    out = predict_to_folder(model, root, tmp_path / "pred", image_size=64, device="cpu", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert [v["video"] for v in summary["videos"]] == ["v1", "v2"] and summary["frames"] == 6
    for video_id in ("v1", "v2"):
        assert len(_read_csv(out / video_id / "frames.csv")) == 3
        assert (out / video_id / "overlay.mp4").stat().st_size > 0


def test_output_folder_rules(model: torch.nn.Module, tmp_path: Path) -> None:
    video = _write_video(tmp_path / "scan.mp4", _frames(3))
    out = tmp_path / "out"
    predict_to_folder(model, video, out, image_size=64, device="cpu", progress=False)
    with pytest.raises(FileExistsError, match="--force"):
        predict_to_folder(model, video, out, image_size=64, device="cpu", progress=False)
    (out / "masks" / "stale.png").write_bytes(b"x")
    predict_to_folder(model, video, out, force=True, image_size=64, device="cpu", progress=False)
    assert not (out / "masks" / "stale.png").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by"):
        predict_to_folder(model, video, foreign, force=True, image_size=64, device="cpu", progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _frames(1)[0])
    with pytest.raises(ValueError, match="inside the input"):
        predict_to_folder(model, folder, folder / "pred", image_size=64, device="cpu", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]


@pytest.mark.parametrize(("content", "message"), [(b"", "0 bytes"), (b"not a video at all" * 50, "cannot open")])
def test_unreadable_video_is_a_clear_error(model: torch.nn.Module, tmp_path: Path, content: bytes, message: str) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    with pytest.raises(DataError, match=f"broken.mp4: .*{message}"):
        predict_to_folder(model, video, tmp_path / "out", image_size=64, device="cpu", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", [1, 2])
def test_one_or_two_frame_video_uses_the_repeated_first_frame(
    model: torch.nn.Module, tmp_path: Path, count: int, caplog: pytest.LogCaptureFixture
) -> None:
    video = _write_video(tmp_path / "short.mp4", _frames(count))
    out = predict_to_folder(model, video, tmp_path / "out", image_size=64, device="cpu", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == count and summary["videos"][0]["frames_with_full_context"] == 0
    assert [r["context_frames"] for r in _read_csv(out / "frames.csv")] == [str(i + 1) for i in range(count)]
    assert "first frame is repeated" in caplog.text


def test_grayscale_video_is_segmented_in_colour_overlay(model: torch.nn.Module, tmp_path: Path) -> None:
    video = _write_video(tmp_path / "gray.avi", _frames(3), color=False)
    out = predict_to_folder(model, video, tmp_path / "out", image_size=64, device="cpu", progress=False)
    assert len(list((out / "masks").glob("*.png"))) == 3
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (HEIGHT, WIDTH, 3)


def test_changing_frame_size_names_the_input(model: torch.nn.Module, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), _frames(1)[0])
    cv2.imwrite(str(folder / "1.png"), _frames(1, 32, 32)[0])
    with pytest.raises(ValueError, match=r"frames: frame 1 is 32x32"):
        predict_to_folder(model, folder, tmp_path / "out", image_size=64, device="cpu", progress=False)
    assert read_image(folder / "1.png").shape == (32, 32, 3)


def test_cli_predict_and_its_errors(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = _write_video(tmp_path / "scan.mp4", _frames(3))
    args = ["predict", "--checkpoint", str(checkpoint), str(video), "--out", str(tmp_path / "o"), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "3 frames" in capsys.readouterr().out
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(args[:3] + ["--no-progress", "--device", "cpu", "scan.mp4"]) == 0
    assert (tmp_path / "scan-flanet" / "overlay.mp4").is_file()
    missing = ["predict", "--checkpoint", str(tmp_path / "none.pt"), str(video), "--out", str(tmp_path / "p")]
    assert main(missing) == 2
    assert f"flanet predict: error: checkpoint not found ({tmp_path / 'none.pt'})" in capsys.readouterr().err


def test_image_size_comes_from_the_training_metadata() -> None:
    assert image_size_from_metadata({"image_size": 256}) == 256
    assert image_size_from_metadata({"train_config": {"data": {"image_size": 160}}}) == 160
    assert image_size_from_metadata({}) == image_size_from_metadata(None) == 352


def test_model_for_inference_takes_a_model_or_a_checkpoint(checkpoint: Path, model: torch.nn.Module) -> None:
    from flanet.models.checkpoint import model_for_inference

    loaded, metadata, size = model_for_inference(checkpoint)
    assert size == 64 and metadata["image_size"] == 64 and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert model_for_inference(checkpoint, 128)[2] == 128
    same, metadata, size = model_for_inference(model)
    assert same is model and metadata == {} and size == 352
