"""Crash-safe training: resume state every epoch / N steps, exact mid-epoch resume, kill -9."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.training import train
from flanet.training.config import dump_config, load_config
from flanet.training.resume import AtomicCheckpointIO, InvocationTimer

STEPS_PER_EPOCH = 3  # trainer.limit_train_batches (of 5 batches of 2 clips)


def overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """cpu-small at 64x64, batch 2, 3 steps per epoch, augmentation on (its draws must survive a resume)."""
    return [f"data.root={data_root}", "data.image_size=64", "trainer.enable_progress_bar=false", "data.batch_size=2",
            f"trainer.limit_train_batches={STEPS_PER_EPOCH}", "trainer.limit_val_batches=2", "data.augment=true",
            "trainer.max_epochs=2", f"output.run_dir={run_dir}", *extra]


def final_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], list[dict[str, str]], int]:
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return payload["state_dict"], rows, payload["metadata"]["global_step"]


def assert_same_run(run: Path, reference: Path) -> None:
    weights, rows, step = final_state(run)
    ref_weights, ref_rows, ref_step = final_state(reference)
    assert step == ref_step
    for key, value in ref_weights.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)
    assert rows == ref_rows  # every epoch's loss terms and validation scores, as text


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=4, frames=5, size=64, seed=0)


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 2-epoch run every interrupted one must reproduce."""
    return train("cpu-small", overrides(data_root, tmp_path_factory.mktemp("runs") / "ref"))


def test_resume_state_is_written_every_epoch_and_every_n_steps(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: resume.ckpt was written only when training ended; checkpoint_every_n_steps was ignored.
    saved: list[tuple[int, str]] = []
    original = AtomicCheckpointIO.save_checkpoint

    def record(self: AtomicCheckpointIO, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        saved.append((checkpoint["global_step"], Path(path).name))
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", record)
    train("cpu-small", overrides(data_root, tmp_path / "run", "output.checkpoint_every_n_steps=2"))
    # every 2 steps (2, 4; 6 is an epoch's last) and at each epoch end (3, 6)
    assert saved == [(2, "resume.ckpt"), (3, "resume.ckpt"), (4, "resume.ckpt"), (6, "resume.ckpt")]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp*"))  # no temporary file left


def test_max_steps_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(
    data_root: Path, reference: Path, tmp_path: Path
) -> None:
    # Before: the stopped part-epoch counted as finished; the resumed run skipped the rest of it.
    run_dir = train("cpu-small", overrides(data_root, tmp_path / "run", "trainer.max_steps=4"))
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["metadata"]["partial_epoch"]
    train(None, ["trainer.max_steps=-1"], resume=run_dir)
    assert_same_run(run_dir, reference)


def test_max_time_stop_then_resume_matches_an_uninterrupted_run(
    data_root: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 145 steps instead of 160 (the rest of the stopped epoch was skipped), other weights.
    # A clock of 0.6 s per step of this invocation, so that the test does not depend on the machine.
    original_start, original_batch_end = InvocationTimer.on_train_start, InvocationTimer.on_train_batch_end

    def on_train_start(self: InvocationTimer, trainer: Any, module: Any) -> None:
        self.first_step = trainer.global_step
        original_start(self, trainer, module)

    def on_train_batch_end(self: InvocationTimer, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self.steps = trainer.global_step - self.first_step
        original_batch_end(self, trainer, *args, **kwargs)

    monkeypatch.setattr(InvocationTimer, "on_train_start", on_train_start)
    monkeypatch.setattr(InvocationTimer, "on_train_batch_end", on_train_batch_end)
    monkeypatch.setattr(InvocationTimer, "time_elapsed", lambda self, stage="train": 0.6 * getattr(self, "steps", 0))
    run_dir = train("cpu-small", overrides(data_root, tmp_path / "run", "trainer.max_time=00:00:00:01"))
    resume_file = run_dir / "checkpoints" / "resume.ckpt"
    assert torch.load(resume_file, weights_only=True)["global_step"] == 2  # 1.2 s: step 2 of 3
    # the limit holds per invocation: the same limit again runs 2 more steps (a total would stop at once)
    train(None, [], resume=run_dir)
    assert torch.load(resume_file, weights_only=True)["global_step"] == 4
    # ... and without it the run finishes as if it had never stopped
    train(None, ["trainer.max_time=null"], resume=run_dir)
    assert_same_run(run_dir, reference)


def test_run_killed_with_sigkill_resumes_to_the_weights_of_an_uninterrupted_run(
    data_root: Path, reference: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "flanet.cli", "train", "--config", "cpu-small",
               *overrides(data_root, run_dir, "output.checkpoint_every_n_steps=1")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    resume_file = run_dir / "checkpoints" / "resume.ckpt"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if resume_file.is_file() and torch.load(resume_file, weights_only=True)["global_step"] >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = torch.load(resume_file, weights_only=True)["global_step"]
    assert 2 <= killed_at < 2 * STEPS_PER_EPOCH
    train(None, [], resume=run_dir)
    assert_same_run(run_dir, reference)


def test_resume_file_is_staged_in_its_own_folder_when_tmpdir_is_on_another_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: Lightning staged resume.ckpt in TMPDIR and moved it, a copy that a kill or a full disk left 0 bytes.
    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", None)
    staged: list[Path] = []
    real_save = torch.save

    def recording_save(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        staged.append(Path(file))
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", recording_save)
    destination = tmp_path / "run" / "checkpoints" / "resume.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 3}, destination)
    assert [path.parent for path in staged] == [destination.parent] and not any(elsewhere.iterdir())
    assert torch.load(destination, weights_only=True) == {"step": 3}
    assert sorted(p.name for p in destination.parent.iterdir()) == ["resume.ckpt", "resume.ckpt.sha256"]  # and its hash (issue 22 item 5)


def test_resume_without_a_resume_file_points_to_checkpoints_not_the_stale_lightning_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    dump_config(load_config("cpu-small", [f"data.root={tmp_path}"]), run_dir / "config.yaml")
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"flanet train: error: .*checkpoints/resume\.ckpt.*\n", err) and "lightning/" not in err
