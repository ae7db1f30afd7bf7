"""Two-process DDP on CPU (gloo) through the ``flanet train`` command."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch

from flanet.data.synth import generate_dataset


def test_two_process_ddp_on_cpu_trains_and_writes_one_run_folder(tmp_path: Path) -> None:
    data_root = generate_dataset(tmp_path / "data", videos=4, frames=5, size=64, seed=1)
    run_dir = tmp_path / "ddp-run"
    command = [
        sys.executable, "-m", "flanet.cli", "train", "--config", "cpu-small",
        f"data.root={data_root}", "data.image_size=64", f"output.run_dir={run_dir}",
        "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert result.stdout.split() == [str(run_dir)]  # printed once, by rank 0
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and int(rows[0]["step"]) == 2 and rows[0]["val_dice"] != ""
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["metadata"]["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ddp-run"]  # no stray run folders
