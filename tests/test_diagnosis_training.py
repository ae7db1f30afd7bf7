"""Training the diagnosis head (issue 30 item 2): labels resolved, bags of clips, masked loss, validation thresholds."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from flanet.data import ClipDataset, discover
from flanet.data.bags import VideoBags, collate_bags, spread
from flanet.training.config import load_config
from flanet.training.diagnosis import diagnosis_loss, resolve_labels, uses_head, validation_scores, video_targets
from flanet.training.schema import ConfigError


def _tree(root, labels: str, videos=("v1", "v2", "v3"), frames=5):
    for name in videos:
        for kind in ("img_list", "mask_list"):
            (root / kind / name).mkdir(parents=True, exist_ok=True)
        for index in range(frames):
            cv2.imwrite(str(root / "img_list" / name / f"{index:03d}.png"), np.full((16, 16, 3), 10 * index, np.uint8))
            mask = np.zeros((16, 16), np.uint8)
            mask[4:9, 4:9] = 255
            cv2.imwrite(str(root / "mask_list" / name / f"{index:03d}.png"), mask)
    (root / "labels.csv").write_text(labels)
    return discover(root)


def test_spread_takes_first_and_last_and_evenly_between():
    assert spread(9, 3).tolist() == [0, 4, 8]
    assert spread(3, 8).tolist() == [0, 1, 2]


def test_loss_is_the_mean_cross_entropy_over_known_cells():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    known = torch.tensor([[True, False], [True, False]])
    # cells (0, 0): -log(sigmoid(0)) = log 2; (1, 0): -log(1 - sigmoid(1)) = log(1 + e)
    expected = (math.log(2) + math.log(1 + math.e)) / 2
    assert float(diagnosis_loss(logits, targets, known)) == pytest.approx(expected, rel=1e-6)
    assert float(diagnosis_loss(logits, targets, torch.zeros_like(known))) == 0.0


def test_validation_scores_and_thresholds_per_label():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.3], [0.6, 0.4], [0.2, 0.5]])
    targets = np.array([[1, 0], [1, 0], [1, 0], [0, 0], [0, 0]], np.float32)
    known = np.ones((5, 2), bool)
    metrics, thresholds = validation_scores(probs, targets, known, ["pathology", "aln"])
    assert metrics == {"val_pathology_auroc": pytest.approx(5 / 6), "val_diagnosis_auroc": pytest.approx(5 / 6)}
    assert thresholds == {"pathology": 0.8, "aln": None}  # aln: one class, no threshold


def test_labels_default_to_every_binary_label_and_are_checked(tmp_path):
    video_set = _tree(tmp_path, "video,pathology,birads,aln\nv1,malignant,4a,present\nv2,benign,3,\n")
    config = load_config("cpu-small", ["diagnosis.weight=1"])
    assert uses_head(config) and not uses_head(load_config("cpu-small"))
    assert resolve_labels(config, video_set).diagnosis.labels == ["aln", "pathology"]  # birads is not binary
    with pytest.raises(ConfigError, match=r"\['size'\] not among the set's labels"):
        resolve_labels(load_config("cpu-small", ["diagnosis.weight=1", "diagnosis.labels=[size]"]), video_set)


def test_a_head_on_a_set_without_labels_is_refused(tmp_path):
    video_set = _tree(tmp_path, "video,note\n")
    with pytest.raises(ConfigError, match="has no video labels"):
        resolve_labels(load_config("cpu-small", ["task=diagnosis"]), video_set)


def test_bags_hold_clips_of_one_labelled_video(tmp_path):
    video_set = _tree(tmp_path, "video,pathology\nv1,malignant\nv2,benign\n")
    targets = video_targets(video_set, ["pathology"])
    clips = ClipDataset(video_set, None, image_size=32, clip_len=3, video_targets=targets)
    assert clips[0]["diagnosis_target"].tolist() == [1.0] and clips[0]["diagnosis_known"].tolist() == [True]
    bags = VideoBags(clips, frames=3)
    assert bags.videos == ["v1", "v2"]  # v3 has no label
    item = bags[1]
    assert item["frames"].shape == (3, 3, 3, 32, 32) and item["frame_index"].tolist() == [0, 2, 4]
    assert item["diagnosis_target"].tolist() == [0.0]
    drawn = VideoBags(clips, frames=2, random=True, seed=1)
    assert drawn[0]["frame_index"].tolist() == VideoBags(clips, frames=2, random=True, seed=1)[0]["frame_index"].tolist()
    batch = collate_bags([bags[0], drawn[1]])
    assert batch["frames"].shape[0] == 5 and batch["groups"].tolist() == [0, 0, 0, 1, 1]


def _frozen_module(tmp_path, *overrides):
    """A ``task: diagnosis`` module on a tiny random FLA-Net, and a batch of the two labelled videos' bags."""
    import flanet.training.diagnosis as module
    from flanet.models import create_model

    video_set = _tree(tmp_path, "video,pathology\nv1,malignant\nv2,benign\n")
    config = load_config("cpu-small", [f"data.root={tmp_path}", "task=diagnosis", "diagnosis.labels=[pathology]",
                                       *overrides])
    torch.manual_seed(0)
    model = create_model("flanet", encoder="resnet18", neck_channels=[8, 8, 8, 8], decoder_channels=[8, 8, 8, 8],
                         head_channels=8)
    clips = ClipDataset(video_set, None, image_size=32, clip_len=3,
                        video_targets=video_targets(video_set, ["pathology"]))
    return module, module.DiagnosisModule(config, model), clips


def _count_reads(module, monkeypatch) -> list[int]:
    """Clips the frozen model reads through ``clip_inputs`` from now on, one entry per call."""
    reads: list[int] = []
    original = module.clip_inputs
    monkeypatch.setattr(module, "clip_inputs", lambda model, clips, *rest: reads.append(len(clips)) or
                        original(model, clips, *rest))
    return reads


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_validation_reads_the_frozen_model_once_per_clip(tmp_path, monkeypatch):
    """The frozen model's inputs of a validation clip are kept (same clips, frozen model): one read, same logits."""
    module, diagnosis, clips = _frozen_module(tmp_path, "data.augment=true")
    batch = collate_bags([VideoBags(clips, frames=3)[i] for i in range(2)])
    reads = _count_reads(module, monkeypatch)
    diagnosis.validation_step(batch, 0)
    diagnosis.validation_step(batch, 0)
    assert reads == [6]
    first, second = diagnosis._val
    assert torch.equal(first[0], second[0])  # the same probabilities from the kept inputs
    with torch.no_grad():
        diagnosis.head.classify.bias.add_(1.0)  # the head moves between epochs: its inputs are kept, not its outputs
    diagnosis.validation_step(batch, 0)
    assert reads == [6] and (diagnosis._val[-1][0] > first[0]).all()
    diagnosis.training_step(batch, 0)
    diagnosis.training_step(batch, 0)
    assert reads == [6, 6, 6]  # augmented training clips differ each time they are drawn: read every time


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_without_augmentation_training_reads_each_clip_once_and_only_the_new_ones(tmp_path, monkeypatch):
    module, diagnosis, clips = _frozen_module(tmp_path)  # data.augment: false (the default)
    batch = collate_bags([VideoBags(clips, frames=3)[i] for i in range(2)])  # frames 0, 2, 4 of each video
    reads = _count_reads(module, monkeypatch)
    loss = diagnosis.training_step(batch, 0)
    again = diagnosis.training_step(batch, 0)
    assert reads == [6] and torch.equal(loss, again)
    wider = collate_bags([VideoBags(clips, frames=4)[i] for i in range(2)])  # frames 0, 1, 3, 4 of each video
    diagnosis.training_step(wider, 0)
    assert reads == [6, 4]  # only the clips not read before (1 and 3 of each video)


def test_fit_start_standardises_the_head_on_the_first_epochs_training_bags(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from flanet.models.diagnosis import clip_inputs
    from flanet.training.diagnosis import BagDataModule

    module, diagnosis, _ = _frozen_module(tmp_path, "diagnosis.frames=3", "data.image_size=32", "data.batch_size=2")
    video_set = discover(tmp_path)
    video_set.splits.update(train=["v1", "v2"])
    data = BagDataModule(diagnosis.config, 3, video_set)
    data.setup("fit")
    diagnosis.trainer = SimpleNamespace(ckpt_path=None, datamodule=data, current_epoch=0)
    data.trainer = diagnosis.trainer
    reads = _count_reads(module, monkeypatch)
    diagnosis.on_fit_start()
    data.set_epoch(0)
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        expected = clip_inputs(diagnosis.model, batch["frames"])[0]
    torch.testing.assert_close(diagnosis.head.input_mean, expected.mean(0))
    torch.testing.assert_close(diagnosis.head.input_scale[expected.std(0, unbiased=False) > 1e-4],
                               expected.std(0, unbiased=False)[expected.std(0, unbiased=False) > 1e-4])
    assert reads == [6]
    diagnosis._inputs(batch, keep=True)
    assert reads == [6]  # the first epoch's clips were kept by the standardisation pass
    diagnosis.trainer = SimpleNamespace(ckpt_path="resume.ckpt", datamodule=data, current_epoch=0)
    diagnosis.head.input_mean.zero_()
    diagnosis.on_fit_start()
    assert diagnosis.head.input_mean.abs().max() == 0  # resumed: the restored standardisation is kept


def test_a_diagnosis_run_is_chosen_by_validation_cross_entropy_once_its_auroc_saturates():
    from flanet.training.callbacks import selection_score

    early = selection_score({"val_loss": 0.52, "val_diagnosis_auroc": 1.0, "val_pathology_auroc": 1.0})
    later = selection_score({"val_loss": 0.02, "val_diagnosis_auroc": 1.0, "val_pathology_auroc": 1.0})
    assert early == ("val_loss", -0.52) and later[1] > early[1]
    assert selection_score({"val_loss": 0.3, "val_dice": 0.8}) == ("val_dice", 0.8)  # segmentation: Dice
