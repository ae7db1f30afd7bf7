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


@pytest.mark.parametrize("key", ["output.dir", "output.run_dir"])
def test_training_output_inside_the_data_set_is_refused_before_writing(key: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """``flanet train output.dir=<data>/runs`` wrote its run folder (checkpoints, logs) into the data set."""
    root = generate_dataset(tmp_path / "data", videos=3, frames=2, size=32, seed=0)
    before = sorted(str(p) for p in root.rglob("*"))
    assert main(["train", "--config", "cpu-small", f"data.root={root}", f"{key}={root / 'runs'}",
                 "data.image_size=32", "trainer.max_epochs=1"]) == 2
    err = _error(capsys).strip().splitlines()
    assert len(err) == 1 and f"config key '{key}'" in err[0] and "overlaps the input" in err[0]
    assert sorted(str(p) for p in root.rglob("*")) == before


HOLD = """
import sys, time
from flanet.fileio import lock_output_folder
lock_output_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _holder(folder: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_with_the_holders_pid(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Two archive runs on one folder corrupted it; the second is now refused, naming the first's PID."""
    frames = _frames(tmp_path / "in" / "clip")
    manifest = tmp_path / "in" / "manifest.csv"
    manifest.write_text(f"path,id\n{frames},clip\n")
    out = tmp_path / "out"
    assert main(["predict", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 0
    holder = _holder(out)
    try:
        for force in ([], ["--force"]):
            assert main(["predict", str(manifest), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress",
                         *force]) == 2
            err = _error(capsys)
            assert f"being written by another flanet process (PID {holder.pid}" in err
        assert (out / "clip" / "summary.json").is_file()  # --force deleted nothing while another run held it
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_killed_process_is_taken_over(checkpoint: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    assert main(["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(out), "--no-progress"]) == 0
    holder = _holder(out)
    holder.kill()  # kill -9: the lock file still names it
    holder.wait()
    assert (out / ".flanet-lock").read_text().strip() == str(holder.pid)
    with caplog.at_level("INFO", logger="flanet.fileio"):
        assert main(["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(out), "--force",
                     "--no-progress"]) == 0
    assert f"taking over the lock of PID {holder.pid}" in caplog.text
    assert (out / ".flanet-lock").read_text() == ""  # released at the end


def test_the_lock_refuses_a_second_process_naming_it(tmp_path: Path) -> None:
    from flanet.fileio import OutputBusyError, lock_output_folder

    run = tmp_path / "run"
    holder = _holder(run)
    try:
        with pytest.raises(OutputBusyError, match=f"PID {holder.pid}"):
            lock_output_folder(run)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("name", ["model.pt", "model.json"])
def test_export_never_overwrites_the_checkpoint_it_reads(name: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / name, create_model("flanet", encoder="resnet18"), {"image_size": SIZE})
    before = checkpoint.read_bytes()
    out = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "would overwrite the checkpoint" in _error(capsys) and checkpoint.read_bytes() == before
