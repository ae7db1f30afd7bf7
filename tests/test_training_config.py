"""Training configuration loading: shipped recipes, files, overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flanet.training.config import ConfigError, load_config, shipped_configs


def test_shipped_recipes_hold_the_paper_settings() -> None:
    assert set(shipped_configs()) >= {"buv-paper", "polyp-paper", "cpu-small"}
    paper = load_config("buv-paper")
    assert paper["model"]["encoder"] == "res2net50_26w_4s"
    assert paper["data"]["image_size"] == 352
    assert paper["optim"]["lr"] == pytest.approx(5e-5)
    assert paper["trainer"]["epochs"] == 100 and paper["trainer"]["batch_size"] == 24
    assert all(paper["loss"][k] == 1.0 for k in ("bce_weight", "iou_weight", "heatmap_weight"))
    assert load_config("polyp-paper")["optim"] == paper["optim"]
    small = load_config("cpu-small")
    assert small["model"]["encoder"] == "mobilenetv3_small_100" and small["trainer"]["accelerator"] == "cpu"


def test_overrides_are_typed_as_yaml() -> None:
    config = load_config(
        "cpu-small",
        ["optim.lr=1e-4", "trainer.devices=[0,1]", "data.root=null", "trainer.progress_bar=false",
         "model.options={width: 32}", "name=my run"],
    )
    assert config["optim"]["lr"] == pytest.approx(1e-4) and isinstance(config["optim"]["lr"], float)
    assert config["trainer"]["devices"] == [0, 1]
    assert config["data"]["root"] is None
    assert config["trainer"]["progress_bar"] is False
    assert config["model"]["options"] == {"width": 32}
    assert config["name"] == "my run"


def test_user_file_with_relative_base(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("base: cpu-small\ntrainer:\n  epochs: 7\n")
    (tmp_path / "mine.yaml").write_text("base: base.yaml\noptim:\n  lr: 2e-3\n")
    config = load_config(tmp_path / "mine.yaml", ["seed=3"])
    assert config["trainer"]["epochs"] == 7
    assert config["optim"]["lr"] == pytest.approx(2e-3)
    assert config["model"]["encoder"] == "mobilenetv3_small_100" and config["seed"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\).*optim.grad_clip"),
        (["nonsense=1"], r"unknown config key 'nonsense'.*Valid keys: name, seed"),
        (["trainer.epochs=ten"], r"'trainer.epochs' expects int"),
        (["data.edge=past"], r"'data.edge' must be one of"),
        (["optim=3"], r"'optim' is a section"),
        (["no_equals_sign"], r"dotted.key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("cpu-small", overrides)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file.*shipped: buv-paper"):
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
    assert load_config("cpu-small", ["trainer.max_time=10:00:00:00"])["trainer"]["max_time"] == "10:00:00:00"
    assert load_config("cpu-small", ["trainer.epochs=3"])["trainer"]["epochs"] == 3
