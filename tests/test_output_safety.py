"""Issue 22 items 3 and 4: nothing the user gave is destroyed, and one writer per output folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.models import create_model, save_checkpoint

SIZE = 32


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model.pt", create_model("flanet", encoder="resnet18"), {"image_size": SIZE})


def _frames(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((SIZE, SIZE, 3), 50 * k, np.uint8))
    return folder


def _error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_predict_force_never_deletes_the_checkpoint_in_out(checkpoint: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """``predict --force`` with --out holding the given checkpoint deleted it."""
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    assert main(["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 0
    inside = out / "model.pt"
    inside.write_bytes(checkpoint.read_bytes())
    assert main(["predict", str(frames), "--checkpoint", str(inside), "--out", str(out), "--force",
                 "--no-progress"]) == 2
    assert "overlaps the input" in _error(capsys) and inside.is_file()


def test_an_archive_row_inside_out_is_refused_before_writing(checkpoint: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """A manifest row inside --out (the user's frames) was written into."""
    out = tmp_path / "out"
    frames = _frames(out / "mine")
    before = sorted(p.name for p in out.rglob("*"))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,id\n{frames},clip\n")
    assert main(["predict", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 2
    assert "overlaps the input" in _error(capsys)
    assert sorted(p.name for p in out.rglob("*")) == before


def test_out_inside_an_archive_row_is_refused(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = _frames(tmp_path / "frames")
    manifest = tmp_path / "list" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path,id\n{frames},clip\n")
    out = frames / "results"
    assert main(["predict", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 2
    assert "overlaps the input" in _error(capsys) and not out.exists()


@pytest.mark.parametrize("ratios", ["inf:1:1", "1e308:1e308:1", "nan:1:1", "-1:1:1"])
def test_split_ratios_must_be_finite_and_lists_survive(ratios: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """``data split --ratios inf:1:1 --force`` removed every split list and wrote none."""
    root = generate_dataset(tmp_path / "data", videos=5, frames=2, size=32, seed=0)
    lists = {p.name: p.read_text() for p in root.glob("*_list.csv")}
    assert len(lists) == 3
    assert main(["data", "split", str(root), f"--ratios={ratios}", "--force"]) == 2
    assert "--ratios" in _error(capsys)
    assert {p.name: p.read_text() for p in root.glob("*_list.csv")} == lists


def test_compare_out_inside_the_data_set_is_refused_before_training(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """``compare --out`` inside the data set trained 70 MB into it before refusing."""
    root = generate_dataset(tmp_path / "data", videos=3, frames=2, size=32, seed=0)
    before = sorted(str(p) for p in root.rglob("*"))
    assert main(["compare", "--data", str(root), "--config", "cpu-small", "--models", "unet", "--out", str(root / "cmp"),
                 "data.image_size=32", "trainer.max_epochs=1"]) == 2
    assert "overlaps the input" in _error(capsys)
    assert sorted(str(p) for p in root.rglob("*")) == before
