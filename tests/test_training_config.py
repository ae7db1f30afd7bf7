"""Training configuration: shipped recipes, files, overrides, the typed schema, old key names, errors."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml

from flanet.training.config import ConfigError, dump_config, load_config, shipped_configs, valid_keys
from flanet.training.run import _build_trainer, trainer_arguments
from flanet.training.schema import TrainConfig, TrainerConfig


def test_shipped_recipes_hold_the_paper_settings() -> None:
    assert set(shipped_configs()) >= {"buv-paper", "polyp-paper", "cpu-small"}
    paper = load_config("buv-paper")
    assert isinstance(paper, TrainConfig)
    assert paper.model.encoder == "res2net50_26w_4s"
    assert paper.data.image_size == 352
    assert paper.optim.lr == pytest.approx(5e-5)
    assert paper.trainer.max_epochs == 100 and paper.data.batch_size == 24
    assert paper.trainer.gradient_clip_val is None  # paper: none (the released code's 0.5 is in buv-fast)
    assert all(getattr(paper.loss, k) == 1.0 for k in ("bce_weight", "iou_weight", "heatmap_weight"))
    assert load_config("polyp-paper").optim == paper.optim
    small = load_config("cpu-small")
    assert small.model.encoder == "mobilenetv3_small_100" and small.trainer.accelerator == "cpu"


def test_shipped_recipes_use_only_current_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        for name in shipped_configs():
            load_config(name)
    assert not caplog.records


def test_overrides_are_typed_as_yaml() -> None:
    config = load_config(
        "cpu-small",
        ["optim.lr=1e-4", "trainer.devices=[0,1]", "data.root=null", "trainer.enable_progress_bar=false",
         "model.options={head_channels: 32}", "name=my run", "trainer.precision=16", "optim.weight_decay=0"],
    )
    assert config.optim.lr == pytest.approx(1e-4) and isinstance(config.optim.lr, float)
    assert config.trainer.devices == [0, 1]
    assert config.data.root is None
    assert config.trainer.enable_progress_bar is False
    assert config.model.options == {"head_channels": 32}  # a whole mapping replaces the recipe's
    assert config.name == "my run"
    assert config.trainer.precision == 16
    assert config.optim.weight_decay == 0.0 and isinstance(config.optim.weight_decay, float)
    assert load_config("cpu-small", ["name=2024"]).name == "2024"  # a number is a fine run name


def test_dotted_option_overrides_merge_into_the_recipe_options() -> None:
    config = load_config("cpu-small", ["model.options.head_channels=8"])
    assert config.model.options == {"neck_channels": [16, 24, 48, 96], "decoder_channels": [64, 32, 24, 16],
                                     "head_channels": 8}


def test_user_file_with_relative_base(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("base: cpu-small\ntrainer:\n  max_epochs: 7\n")
    (tmp_path / "mine.yaml").write_text("base: base.yaml\noptim:\n  lr: 2e-3\n")
    config = load_config(tmp_path / "mine.yaml", ["seed=3"])
    assert config.trainer.max_epochs == 7
    assert config.optim.lr == pytest.approx(2e-3)
    assert config.model.encoder == "mobilenetv3_small_100" and config.seed == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\).*optim.step_gamma"),
        (["nonsense=1"], r"unknown config key 'nonsense'.*Valid keys: name, seed"),
        (["trainer.max_epoch=3"], r"'trainer.max_epoch' \(did you mean 'trainer.max_epochs'\?\)"),
        (["trainer.check_val_every_n_epochs=2"],
         r"'trainer.check_val_every_n_epochs' \(did you mean 'trainer.check_val_every_n_epoch'\?\)"),
        (["output.dirs=x"], r"'output.dirs' \(did you mean 'output.dir'\?\)"),
        (["model.options.head_chanels=8"],
         r"unknown config key 'model.options.head_chanels' \(did you mean 'model.options.head_channels'\?\)"),
        (["model.options.head_channels=wide"], r"'model.options.head_channels' expects an integer, got 'wide'"),
        (["model.options.neck_channels=[8, x]"], r"'model.options.neck_channels' expects a list of an integer"),
        (["trainer.max_epochs=ten"], r"'trainer.max_epochs' expects an integer"),
        (["trainer.enable_progress_bar=3"], r"'trainer.enable_progress_bar' expects true or false"),
        (["trainer.limit_train_batches=all"], r"'trainer.limit_train_batches' expects an integer or a number or null"),
        (["data.edge=past"], r"'data.edge' must be one of \('causal', 'lookahead'\)"),
        (["trainer.gradient_clip_algorithm=max"], r"'trainer.gradient_clip_algorithm' must be one of"),
        (["optim=3"], r"'optim' is a section"),
        (["no_equals_sign"], r"dotted.key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("cpu-small", overrides)


def test_unknown_keys_in_files_are_refused_at_every_level(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    for text, key in (("seeds: 1\n", "seeds"), ("trainer:\n  epoch: 3\n", "trainer.epoch"),
                      ("model:\n  options:\n    mask_strides: 2\n", "model.options.mask_strides")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=rf"unknown config key '{key}' \(did you mean"):
            load_config(bad)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file.*shipped: .*buv-paper"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown config key 'trainer.epoch'"):
        load_config(bad)
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_max_time_override_stays_a_clock_string() -> None:
    # YAML 1.1 would read 10:00:00:00 as a base-60 integer (2160000)
    assert load_config("cpu-small", ["trainer.max_time=10:00:00:00"]).trainer.max_time == "10:00:00:00"
    assert load_config("cpu-small", ["trainer.max_time={hours: 4}"]).trainer.max_time == {"hours": 4}


@pytest.mark.parametrize("recipe", ["buv-paper", "polyp-paper", "cpu-small", "demo"])
def test_yaml_typed_yaml_round_trip(recipe: str, tmp_path: Path) -> None:
    config = load_config(recipe, ["trainer.max_time=00:02:00:00", "trainer.devices=[0, 1]"])
    dump_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config
    dump_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == (tmp_path / "config.yaml").read_text()
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written == config.to_dict() and "epochs" not in written["trainer"]
    assert load_config(config) == config  # a typed configuration is valid input too


def test_the_schema_and_the_documented_keys_agree() -> None:
    documented = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    missing = [key for key in valid_keys() if f"`{key}`" not in documented]
    assert not missing


# ---------------------------------------------------------------- Lightning's own keys
TRAINER_VALUES = {
    "max_epochs": 7, "max_steps": 50, "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
    "precision": "bf16-mixed", "gradient_clip_val": 0.25, "gradient_clip_algorithm": "value",
    "accumulate_grad_batches": 3, "limit_train_batches": 0.5, "limit_val_batches": 4, "check_val_every_n_epoch": 2,
    "num_sanity_val_steps": 0, "log_every_n_steps": 5, "enable_progress_bar": False, "deterministic": True,
}


def test_every_trainer_key_is_a_lightning_trainer_argument_and_passes_through(tmp_path: Path) -> None:
    lightning_arguments = set(inspect.signature(pl.Trainer.__init__).parameters)
    fields = {f.name for f in dataclasses.fields(TrainerConfig)}
    assert fields <= lightning_arguments
    assert set(TRAINER_VALUES) == fields - {"max_time"}  # every key is exercised below
    config = load_config("cpu-small", [f"trainer.{key}={value}" for key, value in TRAINER_VALUES.items()])
    assert trainer_arguments(config) == TRAINER_VALUES  # max_time is a callback (per-invocation budget)
    trainer = _build_trainer(config.replace(trainer={"deterministic": False}), tmp_path)  # no global torch flag
    assert (trainer.max_epochs, trainer.max_steps) == (7, 50)
    assert trainer.check_val_every_n_epoch == 2 and trainer.num_sanity_val_steps == 0
    assert trainer.accumulate_grad_batches == 3 and trainer.log_every_n_steps == 5
    assert trainer.gradient_clip_val == 0.25 and trainer.gradient_clip_algorithm == "value"
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (0.5, 4)
    assert trainer.precision == "bf16-mixed"


def test_flanet_resolves_precision_auto() -> None:
    config = load_config("buv-fast", ["trainer.accelerator=cpu"])  # buv-paper is 32-true (paper)
    assert config.trainer.precision == "auto" and trainer_arguments(config)["precision"] == "32-true"


# ------------------------------------------------------------------------ old names
OLD_FILE = """\
base: cpu-small
optim:
  grad_clip: 0.0
trainer:
  epochs: 3
  batch_size: 2
  val_every_n_epochs: 2
  sanity_val_steps: 1
  progress_bar: false
  checkpoint_every_n_steps: 5
"""
NEW_VALUES = {"trainer.max_epochs": 3, "data.batch_size": 2, "trainer.check_val_every_n_epoch": 2,
              "trainer.num_sanity_val_steps": 1, "trainer.enable_progress_bar": False,
              "output.checkpoint_every_n_steps": 5, "trainer.gradient_clip_val": 0.0}


def _value(config: TrainConfig, dotted: str) -> object:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def test_old_names_in_a_file_map_to_the_new_keys_with_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "old.yaml").write_text(OLD_FILE)
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        config = load_config(tmp_path / "old.yaml")
    assert {key: _value(config, key) for key in NEW_VALUES} == NEW_VALUES
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(NEW_VALUES) and all("\n" not in line and "old.yaml" in line for line in lines)
    assert any("'trainer.epochs' is renamed 'trainer.max_epochs'" in line for line in lines)
    assert any("'optim.grad_clip' is renamed 'trainer.gradient_clip_val'" in line for line in lines)


def test_old_names_in_overrides_and_mappings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        config = load_config("cpu-small", ["trainer.epochs=9", "trainer.batch_size=6", "trainer={sanity_val_steps: 3}"])
        mapped = load_config({"base": "cpu-small", "trainer": {"progress_bar": False}})
    assert (config.trainer.max_epochs, config.data.batch_size, config.trainer.num_sanity_val_steps) == (9, 6, 3)
    assert mapped.trainer.enable_progress_bar is False
    assert "override 'trainer.epochs=9'" in caplog.records[0].getMessage()
    assert len(caplog.records) == 4


def test_a_key_set_under_both_names_is_refused(tmp_path: Path) -> None:
    (tmp_path / "both.yaml").write_text("trainer:\n  epochs: 3\n  max_epochs: 4\n")
    with pytest.raises(ConfigError, match=r"both.yaml: 'trainer.epochs' and its new name 'trainer.max_epochs' are both set"):
        load_config(tmp_path / "both.yaml")
