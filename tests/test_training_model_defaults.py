"""Table 3 rows as models: each trains with its own loss; the previous frame never removes targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from flanet.data.synth import generate_dataset
from flanet.models import TABLE3_ROWS, create_model, default_contrastive_weight
from flanet.training import ConfigError, load_config
from flanet.training.datamodule import VideoDataModule
from flanet.training.model_defaults import encoder_init, random_encoder_warning, resolve_model_defaults
from flanet.training.module import FLANetModule

SMALL = ["model.encoder=resnet18", "data.image_size=64"]


@pytest.mark.parametrize(
    "name,contrastive",
    [("flanet-basic", 0.0), ("flanet-ffa", 0.0), ("flanet-lb", 0.0), ("flanet-ffa-lb", 0.0), ("flanet", 1.0),
     ("unet", 0.0), ("unetplusplus", 0.0)],
)
def test_only_the_full_method_trains_with_eq1_by_default(name: str, contrastive: float) -> None:
    assert default_contrastive_weight(name) == contrastive
    for recipe in ("buv-paper", "polyp-paper", "cpu-small"):
        config = resolve_model_defaults(load_config(recipe, [f"model.name={name}"]))
        assert config.loss.contrastive_weight == contrastive, recipe


def test_explicit_weight_overrides_the_model_default() -> None:
    config = resolve_model_defaults(load_config("cpu-small", ["model.name=flanet-lb", "loss.contrastive_weight=0.5"]))
    assert config.loss.contrastive_weight == 0.5
    config = resolve_model_defaults(load_config("cpu-small", ["loss.contrastive_weight=0"]))
    assert config.loss.contrastive_weight == 0  # flanet without eq. (1) = Basic+FLA+LB's loss
    with pytest.raises(ConfigError, match="contrastive_weight.*a number or null"):
        load_config("cpu-small", ["loss.contrastive_weight=yes"])


def test_table3_rows_are_models_and_modules_follow_their_loss() -> None:
    assert [name for name, _ in TABLE3_ROWS] == ["flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb", "flanet"]
    expected = {"flanet-basic": (False, False), "flanet-ffa": (False, False), "flanet-lb": (True, False),
                "flanet-ffa-lb": (True, False), "flanet": (True, True)}
    for name, (heatmap, previous) in expected.items():
        module = FLANetModule(load_config("cpu-small", [f"model.name={name}", *SMALL]))
        assert module.model.has_heatmap == heatmap, name
        assert module.use_previous == previous, name
        assert module.criterion.contrastive_weight == float(previous), name
        assert module.hparams["config"]["loss"]["contrastive_weight"] == float(previous)
    # flanet-ffa-lb and flanet share one architecture: only the loss differs
    ffa_lb, full = create_model("flanet-ffa-lb", encoder="resnet18"), create_model("flanet", encoder="resnet18")
    assert {k: v.shape for k, v in ffa_lb.state_dict().items()} == {k: v.shape for k, v in full.state_dict().items()}


def test_target_frames_are_the_same_with_and_without_the_contrastive_loss(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "data", videos=4, frames=6, size=32, seed=0)
    for index, mask in enumerate(sorted((root / "mask_list").rglob("*.png"))):
        if index % 2:  # sparse annotation: every other frame's mask is missing
            mask.unlink()
    targets = {}
    for name in ("flanet", "flanet-ffa-lb"):
        module = FLANetModule(load_config("cpu-small", [f"model.name={name}", f"data.root={root}", *SMALL]))
        data = VideoDataModule(module.config, clip_len=module.model.num_frames, with_previous=module.use_previous)
        data.setup("fit")
        targets[name] = {tuple(row) for row in data.train_dataset.samples.tolist()}
        assert data.train_dataset.with_previous == (name == "flanet")
    assert targets["flanet"] == targets["flanet-ffa-lb"] and targets["flanet"]


def test_paper_recipes_default_to_imagenet_and_random_paper_runs_are_named() -> None:
    for recipe in ("buv-paper", "polyp-paper"):
        config = load_config(recipe)
        assert config.model.encoder_weights == "imagenet" and encoder_init(config) == "imagenet"
        assert random_encoder_warning(config) is None
        random = load_config(recipe, ["model.encoder_weights=null"])
        assert "random initialisation" in random_encoder_warning(random)
        # benchmark runs rename the run but keep the paper's encoder: still a paper run
        renamed = load_config(recipe, ["model.encoder_weights=null", "name=flanet-lb"])
        assert random_encoder_warning(renamed) is not None
    assert random_encoder_warning(load_config("cpu-small")) is None  # small random encoder by design
    assert random_encoder_warning(load_config("demo")) is None
    assert encoder_init(load_config("cpu-small", ["model.encoder_weights=/w/r.pth"])) == "file /w/r.pth"
