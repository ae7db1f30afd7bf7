"""`flanet compare --ablation`: the five Table 3 rows plus UNet/UNet++, written in Table 3's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.experiments.ablation import ABLATION_MODELS, AblationEntry, table3_markdown


def _metrics(dice: float) -> dict:
    return {"dice": dice, "jaccard": dice - 0.1, "f1": dice + 0.01, "mae": 0.03,
            "ci": {"dice": [dice - 0.02, dice + 0.02], "jaccard": [dice - 0.12, dice - 0.08],
                   "f1": [dice - 0.01, dice + 0.03], "mae": [0.025, 0.035]}}


def test_table3_writer_rows_marks_and_intervals() -> None:
    entries = [AblationEntry(name, 1.0 if name == "flanet" else 0.0, _metrics(0.5 + 0.01 * i))
               for i, name in enumerate(reversed(ABLATION_MODELS))]  # any order in, paper order out
    table = table3_markdown(entries).splitlines()
    assert table[0] == "| Method | model | FLA | Loc-Branch | Contrastive loss | Dice ↑ | Jaccard ↑ | F1-score ↑ | MAE ↓ |"
    rows = [line for line in table[2:] if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| Basic", "| Basic+FLA", "| Basic+LB", "| Basic+FLA+LB", "| Our method", "| UNet", "| UNet++"]
    marks = [row.split(" | ")[2:5] for row in rows]
    assert marks == [["×", "×", "×"], ["✓", "×", "×"], ["×", "✓", "×"], ["✓", "✓", "×"], ["✓", "✓", "✓"],
                     ["-", "-", "-"], ["-", "-", "-"]]
    # flanet-basic came 7th of 7 in: dice 0.56
    assert rows[0].endswith("| 0.560 [0.540, 0.580] | 0.460 [0.440, 0.480] | 0.570 [0.550, 0.590] | 0.030 [0.025, 0.035] |")
    # the marks follow the weight the run used: flanet-lb trained with eq. (1) on request
    forced = table3_markdown([AblationEntry("flanet-lb", 0.5, _metrics(0.6))]).splitlines()[2]
    assert forced.split(" | ")[2:5] == ["×", "✓", "✓"]
    assert "nan" not in table3_markdown([AblationEntry("flanet", 1.0, {"dice": float("nan")})])


def test_ablation_and_models_are_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["compare", "--data", str(tmp_path), "--ablation", "--models", "unet", "--config", "cpu-small"]
    assert main(args) == 2
    assert "flanet compare: error: give --ablation or --models" in capsys.readouterr().err


@pytest.mark.slow  # seven trainings and evaluations: about a minute of CPU time on 2 cores
def test_ablation_trains_and_writes_table3_on_cpu(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", videos=4, frames=3, size=32, seed=0)
    out = tmp_path / "ablation"
    tiny = ["data.image_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
            "data.batch_size=2", "trainer.enable_progress_bar=false", "data.num_workers=0"]
    args = ["compare", "--data", str(data), "--ablation", "--config", "cpu-small", "--out", str(out),
            "--resamples", "20", "--jobs", "1", "--batch-size", "4", *tiny]
    assert main(args) == 0
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert [row["model"] for row in rows] == list(ABLATION_MODELS)
    assert {row["model"]: row["contrastive_weight"] for row in rows if row["contrastive_weight"]} == {"flanet": 1.0}
    for model in ABLATION_MODELS:
        run_config = (out / "runs" / model / "config.yaml").read_text()
        assert f"contrastive_weight: {1.0 if model == 'flanet' else 0.0}" in run_config
    table = (out / "ablation.md").read_text()
    assert table.startswith("# Ablation (paper Table 3)")
    lines = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert len(lines) == 7 and all(line.count("[") == 4 for line in lines)  # 4 scores, each with its interval
