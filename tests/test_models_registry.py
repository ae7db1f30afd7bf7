"""The model registry: registering, options checked against each model's dataclass, recipes across models."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch

from flanet.models import registry
from flanet.models.baselines import ImageBaseline, SmpOptions
from flanet.models.contract import VideoSegmentationModel
from flanet.models.registry import (
    ModelError,
    ModelInfo,
    ModelOptions,
    PaperRow,
    create_model,
    default_contrastive_weight,
    list_models,
    model_spec,
    rebuild_model,
    register_model,
)
from flanet.training.config import ConfigError, load_config


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models registered by a test are gone after it."""
    list_models()  # the built-in models and entry points are loaded first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@dataclass(frozen=True)
class TinyOptions(ModelOptions):
    encoder: str = "vit_tiny_patch16_224"
    width: int = 4


def _register_vit_only() -> None:
    @register_model("vit-only", TinyOptions, ModelInfo(kind="image", description="test", paper="test",
                                                        rows=(PaperRow(2, "SETR"),), encoders=("vit_*",)))
    def build(options: TinyOptions) -> ImageBaseline:
        import segmentation_models_pytorch as smp

        return ImageBaseline(smp.Unet(encoder_name="tu-resnet18", encoder_weights=None, classes=1))


def test_builtin_models_are_registered_with_their_paper_rows() -> None:
    names = list_models()
    assert names[:7] == ["flanet", "flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb", "unet", "unetplusplus"]
    assert [str(r) for r in model_spec("flanet").info.rows] == [
        "Table 2 'Our FLA-Net'", "Table 3 'Our method'", "Table 4 'Ours'"]
    assert list_models(table=3) == ["flanet", "flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb"]
    assert {"unet", "unetplusplus"} <= set(list_models(kind="image"))
    assert model_spec("unet").row(4) == PaperRow(4, "UNet")


def test_only_flanet_has_the_contrastive_loss_by_default() -> None:
    assert {n: default_contrastive_weight(n) for n in list_models() if default_contrastive_weight(n)} == {"flanet": 1.0}
    assert "heatmap" in model_spec("flanet-lb").info.loss_terms
    assert model_spec("unet").info.loss_terms == ("bce", "iou")


def test_create_model_returns_the_contract_with_name_and_options() -> None:
    model = create_model("unet", encoder="resnet18")
    assert isinstance(model, VideoSegmentationModel)
    assert model.config == {"name": "unet", "options": {"encoder": "resnet18", "encoder_weights": None}}
    rebuilt = rebuild_model(model.config)
    assert rebuilt.config == model.config


def test_an_option_of_another_model_is_an_error_naming_it() -> None:
    with pytest.raises(ModelError, match=r"model 'unet' has no option 'neck_channels'.*encoder, encoder_weights"):
        create_model("unet", encoder="resnet18", neck_channels=[8, 16, 24, 32])
    with pytest.raises(ModelError, match=r"no option 'neck_chanels' \(did you mean 'neck_channels'\?\)"):
        create_model("flanet", encoder="resnet18", neck_chanels=[8, 16, 24, 32])
    with pytest.raises(ModelError, match=r"'head_channels' expects an integer, got 'wide'"):
        create_model("flanet", encoder="resnet18", head_channels="wide")
    with pytest.raises(ModelError, match=r"unknown model 'unett' \(did you mean 'unet'\?\)"):
        create_model("unett")


def test_register_model_refuses_a_second_builder_and_a_bad_options_class(scratch_registry: None) -> None:
    with pytest.raises(ModelError, match="registered twice"):
        @register_model("unet", SmpOptions, model_spec("unet").info)
        def other(options: SmpOptions) -> None: ...
    with pytest.raises(ModelError, match="subclassing ModelOptions"):
        register_model("x", dict, model_spec("unet").info)  # type: ignore[arg-type]


def test_a_model_that_needs_another_encoder_says_so(scratch_registry: None) -> None:
    _register_vit_only()
    with pytest.raises(ModelError, match=r"'vit-only' cannot use encoder 'resnet18'.*vit_\*"):
        create_model("vit-only", encoder="resnet18")


def test_a_recipes_flanet_options_apply_only_to_models_that_have_them(caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flanet.training import config as config_module

    monkeypatch.setattr(config_module, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        config = load_config("cpu-small", ["model.name=unet"])
        load_config("cpu-small", ["model.name=unet"])  # a command resolves its configuration several times
    assert config.model.options == {} and config.model.encoder == "mobilenetv3_small_100"
    assert caplog.text.count("neck_channels, decoder_channels, head_channels of the recipe (for flanet) do not apply to unet") == 1
    assert load_config("cpu-small", ["model.name=flanet-lb"]).model.options["head_channels"] == 16
    with pytest.raises(ConfigError, match=r"unknown config key 'model.options.neck_channels'.*model 'unet'"):
        load_config("cpu-small", ["model.name=unet", "model.options.neck_channels=[8, 16, 24, 32]"])


def test_a_recipe_naming_the_model_gets_no_leeway(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: cpu-small\nmodel:\n  name: unet\n")
    with pytest.raises(ConfigError, match="model.options.neck_channels"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"config key 'model.name': unknown model 'pranett'"):
        load_config("cpu-small", ["model.name=pranett"])


def test_a_recipe_encoder_the_model_cannot_use_gives_way_to_its_own(scratch_registry: None, caplog, monkeypatch) -> None:
    from flanet.training import config as config_module

    monkeypatch.setattr(config_module, "_WARNED", set())
    _register_vit_only()
    with caplog.at_level(logging.WARNING, logger="flanet.training.config"):
        config = load_config("cpu-small", ["model.name=vit-only"])
    assert config.model.encoder == "vit_tiny_patch16_224"  # TinyOptions' default
    assert "vit-only cannot use the recipe's encoder mobilenetv3_small_100 (it needs vit_*): it uses vit_tiny" in caplog.text
    with pytest.raises(ConfigError, match="model.encoder"):
        load_config("cpu-small", ["model.name=vit-only", "model.encoder=resnet18"])


def test_the_default_encoder_is_the_options_default() -> None:
    assert model_spec("flanet").default_encoder == "res2net50_26w_4s"
    assert torch.is_tensor(next(create_model("unetplusplus", encoder="resnet18").parameters()))


def test_no_module_probes_a_model_for_attributes() -> None:
    """Callers talk to models through the contract only (issue 23: no ``getattr(model, "config", None)``)."""
    import re
    from pathlib import Path

    import flanet

    probe = re.compile(r"\b(getattr|hasattr)\(\s*(self\.)?(model|loaded\.model|segmenter\.model)\b")
    found = [f"{path.name}:{number}" for path in Path(flanet.__file__).parent.rglob("*.py")
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if probe.search(line)]
    assert found == []
