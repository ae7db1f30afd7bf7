"""LightningModule: one FLA-Net (or variant / baseline) trained with the loss of eq. (2)."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from flanet.losses import FLANetLoss, LossTerms, uses_heatmap_prev
from flanet.metrics import names
from flanet.metrics.standard import frame_scores, summarise
from flanet.metrics.video import heatmap_peaks
from flanet.models import SegmentationOutput, create_model
from flanet.models.checkpoint import config_difference, normalise_model_config
from flanet.models.contract import VideoSegmentationModel
from flanet.models.diagnosis import DiagnosisHead, lesion_weight, pooled_features
from flanet.models.registry import ModelError
from flanet.training.model_defaults import resolve_model_defaults
from flanet.training.schema import ConfigError, ModelConfig, TrainConfig
from flanet.training.sequences import run_loss_inputs

log = logging.getLogger(__name__)

#: Key of the model configuration inside Lightning resume checkpoints.
MODEL_CONFIG_KEY = "flanet_model_config"
_RNG_KEY = "flanet_rng_states"
_EPOCH_SUMS_KEY = "flanet_epoch_sums"  # running sums of the epoch's loss terms (mid-epoch resume)
_VAL_SCORES = names.STANDARD_FRAME


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stops, checkpoints are kept."""


def build_model(section: ModelConfig) -> VideoSegmentationModel:
    """Create the model of a training configuration's ``model`` section.

    Raises:
        ConfigError: ``model.options`` the model does not have (also checked by ``load_config``).
    """
    try:
        model = create_model(section.name, encoder=section.encoder, encoder_weights=section.encoder_weights,
                             **section.options)
    except ModelError as error:
        raise ConfigError(f"config key 'model': {error}") from error
    if section.init_from is not None:
        init_weights(model, section.init_from, section.init_from_sha256)
    return model


def init_weights(model: VideoSegmentationModel, reference: str, sha256: str | None = None) -> None:
    """``model.init_from``: loads the weights of a flanet checkpoint of the same model, strictly.

    Args:
        model: the run's model.
        reference: local path, ``hf://`` reference or ``https://`` URL (:mod:`flanet.models.hub`).
        sha256: its expected SHA-256 (required for a URL).

    Raises:
        ConfigError: the checkpoint holds another model, or weights that do not fit.
    """
    from flanet.models.checkpoint import read_checkpoint, stored_model_config
    from flanet.models.hub import resolve_checkpoint

    payload = read_checkpoint(resolve_checkpoint(reference, sha256))
    stored, name = stored_model_config(payload)["name"], model.config["name"]
    if stored != name:
        raise ConfigError(f"config key 'model.init_from': {reference} holds model {stored!r}, the run trains {name!r}")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        raise ConfigError(f"config key 'model.init_from': the weights of {reference} do not fit the run's "
                          f"{name!r} ({str(error).splitlines()[0]} ...)") from error
    log.info("model weights initialised from %s", reference)


class FLANetModule(pl.LightningModule):
    """Training and validation steps for every model of :func:`flanet.models.create_model`.

    With the contrastive term on (model with localisation branch, weight > 0), a batch holds
    4-frame clips ``[t, t-1, t-2, t-3]`` and ``model.forward_windows`` yields ``H_t`` and
    ``H_{t-1}`` from one encoder pass per frame (Section 3.3). Otherwise clips have
    ``model.num_frames`` frames and ``model(clip)`` is used. With ``data.sequence_length`` a batch
    holds runs of consecutive frames instead, each frame encoded once for all the targets of its run
    (:mod:`flanet.training.sequences`); the loss is that of the clips of the same targets.

    Box-only samples (a lesion box, no mask: ``batch["has_mask"]`` False) train the
    localisation branch only: the mask terms of eq. (2) are means over the samples with a mask.
    Validation scores Dice etc. over the samples with a mask and, for models with the
    localisation branch, ``val_centre_error``: the mean distance in pixels (at the training
    resolution) between the heatmap peak and the lesion's box centre, over the samples with a
    lesion. A box-only validation split (box-only samples and no mask showing a lesion, its
    lesion-free frames aside) reports no Dice: ``best.pt`` is then chosen by the centre error.

    With ``diagnosis.weight`` > 0 the diagnosis head (:mod:`flanet.models.diagnosis`) trains jointly:
    each clip's current frame is pooled under its predicted mask (the mask detached: the head does not
    reshape it), the clips of one video in the batch form its bag, and ``weight`` times the per-video
    binary cross-entropy (:func:`~flanet.training.diagnosis.diagnosis_loss`) is added to eq. (2). Validation
    then also gives each label's AUROC over the validation videos (all their annotated frames one bag)
    and the thresholds stored with the head (:func:`~flanet.training.diagnosis.validation_scores`).

    Args:
        config: resolved training configuration (see :mod:`flanet.training.config`); keys
            left to the model (``loss.contrastive_weight: null``) are filled in by
            :func:`~flanet.training.model_defaults.resolve_model_defaults`.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        config = resolve_model_defaults(config)
        self.save_hyperparameters({"config": config.to_dict()})
        self.config = config
        self.model = build_model(config.model)
        if config.data.sequence_length is not None and self.model.init_state().window is None:
            raise ConfigError(f"config key 'data.sequence_length': runs are decoded as causal windows, and model "
                              f"{config.model.name!r} reads a memory of earlier frames beyond a fixed window: train it on clips "
                              "(data.sequence_length: null), which run its memory over each clip")
        self.criterion = FLANetLoss(**dataclasses.asdict(config.loss))
        self.use_previous = uses_heatmap_prev(self.criterion, bool(self.model.has_heatmap))
        self.head: DiagnosisHead | None = None
        self.thresholds: dict[str, float | None] = {}
        self._diagnosis = torch.zeros(())
        if config.diagnosis.weight > 0:
            from flanet.training.diagnosis import build_head

            if config.data.sequence_length is not None:
                raise ConfigError("config key 'diagnosis.weight': the joint diagnosis head trains on clips "
                                  "(data.sequence_length: null); or train it afterwards on the frozen model "
                                  "(task: diagnosis)")

            self.head = build_head(self.model, config.diagnosis)
        self._train_sums: dict[str, Tensor] = {}
        self._val_batches: list[dict[str, Tensor]] = []
        self._pending_rng: dict[str, Any] | None = None
        self._warned_single_video = False
        self.train_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self.val_epoch = -1  # epoch of val_metrics

    # ----------------------------------------------------------------------------- steps
    def _losses(self, batch: Mapping[str, Any]) -> LossTerms:
        """Forward pass and eq. (2) for one training batch (of clips, or of runs with ``data.sequence_length``)."""
        if self.config.data.sequence_length is not None:
            return self.criterion(**run_loss_inputs(self.model, batch, self.use_previous))
        frames = batch["frames"]  # (B, T, 3, S, S), T = num_frames (+1 with the previous frame)
        if self.use_previous:
            windows = self.model.forward_windows(frames)  # each (B, 2, 1, S, S)
            out = SegmentationOutput(windows.mask_logits[:, 0], windows.heatmap[:, 0])
            heatmap_prev = windows.heatmap[:, 1]
            # eq. (1) on the predicted H_{t-1}: usable unless t-1 repeats t or is annotated lesion-free
            positive_valid = batch["prev_distinct"] & ~batch["prev_lesion_free"]
        else:
            out, heatmap_prev, positive_valid = self.model(frames), None, None
        terms = self.criterion(
            out.mask_logits,
            batch["mask"],
            out.heatmap,
            batch["heatmap"] if out.heatmap is not None else None,
            heatmap_prev,
            batch["video_index"],
            batch["has_lesion"],
            positive_valid,
            batch["has_mask"],
            side_logits=out.side_logits,
        )
        if self.head is None:
            return terms
        self._diagnosis = self._diagnosis_loss(batch, out)
        return terms._replace(total=terms.total + self.config.diagnosis.weight * self._diagnosis)

    def _head_inputs(self, frames: Tensor, out: SegmentationOutput) -> Tensor:
        """Per-clip inputs of the diagnosis head: frame t's deepest features under its (detached) lesion map."""
        return pooled_features(self.model.encode(frames[:, 0])[-1],
                               lesion_weight(out, self.config.diagnosis.pool).detach())

    def _diagnosis_loss(self, batch: Mapping[str, Any], out: SegmentationOutput) -> Tensor:
        """The head's loss on the bags of the batch (the clips of each video)."""
        from flanet.training.diagnosis import diagnosis_loss

        videos, groups = torch.unique(batch["video_index"], return_inverse=True)
        logits = self.head(self._head_inputs(batch["frames"], out), groups, len(videos)).logits
        first = torch.full((len(videos),), groups.numel(), device=groups.device).scatter_reduce(
            0, groups, torch.arange(groups.numel(), device=groups.device), reduce="amin")
        return diagnosis_loss(logits, batch["diagnosis_target"][first], batch["diagnosis_known"][first])

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        terms = self._losses(batch)
        finite = bool(torch.isfinite(terms.total).item())
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            values = {k: float(v) for k, v in _term_values(terms).items()}
            raise NonFiniteLossError(
                f"loss is not finite at epoch {self.current_epoch}, step {self.global_step} "
                f"(terms: {values}); the weights were not updated by this batch"
            )
        single_video = terms.negative_fraction is not None and terms.negative_fraction.item() == 0
        if single_video and not self._warned_single_video:
            log.warning(
                "a training batch has no negative for the contrastive loss (eq. 1): no frame with a "
                "lesion from another video; its term is 0 for such batches (logged as "
                "train/negative_fraction)"
            )
            self._warned_single_video = True
        batch_size = _target_count(batch)
        values = _term_values(terms)
        if self.head is not None:
            values["diagnosis"] = self._diagnosis.detach().float()
        for name, value in values.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, prog_bar=name == "loss",
                     batch_size=batch_size)
            self._accumulate(self._train_sums, name, value.detach() * batch_size)
        self._accumulate(self._train_sums, "count", torch.tensor(float(batch_size), device=self.device))
        return terms.total

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        out = self.model(batch["frames"])
        terms = self.criterion(
            out.mask_logits, batch["mask"], out.heatmap,
            batch["heatmap"] if out.heatmap is not None else None,
            has_mask=batch["has_mask"],
        )
        prob = torch.sigmoid(out.mask_logits.float())  # (B, 1, S, S)
        scores = frame_scores(prob, batch["mask"])  # kept for the samples with a mask only
        count = batch["frames"].shape[0]
        scores["loss"] = terms.total.detach().float().expand(count)  # batch mean, per frame
        scores["has_mask"] = batch["has_mask"].to(self.device, torch.float32)  # gatherable by every backend
        scores["has_lesion"] = batch["has_lesion"].to(self.device, torch.float32)
        if out.heatmap is not None:
            scores["centre_error"] = _centre_error(out.heatmap, batch["bbox"], batch["has_lesion"])
        scores["video_index"] = batch["video_index"].to(self.device)
        scores["frame_index"] = batch["frame_index"].to(self.device)
        if self.head is not None:
            scores["head_inputs"] = self._head_inputs(batch["frames"], out).float()
            scores["diagnosis_target"] = batch["diagnosis_target"].to(self.device, torch.float32)
            scores["diagnosis_known"] = batch["diagnosis_known"].to(self.device, torch.float32)
        self._val_batches.append(scores)

    # ------------------------------------------------------------------------ epoch ends
    def on_train_start(self) -> None:
        self._train_sums = {k: v.to(self.device) for k, v in self._train_sums.items()}
        # Also for a run resumed mid-epoch, for which Lightning skips on_train_epoch_start.
        if self._pending_rng is not None:
            _set_rng_states(self._pending_rng)
            self._pending_rng = None

    def on_train_epoch_end(self) -> None:
        sums = {k: self._reduce_sum(v) for k, v in self._train_sums.items()}
        self._train_sums = {}
        count = sums.pop("count", None)
        if count is None or count.item() == 0:
            return
        self.train_metrics = {f"train_{k}": float(v / count) for k, v in sums.items()}
        for name, value in self.train_metrics.items():
            self.log(name.replace("train_", "train/epoch_"), value, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        batches, self._val_batches = self._val_batches, []
        if self.trainer.sanity_checking or not batches:
            return
        merged = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        if self.trainer.world_size > 1:
            merged = {k: self.all_gather(v).flatten(0, 1) for k, v in merged.items()}
        merged = _drop_duplicate_frames(merged)  # the distributed sampler pads with repeats
        self.val_metrics = {"val_loss": float(merged["loss"].mean())}
        with_mask = merged["has_mask"].bool()
        # a box-only split (box-only samples, no mask with a lesion) is scored by the centre error alone
        box_only = bool((~with_mask).any()) and not bool((with_mask & merged["has_lesion"].bool()).any())
        if with_mask.any() and not box_only:  # Dice etc. only where the mask is known
            video_ids = [str(v) for v in merged["video_index"][with_mask].tolist()]
            summary = summarise({k: merged[k][with_mask] for k in _VAL_SCORES}, video_ids)
            self.val_metrics.update({f"val_{k}": summary[k] for k in names.TABLE2})
        if "centre_error" in merged and torch.isfinite(merged["centre_error"]).any():
            error = merged["centre_error"]
            self.val_metrics["val_centre_error"] = float(error[torch.isfinite(error)].mean())
        if self.head is not None:
            self.val_metrics.update(self._validate_head(merged))
        self.val_epoch = self.current_epoch
        for name, value in self.val_metrics.items():
            self.log(name.replace("val_", "val/"), value, prog_bar=name == "val_dice", sync_dist=True)

    def _validate_head(self, merged: dict[str, Tensor]) -> dict[str, float]:
        """Per-video AUROC of the head on the validation frames (each video's frames one bag); sets the thresholds."""
        from flanet.training.diagnosis import validation_scores

        videos, groups = torch.unique(merged["video_index"], return_inverse=True)
        with torch.no_grad():
            probs = torch.sigmoid(self.head(merged["head_inputs"], groups, len(videos)).logits).float()
        first = torch.full((len(videos),), groups.numel(), device=groups.device).scatter_reduce(
            0, groups, torch.arange(groups.numel(), device=groups.device), reduce="amin")
        metrics, self.thresholds = validation_scores(
            probs.cpu().numpy(), merged["diagnosis_target"][first].cpu().numpy(),
            merged["diagnosis_known"][first].bool().cpu().numpy(), list(self.config.diagnosis.labels))
        return metrics

    # ------------------------------------------------------------- optimiser, checkpoints
    def configure_optimizers(self) -> Any:
        optim = self.config.optim
        parameters = [*self.model.parameters(), *(self.head.parameters() if self.head is not None else ())]
        optimizer = torch.optim.Adam(
            parameters, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
        )
        if optim.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, self.config.trainer.max_epochs)
            )
        elif optim.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=optim.step_epochs, gamma=optim.step_gamma)
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_CONFIG_KEY] = dict(self.model.config)
        checkpoint[_RNG_KEY] = _get_rng_states()
        checkpoint[_EPOCH_SUMS_KEY] = {k: v.detach().cpu() for k, v in self._train_sums.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(MODEL_CONFIG_KEY)
        if stored is not None and config_difference(normalise_model_config(stored), self.model.config):
            raise ValueError(
                f"resume checkpoint is for model {stored}, the configuration builds {self.model.config}"
            )
        self._pending_rng = checkpoint.get(_RNG_KEY)
        self._train_sums = dict(checkpoint.get(_EPOCH_SUMS_KEY, {}))  # moved to the device at train start

    # ------------------------------------------------------------------------- helpers
    @staticmethod
    def _accumulate(sums: dict[str, Tensor], name: str, value: Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value.clone()

    def _reduce_sum(self, value: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="sum") if self.trainer.world_size > 1 else value


def _target_count(batch: Mapping[str, Any]) -> int:
    """Target frames of a training batch: its clips, or the targets of its runs (``data.sequence_length``)."""
    return int(batch["target"].sum()) if "target" in batch else int(batch["frames"].shape[0])


def _term_values(terms: LossTerms) -> dict[str, Tensor]:
    """Named scalar terms present in ``terms`` (``loss`` is the weighted total)."""
    values = {
        "loss": terms.total, "bce": terms.bce, "iou": terms.iou, "heatmap_mse": terms.heatmap,
        "contrastive": terms.contrastive, "negative_fraction": terms.negative_fraction,
        "triplet_fraction": terms.triplet_fraction, "dice": terms.dice, "wbce": terms.wbce, "wiou": terms.wiou,
        "side": terms.side, "ssim": terms.ssim,
    }
    return {k: v.detach().float() for k, v in values.items() if v is not None}


def _centre_error(heatmap: Tensor, bbox: Tensor, has_lesion: Tensor) -> Tensor:
    """(B,) distance in pixels from each heatmap's peak to its ``(x1, y1, x2, y2)`` box centre; NaN without lesion."""
    size = (heatmap.shape[-2], heatmap.shape[-1])
    peak = torch.from_numpy(heatmap_peaks(heatmap.float(), size)).to(bbox.device)  # (B, 2) x, y
    error = (peak - (bbox[:, :2] + bbox[:, 2:]) / 2).norm(dim=1)
    return torch.where(has_lesion.bool(), error, torch.full_like(error, float("nan")))


def _drop_duplicate_frames(merged: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the first occurrence of every (video_index, frame_index) pair (vectorised)."""
    key = merged["video_index"].long() * (int(merged["frame_index"].max()) + 1) + merged["frame_index"].long()
    unique, inverse = torch.unique(key, return_inverse=True)
    first = torch.full_like(unique, key.numel()).scatter_reduce(
        0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin"
    )
    return {k: v[first] for k, v in merged.items()}


def _get_rng_states() -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, random) as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`_get_rng_states` captured, so a resumed run repeats the original."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
