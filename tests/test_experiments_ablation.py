"""`flanet compare --table N`: the paper's Tables 2-4 in their layout, ours beside the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.experiments.ablation import TABLE3_MARK_HEADERS, table3_marks
from flanet.experiments.paper_tables import TABLES, TableEntry, table_markdown, table_models

TINY = ["data.image_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "data.batch_size=2", "trainer.enable_progress_bar=false", "data.num_workers=0"]


def _metrics(dice: float) -> dict:
    return {"dice": dice, "jaccard": dice - 0.1, "f1": dice + 0.01, "mae": 0.03,
            "ci": {"dice": [dice - 0.02, dice + 0.02], "jaccard": [dice - 0.12, dice - 0.08],
                   "f1": [dice - 0.01, dice + 0.03], "mae": [0.025, 0.035]}}


def test_table3_rows_marks_intervals_and_the_papers_numbers() -> None:
    names = table_models(3)
    assert names == ["flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb", "flanet"]
    entries = [TableEntry(name, _metrics(0.5 + 0.01 * i), 25.0, 23.0, 10.0, table3_marks(name, 1.0 if name == "flanet" else 0.0))
               for i, name in enumerate(reversed(names))]  # any order in, paper order out
    lines = table_markdown(3, entries, TABLE3_MARK_HEADERS, "CPU x").splitlines()
    assert lines[0] == ("| Method | image/video | model | FLA | Loc-Branch | Contrastive loss | Dice ↑ | Jaccard ↑ | "
                        "F1-score ↑ | MAE ↓ | Params (M) | GFLOPs @352 | frames/s (CPU x) | paper: Dice ↑ | "
                        "paper: Jaccard ↑ | paper: F1-score ↑ | paper: MAE ↓ |")
    rows = lines[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| Basic", "| Basic+FLA", "| Basic+LB", "| Basic+FLA+LB", "| Our method"]
    assert [row.split(" | ")[3:6] for row in rows] == [["×", "×", "×"], ["✓", "×", "×"], ["×", "✓", "×"],
                                                       ["✓", "✓", "×"], ["✓", "✓", "✓"]]
    # flanet-basic came 5th of 5 in: dice 0.54; the paper's Basic row: 0.747 0.641 0.777 0.037
    assert rows[0].endswith("| 0.540 [0.520, 0.560] | 0.440 [0.420, 0.460] | 0.550 [0.530, 0.570] | 0.030 [0.025, 0.035] "
                            "| 25.0 | 23.0 | 10.0 | 0.747 | 0.641 | 0.777 | 0.037 |")
    # the marks follow the weight the run used: flanet-lb trained with eq. (1) on request
    assert table3_marks("flanet-lb", 0.5) == ("×", "✓", "✓") and table3_marks("unet", 0.0) == ("-", "-", "-")


def test_table4_keeps_every_paper_row_and_both_data_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    from flanet.models import registry

    every = registry.list_models  # a table row whose method is not registered is said to be missing
    monkeypatch.setattr(registry, "list_models", lambda **kw: [n for n in every(**kw) if n != "pnsnet"])
    lines = table_markdown(4, [TableEntry("unet", {"max_dice": 0.7, "ci": {}}, 32.7, 41.0, None)]).splitlines()
    assert "paper CVC-300-TV: Dice ↑" in lines[0] and "paper CVC-612-V: MAE ↓" in lines[0]
    labels = [row.split(" | ")[0][2:] for row in lines[2:]]
    assert labels == [row.label for row in TABLES[4].rows] == ["UNet", "UNet++", "ResUNet", "ACSNet", "PraNet", "PNSNet", "Ours"]
    unet = lines[2].split(" | ")
    assert unet[2] == "`unet`" and unet[3] == "0.700" and unet[8:11] == ["32.7", "41.0", "-"]
    assert lines[2].endswith("| 0.639 | 0.525 | 0.793 | 0.826 | 0.027 | 0.725 | 0.610 | 0.826 | 0.855 | 0.023 |")
    pnsnet = next(row for row in lines if row.startswith("| PNSNet"))
    assert pnsnet.split(" | ")[2] == "not in flanet"
    ours = next(row for row in lines if row.startswith("| Ours"))
    assert ours.split(" | ")[2] == "not run"  # registered (flanet), not in this run
    monkeypatch.setattr(registry, "list_models", every)
    pnsnet = next(row for row in table_markdown(4, []).splitlines() if row.startswith("| PNSNet"))
    assert pnsnet.split(" | ")[2] == "not run"  # registered since issue 26


def test_a_model_outside_the_table_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["compare", "--data", str(tmp_path), "--table", "3", "--models", "unet", "--config", "cpu-small",
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "flanet compare: error: model(s) unet have no row in Table 3" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_table4_of_one_row_trains_and_writes_the_table(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", videos=4, frames=3, size=32, seed=0)
    out = tmp_path / "t4"
    args = ["compare", "--table", "4", "--models", "unet", "--out", str(out), "--resamples", "20", "--jobs", "1",
            "--batch-size", "4", "--config", "cpu-small", f"data.root={data}", *TINY]
    assert main(args) == 0
    table = (out / "table4.md").read_text()
    assert table.startswith("# Paper Table 4")
    unet = next(line for line in table.splitlines() if line.startswith("| UNet |"))
    cells = unet.split(" | ")
    assert cells[2] == "`unet`" and all(0 <= float(cell.split()[0]) <= 1 for cell in cells[3:8])  # 5 scores
    assert float(cells[8]) > 0 and float(cells[9]) > 0 and float(cells[10]) > 0  # params, GFLOPs, frames/s
    assert "Columns headed 'paper' are the numbers the paper prints" in table


@pytest.mark.slow  # five trainings and evaluations: about a minute of CPU time on 2 cores
def test_ablation_trains_and_writes_table3_on_cpu(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", videos=4, frames=3, size=32, seed=0)
    out = tmp_path / "ablation"
    args = ["compare", "--data", str(data), "--ablation", "--config", "cpu-small", "--out", str(out),
            "--resamples", "20", "--jobs", "1", "--batch-size", "4", *TINY]
    assert main(args) == 0
    rows = json.loads((out / "comparison.json").read_text())["models"]
    assert [row["model"] for row in rows] == table_models(3)
    assert {row["model"]: row["contrastive_weight"] for row in rows if row["contrastive_weight"]} == {"flanet": 1.0}
    table = (out / "table3.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert len(lines) == 5 and all(0 <= float(line.split(" | ")[6].split()[0]) <= 1 for line in lines)  # Dice
