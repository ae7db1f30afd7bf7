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


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_validation_reads_the_frozen_model_once_per_batch_and_training_every_step(tmp_path, monkeypatch):
    """The frozen model's inputs of a validation batch are kept (same clips, frozen model): one read, same logits."""
    import flanet.training.diagnosis as module
    from flanet.models import create_model

    video_set = _tree(tmp_path, "video,pathology\nv1,malignant\nv2,benign\n")
    config = load_config("cpu-small", [f"data.root={tmp_path}", "task=diagnosis", "diagnosis.labels=[pathology]"])
    torch.manual_seed(0)
    model = create_model("flanet", encoder="resnet18", neck_channels=[8, 8, 8, 8], decoder_channels=[8, 8, 8, 8],
                         head_channels=8)
    diagnosis = module.DiagnosisModule(config, model)
    clips = ClipDataset(video_set, None, image_size=32, clip_len=3,
                        video_targets=video_targets(video_set, ["pathology"]))
    batch = collate_bags([VideoBags(clips, frames=3)[i] for i in range(2)])
    reads = []
    original = module.clip_inputs
    monkeypatch.setattr(module, "clip_inputs", lambda *args: reads.append(1) or original(*args))
    diagnosis.validation_step(batch, 0)
    diagnosis.validation_step(batch, 0)
    assert len(reads) == 1
    first, second = diagnosis._val
    assert torch.equal(first[0], second[0])  # the same probabilities from the kept inputs
    with torch.no_grad():
        diagnosis.head.classify.bias.add_(1.0)  # the head moves between epochs: its inputs are kept, not its outputs
    diagnosis.validation_step(batch, 0)
    assert len(reads) == 1 and (diagnosis._val[-1][0] > first[0]).all()
    diagnosis.training_step(batch, 0)
    diagnosis.training_step(batch, 0)
    assert len(reads) == 3  # training batches are drawn (and augmented) anew: read every time
