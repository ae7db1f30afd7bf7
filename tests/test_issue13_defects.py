"""Issue 13 defects that had no test of their own (the others: test_error_contract.py,
test_training_resume.py, test_atomic_writes.py, test_no_silent_wrong_answers.py, test_hostile_inputs.py).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from flanet.cli import main
from flanet.training.config import dump_config, load_config
from flanet.training.resume import AtomicCheckpointIO


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
    assert sorted(p.name for p in destination.parent.iterdir()) == ["resume.ckpt"]


def test_dotted_override_into_model_options_keeps_the_recipes_other_keys() -> None:
    recipe = load_config("cpu-small").model.options
    options = load_config("cpu-small", ["model.options.head_channels=32"]).model.options
    assert options == {**recipe, "head_channels": 32} and recipe["head_channels"] != 32


def test_resume_without_a_resume_file_points_to_checkpoints_not_the_stale_lightning_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    dump_config(load_config("cpu-small", [f"data.root={tmp_path}"]), run_dir / "config.yaml")
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"flanet train: error: .*checkpoints/resume\.ckpt.*\n", err) and "lightning/" not in err
