"""Training the video-level diagnosis head (:mod:`flanet.models.diagnosis`): labels, loss, validation, frozen runs.

Two ways (docs/training.md, "Diagnosis"):

- **jointly** with the segmentation (``diagnosis.weight`` > 0): :class:`~flanet.training.module.FLANetModule`
  adds ``weight`` times :func:`diagnosis_loss` to eq. (2); the clips of one video in a batch form its bag.
- **on frozen features** (``task: diagnosis``, ``model.init_from`` a trained checkpoint):
  :class:`DiagnosisModule` trains the head alone on bags of ``diagnosis.frames`` clips per video
  (:class:`~flanet.data.bags.VideoBags`); the segmentation model is kept in eval mode, unchanged.

Both validate per video (AUROC per label, :mod:`flanet.metrics.diagnosis`) and choose each label's
threshold on the validation videos (Youden's J), stored in the checkpoints with the head.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from flanet.data import DataError, VideoSet
from flanet.data.bags import VideoBags, collate_bags
from flanet.data.clips import ClipDataset
from flanet.data.labels import binary_targets, label_value
from flanet.metrics import diagnosis as scores
from flanet.metrics.names import diagnosis_name
from flanet.models.contract import VideoSegmentationModel
from flanet.models.diagnosis import DiagnosisHead, clip_inputs, feature_channels
from flanet.training.schema import ConfigError, DiagnosisConfig, TrainConfig

log = logging.getLogger(__name__)

#: The mean validation AUROC over the labels (the progress bar's score; ``best.pt`` is chosen by the head's
#: validation cross-entropy, :func:`flanet.training.callbacks.selection_score`).
SELECTION = "val_diagnosis_auroc"


def binary_label_names(video_set: VideoSet) -> list[str]:
    """The labels of a set whose every value reads as binary (:func:`flanet.data.labels.label_value`)."""
    names = sorted({name for values in video_set.labels.values() for name in values})

    def binary(name: str) -> bool:
        try:
            for values in video_set.labels.values():
                label_value(values.get(name, ""))
        except ValueError:
            return False
        return True
    return [name for name in names if binary(name)]


def uses_head(config: TrainConfig) -> bool:
    """Whether a run trains the diagnosis head (``task: diagnosis`` or ``diagnosis.weight`` > 0)."""
    return config.task == "diagnosis" or config.diagnosis.weight > 0


def resolve_labels(config: TrainConfig, video_set: VideoSet) -> TrainConfig:
    """``config`` with ``diagnosis.labels`` filled in (every binary label of the set when empty) and checked.

    Raises:
        ConfigError: a named label the set does not have, or a run with a head on a set without labels.
        DataError: a label value that is not binary (naming the video).
    """
    if not uses_head(config):
        return config
    available = sorted({name for values in video_set.labels.values() for name in values})
    labels = list(config.diagnosis.labels) or binary_label_names(video_set)
    if not labels:
        raise ConfigError(f"config key 'diagnosis': the run trains a diagnosis head but {video_set.root} has no "
                          "video labels (labels.csv, or benign/ malignant/ folders; docs/data.md)")
    missing = [name for name in labels if name not in available]
    if missing:
        raise ConfigError(f"config key 'diagnosis.labels': {missing} not among the set's labels {available}")
    binary_targets(video_set.labels, labels, [v.id for v in video_set.videos], video_set.root)  # refuse bad values
    return config.replace(diagnosis={"labels": labels})


def video_targets(video_set: VideoSet, labels: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{video: (values (L,), known (L,))}`` of every video of the set."""
    ids = [video.id for video in video_set.videos]
    values, known = binary_targets(video_set.labels, labels, ids, video_set.root)
    return {video: (values[i], known[i]) for i, video in enumerate(ids)}


def build_head(model: VideoSegmentationModel, section: DiagnosisConfig) -> DiagnosisHead:
    """The head of a run, on ``model``'s deepest encoder map."""
    return DiagnosisHead(feature_channels(model), section.labels, section.hidden, section.attention, section.pool)


def diagnosis_loss(logits: Tensor, targets: Tensor, known: Tensor) -> Tensor:
    """Mean binary cross-entropy over the known (video, label) cells; 0 (with a gradient) when none is known."""
    known = known.bool()
    cells = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    return (cells * known).sum() / known.sum().clamp_min(1)


def validation_scores(probs: np.ndarray, targets: np.ndarray, known: np.ndarray,
                      labels: list[str]) -> tuple[dict[str, float], dict[str, float | None]]:
    """Per-video validation: ``val_<label>_auroc``, their mean ``val_diagnosis_auroc``, and the thresholds (Youden).

    A label without both classes among its known videos has no AUROC and no threshold.
    """
    metrics: dict[str, float] = {}
    thresholds: dict[str, float | None] = {}
    for column, label in enumerate(labels):
        mask = known[:, column]
        p, y = probs[mask, column], targets[mask, column] > 0.5
        thresholds[label] = scores.youden_threshold(p, y)
        if thresholds[label] is not None:
            metrics[f"val_{diagnosis_name(label, 'auroc')}"] = float(scores.auroc(p, y)[0])
    if metrics:
        metrics[SELECTION] = float(np.mean(list(metrics.values())))
    return metrics, thresholds


class DiagnosisModule(pl.LightningModule):
    """``task: diagnosis``: the head trained alone on the frozen model of ``model.init_from``.

    The model's weights do not change and it stays in eval mode (its BatchNorm statistics too); its
    per-frame outputs are computed without gradients (:func:`flanet.models.diagnosis.clip_inputs`), once per
    clip where its frames do not change between epochs (:meth:`_inputs`). The head's inputs are
    standardised on the first epoch's training bags before the first step (:meth:`on_fit_start`).
    Validation gives ``val_loss`` (the head's cross-entropy, by which ``best.pt`` is chosen),
    ``val_<label>_auroc``, ``val_diagnosis_auroc`` (their mean) and the thresholds stored with the head.
    """

    def __init__(self, config: TrainConfig, model: VideoSegmentationModel) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config.to_dict()})
        self.config = config
        self.model = model.eval().requires_grad_(False)
        self.head = build_head(model, config.diagnosis)
        self.thresholds: dict[str, float | None] = {}
        self.train_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self.val_epoch = -1
        self._train_sums: list[tuple[float, int]] = []
        self._val: list[tuple[Tensor, Tensor, Tensor]] = []
        #: the frozen model's head inputs of each clip read so far, by (video, frame) (:meth:`_inputs`)
        self._kept: dict[tuple[str, int], Tensor] = {}
        self._keep_training = not config.data.augment

    def train(self, mode: bool = True) -> DiagnosisModule:
        super().train(mode)
        self.model.eval()  # frozen: its BatchNorm statistics must not move
        return self

    def _inputs(self, batch: Mapping[str, Any], keep: bool) -> Tensor:
        """The frozen model's per-frame head inputs of a batch of bags (:func:`clip_inputs`).

        ``keep``: each clip's inputs are computed once and kept, by (video, frame): the model does not
        change, only the head, so a clip whose frames are the same each time it is drawn (validation,
        and training without ``data.augment``) has the same inputs every epoch.
        """
        pool = self.config.diagnosis.pool
        if not keep:
            with torch.no_grad():
                return clip_inputs(self.model, batch["frames"], pool)[0]
        keys = [(batch["video"][group], index) for group, index in zip(batch["groups"].tolist(),
                                                                       batch["frame_index"].tolist())]
        missing = [i for i, key in enumerate(keys) if key not in self._kept]
        if missing:
            with torch.no_grad():
                computed, _ = clip_inputs(self.model, batch["frames"][missing], pool)
            self._kept.update((keys[i], row) for i, row in zip(missing, computed))
        return torch.stack([self._kept[key] for key in keys])

    def _logits(self, batch: Mapping[str, Any], keep: bool) -> Tensor:
        """The head's logits of a batch of bags (its inputs kept or not, :meth:`_inputs`)."""
        return self.head(self._inputs(batch, keep), batch["groups"], len(batch["video"])).logits

    def on_fit_start(self) -> None:
        """Standardise the head's inputs (:meth:`DiagnosisHead.standardize`) on the first epoch's training bags.

        Skipped on resume (the head's standardisation is restored with it). Without ``data.augment`` those
        inputs are kept and the first epoch reads no clip again; with it this is one more pass of the model.
        """
        if self.trainer.ckpt_path is not None:
            return
        datamodule = self.trainer.datamodule
        datamodule.set_epoch(0)
        log.info("diagnosis: standardising the head's inputs on the first epoch's training bags")
        inputs = [self._inputs({**batch, "frames": batch["frames"].to(self.device)}, self._keep_training)
                  for batch in datamodule.train_dataloader()]
        self.head.standardize(torch.cat(inputs))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = diagnosis_loss(self._logits(batch, self._keep_training), batch["diagnosis_target"],
                              batch["diagnosis_known"])
        self.log("train/diagnosis", loss.detach(), on_step=True, prog_bar=True, batch_size=len(batch["video"]))
        self._train_sums.append((float(loss.detach()) * len(batch["video"]), len(batch["video"])))
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._val.append((torch.sigmoid(self._logits(batch, keep=True)).float().cpu(), batch["diagnosis_target"].cpu(),
                          batch["diagnosis_known"].cpu()))

    def on_train_epoch_start(self) -> None:
        self.trainer.datamodule.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        sums, self._train_sums = self._train_sums, []
        count = sum(n for _, n in sums)
        if count:
            self.train_metrics = {"train_diagnosis": sum(v for v, _ in sums) / count, "train_loss": sum(v for v, _ in sums) / count}

    def on_validation_epoch_end(self) -> None:
        gathered, self._val = self._val, []
        if self.trainer.sanity_checking or not gathered:
            return
        probs, targets, known = (torch.cat(parts).numpy() for parts in zip(*gathered))
        logits = torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6))
        loss = float(diagnosis_loss(logits, torch.from_numpy(targets), torch.from_numpy(known)))
        metrics, self.thresholds = validation_scores(probs, targets, known, list(self.config.diagnosis.labels))
        self.val_metrics = {"val_loss": loss, **metrics}
        self.val_epoch = self.current_epoch
        for name, value in self.val_metrics.items():
            self.log(name.replace("val_", "val/"), value, prog_bar=name == SELECTION)

    def configure_optimizers(self) -> Any:
        optim = self.config.optim
        return torch.optim.Adam(self.head.parameters(), lr=optim.lr, betas=tuple(optim.betas),
                                weight_decay=optim.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from flanet.training.module import MODEL_CONFIG_KEY

        checkpoint[MODEL_CONFIG_KEY] = dict(self.model.config)


class BagDataModule(pl.LightningDataModule):
    """``task: diagnosis``: bags of ``diagnosis.frames`` clips per labelled video; ``data.batch_size`` videos per step.

    Args:
        config: resolved training configuration (``diagnosis.labels`` filled in).
        clip_len: frames per clip of the model.
        video_set: the set with its ``train``/``val`` splits chosen.
    """

    def __init__(self, config: TrainConfig, clip_len: int, video_set: VideoSet) -> None:
        super().__init__()
        self.config, self.clip_len, self.video_set = config, clip_len, video_set
        self.train_bags: VideoBags | None = None
        self.val_bags: VideoBags | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_bags is not None:
            return
        data, section = self.config.data, self.config.diagnosis
        targets = video_targets(self.video_set, list(section.labels))
        common = dict(image_size=data.image_size, clip_len=self.clip_len, edge="causal", video_targets=targets)
        self.train_bags = VideoBags(ClipDataset(self.video_set, "train", augment=data.augment, seed=self.config.seed,
                                                **common), section.frames, random=True, seed=self.config.seed)
        if self.video_set.splits.get("val"):
            try:
                self.val_bags = VideoBags(ClipDataset(self.video_set, "val", **common), section.eval_frames)
            except DataError as error:
                log.warning("no diagnosis validation (%s): best.pt is not chosen, last.pt is the run's", error)

    def set_epoch(self, epoch: int) -> None:
        """The random draws of the training bags (and their augmentation) for ``epoch``."""
        if self.train_bags is not None:
            self.train_bags.set_epoch(epoch)
            self.train_bags.clips.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed + self.trainer.current_epoch)
        return DataLoader(self.train_bags, batch_size=self.config.data.batch_size, shuffle=True, generator=generator,
                          num_workers=self.config.data.num_workers, collate_fn=collate_bags)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_bags is None:
            return []
        return DataLoader(self.val_bags, batch_size=self.config.data.batch_size, shuffle=False,
                          num_workers=self.config.data.num_workers, collate_fn=collate_bags)


def frozen_model(config: TrainConfig) -> VideoSegmentationModel:
    """The trained model of ``model.init_from`` for ``task: diagnosis``, rebuilt from its checkpoint (its own
    name and options: the recipe's ``model`` section need not repeat them).

    Raises:
        ConfigError: no ``model.init_from`` (a diagnosis on the features of an untrained model), or a
            checkpoint that cannot be read.
    """
    from flanet.models.checkpoint import CheckpointError, load_checkpoint
    from flanet.models.hub import resolve_checkpoint

    if config.model.init_from is None:
        raise ConfigError("config key 'model.init_from': task 'diagnosis' trains the head on the frozen features of a "
                          "trained model: give its checkpoint, e.g. model.init_from=runs/<run>/checkpoints/best.pt")
    try:
        loaded = load_checkpoint(resolve_checkpoint(config.model.init_from, config.model.init_from_sha256))
    except CheckpointError as error:
        raise ConfigError(f"config key 'model.init_from': {error}") from error
    trained = loaded.model.trained_image_size
    if trained is not None and trained != config.data.image_size:
        log.warning("model.init_from was trained at %d px, data.image_size is %d: its masks and features will "
                    "differ from the ones it was trained to give", trained, config.data.image_size)
    return loaded.model
