"""``flanet train`` prints one line per event: no doubled Lightning lines, no product tips, no stale warnings."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from flanet.data.synth import generate_dataset


def test_train_prints_each_event_once_without_tips_or_lightning_warnings(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", videos=4, frames=4, size=64, seed=0)
    command = [sys.executable, "-m", "flanet", "train", "--config", "cpu-small", f"data.root={data}",
               "data.image_size=64", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
               f"output.run_dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # every warning shown once per place, as by default
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # each event once: the same message never appears on two lines (Lightning's handler and ours)
    messages = collections.Counter(line.split(": ", 1)[-1] for line in lines)
    assert [message for message, count in messages.items() if count > 1] == []
    assert sum("GPU available" in line for line in lines) == 1
    assert not [line for line in lines if "Tip:" in line or "litlogger" in line or "litmodels" in line]
    assert not [line for line in lines if "LeafSpec" in line or "_pytree" in line]
    assert not [line for line in lines if "weights_only" in line]  # resume.ckpt saves say what they save
    assert (tmp_path / "run" / "checkpoints" / "resume.ckpt").is_file()
