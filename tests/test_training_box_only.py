"""Box-only frames (lesion box, no mask: CVA-Net layout) train the heatmap branch only."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from flanet.cli import main
from flanet.data import ClipDataset, discover
from flanet.data.synth import generate_dataset
from flanet.losses import FLANetLoss, bce_loss, heatmap_mse, iou_loss
from flanet.models import load_checkpoint
from flanet.training import load_config
from flanet.training.module import FLANetModule

HEIGHT, WIDTH = 48, 64


def _cva_net(root: Path, videos: dict[str, list[tuple[int, int] | None]], split: str) -> None:
    """Frames of ``videos`` under ``rawframes/`` (a bright 12x10 lesion at each given top-left corner)
    and their boxes in ``<split>.json``; a ``None`` entry is a listed, lesion-free frame."""
    images, annotations = [], []
    for video, corners in videos.items():
        folder = root / "rawframes" / video
        folder.mkdir(parents=True)
        for index, corner in enumerate(corners):
            frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
            name = f"{index:06d}.png"
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": f"{video}/{name}", "width": WIDTH, "height": HEIGHT})
            if corner is not None:
                x, y = corner
                frame[y:y + 10, x:x + 12] = 230
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                    "bbox": [x, y, 12, 10]})
            cv2.imwrite(str(folder / name), frame)
    (root / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def test_box_only_sample_gets_heatmap_gradient_and_no_mask_gradient() -> None:
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    heatmap = torch.rand(2, 1, 4, 4, requires_grad=True)
    target = torch.rand(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 1:3, 1:3] = 1
    has_mask = torch.tensor([True, False])
    FLANetLoss()(logits, mask, heatmap, target, has_mask=has_mask).total.backward()
    assert torch.equal(logits.grad[1], torch.zeros(1, 4, 4)) and logits.grad[0].abs().sum() > 0
    # d/dh mean((h - g)^2) over 2*16 pixels = 2 (h - g) / 32, for both items
    assert torch.allclose(heatmap.grad, 2 * (heatmap - target).detach() / 32)
    assert heatmap.grad[1].abs().sum() > 0


def test_mixed_batch_loss_is_the_per_sample_terms_combined() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=generator)
    mask = (torch.rand(3, 1, 8, 8, generator=generator) > 0.6).float()
    heatmap, target = torch.rand(3, 1, 8, 8, generator=generator), torch.rand(3, 1, 8, 8, generator=generator)
    has_mask = torch.tensor([True, False, True])
    terms = FLANetLoss(bce_weight=2.0, iou_weight=3.0, heatmap_weight=5.0)(
        logits, mask, heatmap, target, has_mask=has_mask)
    bce = [F.binary_cross_entropy_with_logits(logits[b], mask[b]) for b in (0, 2)]
    prob = torch.sigmoid(logits)
    iou = [1 - ((prob[b] * mask[b]).sum() + 1) / ((prob[b] + mask[b] - prob[b] * mask[b]).sum() + 1) for b in (0, 2)]
    mse = ((heatmap - target) ** 2).mean()  # over every sample, box-only included
    assert torch.allclose(terms.bce, (bce[0] + bce[1]) / 2) and torch.allclose(terms.iou, (iou[0] + iou[1]) / 2)
    assert torch.allclose(terms.total, 2 * terms.bce + 3 * terms.iou + 5 * mse)
    every = torch.ones(3, dtype=torch.bool)
    assert torch.equal(bce_loss(logits, mask, every), bce_loss(logits, mask))  # all masked: the plain mean
    assert torch.allclose(iou_loss(logits, mask, has_mask=every), iou_loss(logits, mask))
    none = torch.zeros(3, dtype=torch.bool)
    assert bce_loss(logits, mask, none).item() == 0 and iou_loss(logits, mask, has_mask=none).item() == 0


def test_clip_dataset_takes_box_frames_and_listed_lesion_free_frames_as_targets(tmp_path: Path) -> None:
    _cva_net(tmp_path, {"v1": [(10, 6), None, (20, 30)]}, "train")
    _cva_net(tmp_path / "other", {"v2": [(4, 4)]}, "val")
    (tmp_path / "other" / "val.json").rename(tmp_path / "val.json")
    (tmp_path / "other" / "rawframes" / "v2").rename(tmp_path / "rawframes" / "v2")
    (tmp_path / "rawframes" / "v1" / "000003.png").write_bytes((tmp_path / "rawframes" / "v1" / "000000.png").read_bytes())
    video_set = discover(tmp_path)  # 000003.png is on disk but listed nowhere: context only
    assert video_set.video("v1").lesion_free == [False, True, False, False]
    dataset = ClipDataset(video_set, "train", image_size=32, box_targets=True)
    assert dataset.samples[:, 1].tolist() == [0, 1, 2]
    first, free, third = dataset[0], dataset[1], dataset[2]
    assert not first["has_mask"] and first["has_lesion"] and first["mask"].sum() == 0
    row, col = divmod(int(first["heatmap"].argmax()), 32)  # box (10, 6, 22, 16) at 32/64 x, 32/48 y
    assert torch.allclose(first["bbox"], torch.tensor([5.0, 4.0, 11.0, 32 * 16 / 48]))
    assert abs(col + 0.5 - 8.0) <= 0.5 and abs(row + 0.5 - (4 + 32 * 16 / 48) / 2) <= 0.5  # peak at the box centre
    assert free["has_mask"] and not free["has_lesion"] and free["heatmap"].sum() == 0
    assert not third["has_mask"] and third["has_lesion"]
    with_previous = ClipDataset(video_set, "train", image_size=32, box_targets=True, with_previous=True)
    assert bool(with_previous[2]["prev_lesion_free"]) and not bool(with_previous[1]["prev_lesion_free"])


def test_mixed_set_batch_carries_has_mask_into_the_loss(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "data", videos=2, frames=3, size=64, seed=0)
    shutil.rmtree(root / "mask_list" / "video001")  # its bbox.json boxes stay: a box-only video
    dataset = ClipDataset(discover(root), None, image_size=64, box_targets=True)
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    assert batch["has_mask"].tolist() == [True, True, True, False, False, False]
    module = FLANetModule(load_config("cpu-small", ["data.image_size=64", "loss.contrastive_weight=0"])).eval()
    with torch.no_grad():
        terms = module._losses(batch)
        out = module.model(batch["frames"])
    keep = batch["has_mask"]
    assert torch.allclose(terms.bce, bce_loss(out.mask_logits[keep], batch["mask"][keep]))
    assert torch.allclose(terms.iou, iou_loss(out.mask_logits[keep], batch["mask"][keep]))
    assert torch.allclose(terms.heatmap, heatmap_mse(out.heatmap, batch["heatmap"]))  # every sample


def _train(args: list[str]) -> int:
    return main(["train", "--config", "cpu-small", "data.image_size=64", "trainer.progress_bar=false", *args])


def test_flanet_trains_on_a_box_only_set_and_selects_best_by_centre_error(tmp_path: Path) -> None:
    root = tmp_path / "cva"
    root.mkdir()
    _cva_net(root, {f"t{v}": [(4 + 6 * i + v, 6 + 4 * i) for i in range(4)] for v in range(2)}, "train")
    _cva_net(root / "v", {"val1": [(30, 20), (32, 22), None]}, "val")
    (root / "v" / "val.json").rename(root / "val.json")
    (root / "v" / "rawframes" / "val1").rename(root / "rawframes" / "val1")
    run_dir = tmp_path / "run"
    assert _train([f"data.root={root}", f"output.run_dir={run_dir}", "trainer.epochs=1"]) == 0
    with (run_dir / "metrics.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["val_dice"] == "" and float(row["val_centre_error"]) >= 0  # no val mask but the lesion-free one
    assert float(row["train_heatmap_mse"]) > 0 and float(row["train_bce"]) == 0 and float(row["train_iou"]) == 0
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best.metadata["metrics"]["val_centre_error"] == pytest.approx(float(row["val_centre_error"]))


def test_models_without_heatmap_refuse_a_box_only_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _cva_net(tmp_path / "cva", {"a": [(4, 4), (6, 6), (8, 8)], "b": [(10, 10), (12, 12), (14, 14)]}, "train")
    run_dir = tmp_path / "run"
    assert _train([f"data.root={tmp_path / 'cva'}", f"output.run_dir={run_dir}", "model.name=flanet-basic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flanet train: error: split 'train' has lesion boxes but no masks")
    assert "without the localisation branch" in err[0] and not run_dir.exists()
