"""`flanet evaluate --checkpoint` end to end with a tiny random FLA-Net at 64x64."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.data import discover
from flanet.data.synth import generate_dataset
from flanet.evaluation import evaluate_model
from flanet.models import create_model

KEYS = ("dice", "jaccard", "f1", "mae", "s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice", "max_iou", "vps_mae")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate_checkpoint")
    data = generate_dataset(root / "data", videos=3, frames=4, size=48, seed=1)
    return data, checkpoint


def test_checkpoint_evaluation_and_saved_predictions_score_identically(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, checkpoint = setup
    out, again = tmp_path / "eval", tmp_path / "again"
    common = ["--data", str(data), "--split", "all", "--resamples", "50", "--no-progress", "--jobs", "1"]
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(out), "--save-pred", "--num-workers", "0", "--device", "cpu"]
    assert main([*args, *common]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_frames"] == 12 and metrics["num_videos"] == 3
    assert metrics["context"]["image_size"] == 64 and metrics["context"]["model_config"]["name"] == "flanet"
    assert all(isinstance(metrics[key], float) and 0 <= metrics[key] for key in KEYS)
    predictions = sorted((out / "predictions").rglob("*.png"))
    assert len(predictions) == 12
    assert "| flanet | video |" in (out / "table.md").read_text()
    header = (out / "per_video.csv").read_text().splitlines()[0].split(",")
    assert "pathology" in header and "s_alpha" in header  # video-level labels of the synthetic set

    assert main(["evaluate", "--pred-dir", str(out / "predictions"), "--out", str(again), *common]) == 0
    rescored = json.loads((again / "metrics.json").read_text())
    for key in KEYS:
        assert rescored[key] == pytest.approx(metrics[key], abs=1e-12)


def test_image_baseline_uses_the_current_frame_only(setup: tuple[Path, Path]) -> None:
    data, _ = setup
    torch.manual_seed(0)
    model = create_model("unet", encoder="resnet18")
    result = evaluate_model(model, discover(data), "all", image_size=64, device="cpu")
    assert result.metrics["num_frames"] == 12
    assert np.isfinite(result.metrics["dice"])


def test_bad_image_size_and_missing_checkpoint_are_reported(setup: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, checkpoint = setup
    base = ["evaluate", "--data", str(data), "--split", "all", "--no-progress", "--jobs", "1", "--num-workers", "0"]
    assert main([*base, "--checkpoint", str(checkpoint), "--image-size", "50", "--out", str(tmp_path / "a")]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b")]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_streaming_and_clip_batches_agree(setup: tuple[Path, Path]) -> None:
    data, _ = setup
    torch.manual_seed(1)
    model = create_model("flanet", encoder="resnet18")
    video_set = discover(data)
    clips = evaluate_model(model, video_set, "all", image_size=64, device="cpu", mode="clips")
    stream = evaluate_model(model, video_set, "all", image_size=64, device="cpu", mode="stream")
    assert [r["frame"] for r in clips.per_frame] == [r["frame"] for r in stream.per_frame]
    for key in KEYS:
        assert stream.metrics[key] == pytest.approx(clips.metrics[key], abs=2e-3)
    mae = np.array([[r["mae"] for r in result.per_frame] for result in (clips, stream)])
    assert np.abs(mae[0] - mae[1]).max() < 2e-3  # at most rounding flips of the 8-bit maps


def test_auto_mode_streams_flanet_only(setup: tuple[Path, Path]) -> None:
    from flanet.evaluation.model_predictions import choose_mode

    videos = discover(setup[0]).videos
    assert choose_mode(create_model("flanet", encoder="resnet18"), videos) == "stream"
    assert choose_mode(create_model("unet", encoder="resnet18"), videos) == "clips"
    with pytest.raises(ValueError, match="streaming needs"):
        choose_mode(create_model("unet", encoder="resnet18"), videos, "stream")


@pytest.mark.parametrize("batch_size", [1])  # chunks smaller than the temporal context
def test_streaming_carries_context_across_chunks_and_skips_unannotated_frames(setup: tuple[Path, Path], batch_size: int) -> None:
    from dataclasses import replace

    from flanet.data import VideoSet
    from flanet.evaluation.model_predictions import iter_model_predictions, iter_streamed_predictions

    full = discover(setup[0])
    sparse = [replace(v, masks=[m if i in (0, 2, 3) else None for i, m in enumerate(v.masks)]) for v in full.videos]
    video_set = VideoSet(full.root, full.layout, sparse)
    torch.manual_seed(2)
    model = create_model("flanet", encoder="resnet18")
    device = torch.device("cpu")

    def collect(chunks) -> dict[tuple[str, int], np.ndarray]:
        return {(c.video, i): p for c in chunks for i, p in zip(c.indices, c.prob)}

    clips = collect(iter_model_predictions(model, video_set, None, 64, device, 4, 0, False))
    stream = collect(iter_streamed_predictions(model, sparse, 64, device, batch_size, False))
    assert sorted(stream) == sorted(clips) and {i for _, i in stream} == {0, 2, 3}
    for key, prob in clips.items():
        assert np.abs(stream[key].astype(int) - prob.astype(int)).max() <= 1  # 8-bit rounding only
