"""Issue 30 "Done when", end to end on a small synthetic set: labels written, the head trained jointly and on
frozen features, ``flanet evaluate`` reporting the diagnosis, ``flanet predict`` writing per-video probabilities."""

from __future__ import annotations

import csv
import json

import pytest

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.models import load_checkpoint

pytestmark = pytest.mark.slow

COMMON = ["--config", "cpu-small", "data.image_size=64", "trainer.enable_progress_bar=false",
          "diagnosis.labels=[pathology]", "data.batch_size=4"]


def test_labels_train_evaluate_predict(tmp_path, capsys):
    data = generate_dataset(tmp_path / "data", videos=10, frames=5, size=64, seed=0)
    assert (data / "video_labels.csv").read_text().startswith("video,pathology,aln_metastasis")
    assert main(["train", *COMMON, f"data.root={data}", "trainer.max_epochs=1", "diagnosis.weight=0.5",
                 f"output.run_dir={tmp_path / 'joint'}"]) == 0
    joint = load_checkpoint(tmp_path / "joint" / "checkpoints" / "last.pt")
    assert joint.diagnosis is not None and joint.diagnosis.head.labels == ("pathology",)
    assert main(["train", "--task", "diagnosis", *COMMON, f"data.root={data}", "trainer.max_epochs=2",
                 f"model.init_from={tmp_path / 'joint' / 'checkpoints' / 'last.pt'}",
                 f"output.run_dir={tmp_path / 'frozen'}"]) == 0
    frozen = load_checkpoint(tmp_path / "frozen" / "checkpoints" / "last.pt")
    for key, value in joint.model.state_dict().items():  # the segmentation model did not move
        assert frozen.model.state_dict()[key].equal(value), key
    rows = list(csv.DictReader((tmp_path / "frozen" / "metrics.csv").open()))
    assert rows[-1]["train_diagnosis"] and rows[-1]["val_loss"]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "frozen" / "checkpoints" / "last.pt"), "--data", str(data),
                 "--split", "test", "--out", str(tmp_path / "eval"), "--resamples", "100"]) == 0
    assert "diagnosis    pathology" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    section = metrics["diagnosis"]
    assert set(section["labels"]) == {"pathology"} and len(section["per_video"]) == 4
    assert "### Diagnosis" in (tmp_path / "eval" / "table.md").read_text()
    assert main(["predict", "--checkpoint", str(tmp_path / "frozen" / "checkpoints" / "last.pt"),
                 str(data / "img_list" / "video000"), "--out", str(tmp_path / "pred")]) == 0
    summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert 0.0 <= summary["videos"][0]["diagnosis"]["labels"]["pathology"]["probability"] <= 1.0
