"""`encoder_weights: imagenet` through timm's pretrained loader and a Hugging Face Hub cache in tmp_path.

Nothing here touches the network: conftest sets HF_HUB_OFFLINE=1 and the cache is built from a
saved state dict in huggingface_hub's layout (models--org--name/snapshots/<rev>/, refs/main).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from flanet.models import EncoderWeightsError, create_model

ENCODER = "resnet18"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """A hub cache holding ``state`` as timm's default pretrained weights of resnet18."""
    repo_id = timm.create_model(ENCODER, pretrained=False).pretrained_cfg["hf_hub_id"]  # timm/resnet18.a1_in1k
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return root


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    state = timm.create_model(ENCODER, pretrained=False).state_dict()
    return {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture
def hub_cache(tmp_path: Path, imagenet_state: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    assert constants.HF_HUB_OFFLINE  # tests never download
    cache = _hub_cache(tmp_path / "hub", imagenet_state)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("name", ["flanet", "unet"])
def test_imagenet_weights_load_from_the_hub_cache(hub_cache: Path, imagenet_state: dict, name: str) -> None:
    model = create_model(name, encoder=ENCODER, encoder_weights="imagenet")
    backbone = model.encoder.backbone if name == "flanet" else model.net.encoder.model
    loaded = backbone.state_dict()
    assert loaded
    for key, value in loaded.items():
        torch.testing.assert_close(value, imagenet_state[key], rtol=0, atol=0, msg=key)
    assert model.config["options"]["encoder_weights"] is None  # trained weights travel in checkpoints


def test_offline_without_a_cached_copy_says_how_to_make_a_local_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(EncoderWeightsError) as info:
        create_model("flanet", encoder=ENCODER, encoder_weights="imagenet")
    message = str(info.value)
    assert "timm/resnet18.a1_in1k" in message and "HF_HUB_OFFLINE is set" in message
    assert "torch.save(timm.create_model('resnet18', pretrained=True).state_dict()" in message
    assert "model.encoder_weights=" in message and str(tmp_path / "empty") in message


def test_train_command_reports_missing_weights_without_traceback(tmp_path: Path, monkeypatch, capsys, caplog) -> None:
    from flanet.cli import main
    from flanet.data.synth import generate_dataset

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    data = generate_dataset(tmp_path / "data", videos=3, frames=2, size=32)
    code = main(["train", "--config", "cpu-small", f"data.root={data}", "model.encoder=resnet18",
                 "model.encoder_weights=imagenet", f"output.run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err + caplog.text
    assert code == 2 and "Traceback" not in err and "make a local file" in err
    assert not (tmp_path / "run").exists()  # nothing that looks like a run


def test_hf_home_is_honoured_by_a_fresh_process(tmp_path: Path, imagenet_state: dict) -> None:
    _hub_cache(tmp_path / "home" / "hub", imagenet_state)
    code = ("from flanet.models import create_model; import sys; "
            "m = create_model('flanet-basic', encoder='resnet18', encoder_weights='imagenet'); "
            "sys.stdout.write(repr(float(m.encoder.backbone.conv1.weight.sum())))")
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(float(imagenet_state["conv1.weight"].sum()), rel=1e-6)


def test_encoder_without_pretrained_weights_is_named(monkeypatch) -> None:
    from flanet.models import weights

    original = timm.create_model

    def no_source(name, **kwargs):
        model = original(name, **kwargs)
        model.pretrained_cfg = {}
        return model

    monkeypatch.setattr(weights.timm, "create_model", no_source)
    with pytest.raises(EncoderWeightsError, match="timm has no pretrained weights for encoder 'resnet18'"):
        weights.pretrained_state_dict("resnet18")
