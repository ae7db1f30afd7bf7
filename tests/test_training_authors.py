"""Fine-tuning flanet-authors from imported weights with the authors' released loss (issue 25 item 5)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.losses import FLANetLoss
from flanet.models.checkpoint import load_checkpoint, save_checkpoint
from flanet.models.registry import create_model
from flanet.training import train


def _released_structure_loss(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The released train_w_hm.py's structure_loss, as written there (its legacy ``reduce='none'`` included)."""
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wbce = F.binary_cross_entropy_with_logits(pred, mask, reduce="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    pred = torch.sigmoid(pred)
    inter = ((pred * mask) * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def test_structure_loss_is_the_released_loss():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 48, 40, generator=generator) * 3
    mask = torch.zeros(3, 1, 48, 40)
    mask[0, :, 10:30, 5:25] = 1
    mask[1, :, 20:40, 18:36] = 1  # item 2 has no lesion
    heat, target = torch.rand(3, 1, 48, 40, generator=generator), torch.rand(3, 1, 48, 40, generator=generator)
    theirs = _released_structure_loss(logits, mask) + 0.5 * ((heat - target) ** 2).mean()
    ours = FLANetLoss(heatmap_weight=0.5, contrastive_weight=0.0, mask_loss="structure")(logits, mask, heat, target)
    torch.testing.assert_close(ours.total, theirs, rtol=1e-6, atol=1e-6)
    plain = FLANetLoss(heatmap_weight=0.5, contrastive_weight=0.0)(logits, mask, heat, target)
    assert abs(float(plain.total - theirs)) > 1e-3  # the edge weighting changes the IoU term


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=4, frames=4, size=64, seed=0)


def _overrides(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.root={data_root}", "data.image_size=64", "data.batch_size=2", "data.num_workers=0",
            "model.encoder=resnet18", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.accelerator=cpu",
            "trainer.devices=1", "trainer.precision=32-true", "trainer.enable_progress_bar=false",
            f"output.run_dir={run_dir}", *extra]


def test_fine_tuning_starts_from_the_imported_weights(data_root, tmp_path):
    start = create_model("flanet-authors", encoder="resnet18").eval()
    save_checkpoint(tmp_path / "authors.pt", start, {"image_size": 64})
    run = train("authors-finetune", _overrides(data_root, tmp_path / "run", f"model.init_from={tmp_path / 'authors.pt'}",
                                               "optim.lr=1e-9"))
    tuned = load_checkpoint(run / "checkpoints" / "last.pt")
    assert tuned.metadata["encoder_init"] == f"checkpoint {tmp_path / 'authors.pt'}"
    config = tuned.metadata["train_config"]
    assert config["loss"]["mask_loss"] == "structure" and config["loss"]["heatmap_weight"] == 0.5
    assert config["data"]["heatmap_sigma"] == 10.0 and config["data"]["edge"] == "lookahead"
    for key in ("segmentation_head.0.weight", "fusion.reduce.bias", "encoder.conv1.weight"):
        torch.testing.assert_close(tuned.model.state_dict()[key], start.state_dict()[key], rtol=0, atol=1e-6)


def test_init_from_another_model_is_refused(data_root, tmp_path, capsys):
    save_checkpoint(tmp_path / "unet.pt", create_model("unet", encoder="resnet18"))
    code = main(["train", "--config", "authors-finetune",
                 *_overrides(data_root, tmp_path / "run", f"model.init_from={tmp_path / 'unet.pt'}")])
    assert code == 2
    assert "holds model 'unet', the run trains 'flanet-authors'" in capsys.readouterr().err
