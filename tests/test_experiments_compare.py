"""`flanet compare`: one tiny training per model, one table; finished runs are reused; `benchmark` still works."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flanet.cli import main
from flanet.data.synth import generate_dataset

TINY = ["data.image_size=64", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.num_workers=0"]


def test_compare_trains_evaluates_and_reuses_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flanet.experiments.compare")
    data = generate_dataset(tmp_path / "data", videos=4, frames=4, size=48, seed=0)
    out = tmp_path / "compare"
    args = ["compare", "--data", str(data), "--models", "unet", "--config", "cpu-small", "--out", str(out),
            "--resamples", "50", "--jobs", "1", *TINY]
    assert main(args) == 0
    (run,) = (out / "runs").iterdir()  # runs/unet-<config hash>
    assert run.name.startswith("unet-")
    best = run / "checkpoints" / "best.pt"
    assert best.is_file()
    table = (out / "comparison.md").read_text()
    assert "| unet | image |" in table and "Table 4 format" in table
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert [row["model"] for row in rows] == ["unet"]
    assert 0 <= rows[0]["dice"] <= 1 and len(rows[0]["dice_ci"]) == 2
    assert rows[0]["contrastive_weight"] == 0.0  # read back from the run's config.yaml
    assert (out / "eval" / "unet" / "metrics.json").is_file()

    assert f"{run.name}: training" in caplog.text
    caplog.clear()
    stamp = best.stat().st_mtime_ns
    assert main(args) == 0  # second run: no training, same checkpoint
    assert best.stat().st_mtime_ns == stamp
    assert f"{run.name}: reusing" in caplog.text and ": training" not in caplog.text

    # Other settings never reuse the old run (issue 31 item 4): a new run folder, and the table says which.
    caplog.clear()
    assert main([*args, "optim.lr=1e-4"]) == 0
    assert ": reusing" not in caplog.text and ": training" in caplog.text
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 2 and run.name in runs
    (new,) = [name for name in runs if name != run.name]
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert Path(rows[0]["run"]).name == new and new.endswith(rows[0]["config_hash"])
    assert rows[0]["config_hash"] == (out / "runs" / new / "config_hash.txt").read_text().strip()
    header = (out / "comparison.md").read_text().split("### Table 2")[0]
    assert new in header and run.name not in header
    assert f"| {rows[0]['videos']} | `{rows[0]['video_hash']}` |" in header


def test_unknown_model_fails_before_training(tmp_path: Path, capsys) -> None:
    args = ["compare", "--data", str(tmp_path), "--models", "unet,nonsense", "--config", "cpu-small", "--out", str(tmp_path / "b")]
    assert main(args) == 2
    assert "nonsense" in capsys.readouterr().err
    assert not (tmp_path / "b" / "runs").exists()


def test_benchmark_is_a_deprecated_name_of_compare(tmp_path: Path, capsys) -> None:
    args = ["--data", str(tmp_path), "--models", "nonsense", "--config", "cpu-small", "--out", str(tmp_path / "b")]
    assert main(["benchmark", *args]) == 2  # same command: the same model check, before any training
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("flanet benchmark: deprecated, use `flanet compare`")
    assert err[1].startswith("flanet benchmark: error: unknown model(s) nonsense")
    assert main(["compare", *args]) == 2
    assert "deprecated" not in capsys.readouterr().err


def test_help_lists_compare_not_the_deprecated_name(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert "compare" in listing and "benchmark" not in listing
