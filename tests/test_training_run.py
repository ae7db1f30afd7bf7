"""End-to-end training on a tiny synthetic set: run folder, learning, exact resume, bad input."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
import yaml

from flanet.cli import main
from flanet.data import DataError
from flanet.data.synth import generate_dataset
from flanet.losses import FLANetLoss, LossTerms
from flanet.models import CheckpointError, load_checkpoint
from flanet.training import TrainingError, load_config, train
from flanet.training.config import ConfigError


def tiny_overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """cpu-small at 64x64 without progress bar: a few seconds per epoch on 2 cores."""
    return [f"data.root={data_root}", "data.image_size=64", "trainer.enable_progress_bar=false",
            f"output.run_dir={run_dir}", *extra]


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 4 videos -> train 2, val 1, test 1; 5 frames of 64x64 each
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=4, frames=5, size=64, seed=0)


@pytest.fixture(scope="module")
def two_epoch_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    return train("cpu-small", tiny_overrides(data_root, run_dir, "trainer.max_epochs=2", "data.augment=true"))


def test_run_folder_holds_config_checkpoints_metrics_and_curve(two_epoch_run: Path) -> None:
    config = load_config(two_epoch_run / "config.yaml")
    assert config.trainer.max_epochs == 2 and config.model.encoder == "mobilenetv3_small_100"
    assert config.loss.contrastive_weight == 1.0  # the value used (recipe: null = flanet's default)
    for name in ("best.pt", "last.pt"):
        payload = torch.load(two_epoch_run / "checkpoints" / name, weights_only=True)
        assert payload["model"]["name"] == "flanet"
        assert payload["metadata"]["train_config"]["data"]["image_size"] == 64
    loaded = load_checkpoint(two_epoch_run / "checkpoints" / "last.pt")
    assert loaded.metadata["epoch"] == 1 and loaded.metadata["global_step"] == 4
    out = loaded.model(torch.zeros(1, 3, 3, 64, 64))
    assert out.mask_logits.shape == (1, 1, 64, 64) and out.heatmap.shape == (1, 1, 64, 64)
    best_epoch = load_checkpoint(two_epoch_run / "checkpoints" / "best.pt").metadata["epoch"]
    rows = metric_rows(two_epoch_run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    dices = [float(r["val_dice"]) for r in rows]
    assert best_epoch == dices.index(max(dices))
    for key in ("train_loss", "train_bce", "train_iou", "train_heatmap_mse", "train_contrastive",
                "val_loss", "val_dice", "val_jaccard", "val_f1", "val_mae"):
        assert all(r[key] != "" for r in rows), key
    assert float(rows[0]["train_negative_fraction"]) > 0  # batches mix the two training videos
    assert all(r["encoder_pretrained"] == "0" for r in rows)
    metadata = load_checkpoint(two_epoch_run / "checkpoints" / "last.pt").metadata
    assert metadata["encoder_init"] == "random" and metadata["warnings"] == []  # cpu-small: random by design
    assert (two_epoch_run / "loss_curve.png").stat().st_size > 1000
    assert (two_epoch_run / "checkpoints" / "resume.ckpt").is_file()
    assert list((two_epoch_run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert (two_epoch_run / "logs" / "csv" / "metrics.csv").is_file()


def test_training_loss_falls(two_epoch_run: Path) -> None:
    first, last = (float(r["train_loss"]) for r in metric_rows(two_epoch_run))
    assert last < first


#: Keys of flanet 0.1's config.yaml that have new names: new (section, key) -> old (section, key).
OLD_NAMES = {
    ("trainer", "max_epochs"): ("trainer", "epochs"),
    ("trainer", "check_val_every_n_epoch"): ("trainer", "val_every_n_epochs"),
    ("trainer", "num_sanity_val_steps"): ("trainer", "sanity_val_steps"),
    ("trainer", "enable_progress_bar"): ("trainer", "progress_bar"),
    ("data", "batch_size"): ("trainer", "batch_size"),
    ("output", "checkpoint_every_n_steps"): ("trainer", "checkpoint_every_n_steps"),
    ("trainer", "gradient_clip_val"): ("optim", "grad_clip"),
}


def write_old_format(config_yaml: Path) -> None:
    """Rewrite a run's ``config.yaml`` as flanet 0.1 wrote it (old names, no newer keys)."""
    data = yaml.safe_load(config_yaml.read_text())
    for (section, key), (old_section, old_key) in OLD_NAMES.items():
        data[old_section][old_key] = data[section].pop(key)
    for key in ("gradient_clip_algorithm", "accumulate_grad_batches"):
        del data["trainer"][key]
    config_yaml.write_text(yaml.safe_dump(data, sort_keys=False))


def test_resume_continues_exactly_where_the_run_stopped(
    two_epoch_run: Path, data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stopped = train("cpu-small", tiny_overrides(data_root, tmp_path / "stopped", "trainer.max_epochs=1",
                                               "data.augment=true"))
    write_old_format(stopped / "config.yaml")  # a run folder of flanet 0.1, resumed with an old-name override
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        resumed = train(None, ["trainer.epochs=2"], resume=stopped)
    assert resumed == stopped
    renamed = {line.split("'")[3] for line in caplog.messages if "is renamed" in line}
    assert renamed == {f"{section}.{key}" for section, key in OLD_NAMES}
    written = yaml.safe_load((resumed / "config.yaml").read_text())  # rewritten with the new names
    assert written["trainer"]["max_epochs"] == 2 and "epochs" not in written["trainer"]
    assert "grad_clip" not in written["optim"] and written["trainer"]["gradient_clip_val"] == 0.5
    reference = torch.load(two_epoch_run / "checkpoints" / "last.pt", weights_only=True)
    continued = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert continued["metadata"]["global_step"] == reference["metadata"]["global_step"]
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(continued["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["train_loss"] for r in metric_rows(resumed)] == [r["train_loss"] for r in metric_rows(two_epoch_run)]


def test_resume_refuses_a_different_model_configuration(two_epoch_run: Path) -> None:
    with pytest.raises(CheckpointError, match=r"resume.ckpt: .*different model configuration.*name"):
        train(two_epoch_run / "config.yaml", ["model.name=flanet-lb"], resume=two_epoch_run)
    with pytest.raises(CheckpointError, match="not a Lightning resume checkpoint"):
        train(None, resume=two_epoch_run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="no such run folder"):
        train(None, resume=two_epoch_run / "missing")


@pytest.mark.parametrize("model,weight,computed", [("flanet-lb", None, False), ("flanet-lb", 1.0, True)])
def test_run_folder_records_the_contrastive_weight_used(
    model: str, weight: float | None, computed: bool, data_root: Path, tmp_path: Path
) -> None:
    extra = [] if weight is None else [f"loss.contrastive_weight={weight}"]
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / "run", f"model.name={model}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", *extra))
    assert load_config(run_dir / "config.yaml").loss.contrastive_weight == (1.0 if computed else 0.0)
    assert (metric_rows(run_dir)[0]["train_contrastive"] != "") == computed


def test_paper_run_from_a_random_encoder_warns_and_records_it(
    data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / "run", "name=buv-paper", "model.name=flanet-basic", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"))
    assert "from a random initialisation" in caplog.text
    assert metric_rows(run_dir)[0]["encoder_pretrained"] == "0"
    metadata = load_checkpoint(run_dir / "checkpoints" / "last.pt").metadata
    assert metadata["encoder_init"] == "random" and "random initialisation" in metadata["warnings"][0]


@pytest.mark.parametrize("model", ["flanet-basic", "unet"])
def test_variants_without_heatmap_train_with_the_same_command(
    model: str, data_root: Path, tmp_path: Path
) -> None:
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / model, f"model.name={model}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"))
    row = metric_rows(run_dir)[0]
    assert row["train_heatmap_mse"] == "" and row["train_contrastive"] == ""
    assert row["val_dice"] != ""
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").config["name"] == model


def test_pranet_trains_with_its_own_deeply_supervised_loss(data_root: Path, tmp_path: Path) -> None:
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / "pranet", "model.name=pranet", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"))
    loss = load_config(run_dir / "config.yaml").loss
    assert loss.mask_loss == "wbce-wiou" and loss.side_weight == 1.0
    row = metric_rows(run_dir)[0]
    assert row["train_wbce"] != "" and row["train_wiou"] != "" and row["train_side"] != ""
    assert row["train_bce"] == "" and row["train_iou"] == "" and row["val_dice"] != ""
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").config["name"] == "pranet"


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = FLANetLoss.forward

    def nan_on_second_epoch(self: FLANetLoss, *args: object, **kwargs: object) -> LossTerms:
        terms = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 2:  # first training step of epoch 1
                return terms._replace(total=terms.total * float("nan"))
        return terms

    monkeypatch.setattr(FLANetLoss, "forward", nan_on_second_epoch)
    run_dir = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"not finite at epoch 1.*last good checkpoint kept: .*last.pt"):
        train("cpu-small", tiny_overrides(data_root, run_dir, "trainer.max_epochs=3",
                                          "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"))
    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert kept.metadata["epoch"] == 0
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())


def test_lightning_trainer_keys_shape_the_run(data_root: Path, tmp_path: Path) -> None:
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / "run", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
        "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"))
    rows = metric_rows(run_dir)
    assert [r["val_dice"] != "" for r in rows] == [False, True]  # validated every second epoch only
    assert [int(r["step"]) for r in rows] == [1, 2]  # 2 batches per optimiser step
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt").metadata["epoch"] == 1


def test_bad_input_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder not found"):
        train("cpu-small", tiny_overrides(tmp_path / "nowhere", tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="data.root"):
        train("cpu-small", [f"output.run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="unknown config key 'trainer.epoch'"):
        train("cpu-small", tiny_overrides(data_root, tmp_path / "run", "trainer.epoch=3"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "config.yaml").write_text("name: x\n")
    with pytest.raises(ValueError, match="run folder already exists"):
        train("cpu-small", tiny_overrides(data_root, tmp_path / "used"))


def test_cli_reports_bad_input_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", "cpu-small", "optim.lrr=1"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
    assert main(["train", "--config", "cpu-small", f"data.root={tmp_path / 'none'}"]) == 2
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2


def test_max_time_stops_the_run_early_with_checkpoints(data_root: Path, tmp_path: Path) -> None:
    # 1 s of wall clock cannot hold 200 epochs: Lightning's timer must stop the run first.
    run_dir = train("cpu-small", tiny_overrides(
        data_root, tmp_path / "timed", "trainer.max_epochs=200", "trainer.max_time=00:00:00:01"))
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "checkpoints" / "resume.ckpt").is_file()
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt").metadata["epoch"] < 199
    assert load_config(run_dir / "config.yaml").trainer.max_time == "00:00:00:01"
