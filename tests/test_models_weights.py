"""Offline encoder weights and flanet checkpoints: round trips and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from flanet.models import CheckpointError, EncoderWeightsError, create_model, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def imagenet_like_state() -> dict[str, torch.Tensor]:
    """A full timm resnet18 state dict, classifier included (as ImageNet files are)."""
    torch.manual_seed(1)
    return timm.create_model("resnet18", pretrained=False).state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_round_trip(tmp_path: Path, imagenet_like_state: dict, suffix: str) -> None:
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(imagenet_like_state, path)
    else:
        save_file({k: v.contiguous() for k, v in imagenet_like_state.items()}, str(path))
    model = create_model("flanet", encoder="resnet18", encoder_weights=path)
    loaded = model.encoder.backbone.state_dict()
    assert loaded.keys() <= imagenet_like_state.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, imagenet_like_state[key])
    assert model.config["options"]["encoder_weights"] is None  # trained weights travel in checkpoints


def test_encoder_weights_prefixed_and_wrapped(tmp_path: Path, imagenet_like_state: dict) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_like_state.items()}}, path)
    model = create_model("unet", encoder="resnet18", encoder_weights=path)
    torch.testing.assert_close(model.net.encoder.model.conv1.weight, imagenet_like_state["conv1.weight"])


def test_encoder_weights_that_do_not_fit(tmp_path: Path, imagenet_like_state: dict) -> None:
    broken = dict(imagenet_like_state)
    del broken["layer2.0.conv1.weight"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(EncoderWeightsError, match=r"broken\.pth.*missing keys: layer2\.0\.conv1\.weight.*unexpected keys: extra\.weight"):
        create_model("flanet", encoder="resnet18", encoder_weights=path)


def test_encoder_weights_of_another_encoder(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), path)
    with pytest.raises(EncoderWeightsError, match="does not fit|do not fit"):
        create_model("flanet", encoder="resnet18", encoder_weights=path)


def test_encoder_weights_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EncoderWeightsError, match="not found"):
        create_model("flanet", encoder="resnet18", encoder_weights=tmp_path / "nope.pth")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = create_model("flanet", encoder="resnet18", decoder_channels=(64, 32, 32, 16)).eval()
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, {"epoch": 3, "val_dice": 0.5})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.metadata == {"epoch": 3, "val_dice": 0.5}
    assert not loaded.model.training
    clip = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip).mask_logits, model(clip).mask_logits)
    torch.load(path, weights_only=True)  # the file itself is weights_only-loadable


def test_checkpoint_of_different_configuration(tmp_path: Path) -> None:
    model = create_model("flanet-lb", encoder="resnet18")
    path = save_checkpoint(tmp_path / "model.pt", model)
    expected = dict(model.config, name="flanet")  # same options, another model
    with pytest.raises(CheckpointError, match="different model configuration.*name"):
        load_checkpoint(path, expected_config=expected)


def test_checkpoint_not_found_and_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a flanet checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_with_a_flipped_weight_byte_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", create_model("flanet-basic", encoder="resnet18"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the middle of the file lies inside the encoder's weights
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_git_lfs_pointer_is_named(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(CheckpointError, match="not a torch checkpoint file.*git lfs pull"):
        load_checkpoint(path)
