"""Issue 22 item 5: an archive rerun reuses a finished video only when what made it is unchanged and it is whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.inference.runs.archive import predict_archive
from flanet.models import create_model, save_checkpoint

SIZE = 32


def _model(seed: int):
    torch.manual_seed(seed)
    return create_model("flanet", encoder="resnet18")


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path, Path]:
    frames = tmp_path / "in" / "clip"
    frames.mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(frames / f"{k}.png"), np.full((SIZE, SIZE, 3), 60 * k, np.uint8))
    manifest = tmp_path / "in" / "manifest.csv"
    manifest.write_text("path,id\nclip,clip\n")
    checkpoint = save_checkpoint(tmp_path / "model.pt", _model(0), {"image_size": SIZE})
    out = predict_archive(checkpoint, manifest, tmp_path / "out", device="cpu", progress=False)
    return manifest, checkpoint, out


def _stamp(out: Path) -> int:
    return (out / "clip" / "summary.json").stat().st_mtime_ns


def test_an_unchanged_rerun_reuses_the_video(archive: tuple[Path, Path, Path]) -> None:
    manifest, checkpoint, out = archive
    before = _stamp(out)
    predict_archive(checkpoint, manifest, out, device="cpu", progress=False)
    assert _stamp(out) == before
    summary = json.loads((out / "clip" / "summary.json").read_text())
    assert len(summary["checkpoint_sha256"]) == 64 and summary["input_fingerprint"]["files"] == 3


def test_another_checkpoint_at_the_same_path_is_refused(archive: tuple[Path, Path, Path]) -> None:
    manifest, checkpoint, out = archive
    save_checkpoint(checkpoint, _model(1), {"image_size": SIZE})  # retrained in place
    with pytest.raises(ValueError, match="segmented with other settings \\(checkpoint_sha256"):
        predict_archive(checkpoint, manifest, out, device="cpu", progress=False)


def test_another_full_frame_setting_is_refused(archive: tuple[Path, Path, Path]) -> None:
    manifest, checkpoint, out = archive
    with pytest.raises(ValueError, match="full_frame"):
        predict_archive(checkpoint, manifest, out, device="cpu", progress=False, full_frame=True)


def test_another_input_under_the_same_id_is_segmented_again(archive: tuple[Path, Path, Path],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    manifest, checkpoint, out = archive
    before = _stamp(out)
    frame = manifest.parent / "clip" / "1.png"
    cv2.imwrite(str(frame), np.full((SIZE, SIZE, 3), 255, np.uint8))
    os.utime(frame, ns=(1, 1))  # even with an old time stamp the content differs
    predict_archive(checkpoint, manifest, out, device="cpu", progress=False)
    assert _stamp(out) != before and "the input changed" in caplog.text


def test_a_video_whose_csv_lost_rows_is_segmented_again(archive: tuple[Path, Path, Path],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Two writers left a summary claiming 3 frames beside a 2-row CSV, and the rerun trusted it."""
    manifest, checkpoint, out = archive
    table = out / "clip" / "frames.csv"
    table.write_text("".join(table.read_text().splitlines(keepends=True)[:-1]))
    predict_archive(checkpoint, manifest, out, device="cpu", progress=False)
    assert len(table.read_text().splitlines()) == 4 and "does not hold the 3 frames" in caplog.text


def test_resume_ckpt_is_verified_by_the_hash_written_beside_it(tmp_path: Path) -> None:
    """Issue 22 item 5: resume.ckpt had no hash; a corrupted one is now refused by name."""
    from flanet.models import CheckpointError
    from flanet.training.module import MODEL_CONFIG_KEY
    from flanet.training.resume import AtomicCheckpointIO, hash_path
    from flanet.training.run import _check_resume_model

    model = _model(0)
    ckpt = tmp_path / "checkpoints" / "resume.ckpt"
    ckpt.parent.mkdir()
    AtomicCheckpointIO().save_checkpoint({MODEL_CONFIG_KEY: model.config, "state_dict": model.state_dict()}, ckpt)
    assert hash_path(ckpt).read_text().split() == [__import__("hashlib").sha256(ckpt.read_bytes()).hexdigest(),
                                                  "resume.ckpt"]
    _check_resume_model(ckpt, model.config)  # intact: accepted
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"resume\.ckpt: resume checkpoint is corrupted \(its SHA-256"):
        _check_resume_model(ckpt, model.config)
