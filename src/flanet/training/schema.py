"""The typed schema of a training configuration (every key is documented in docs/training.md).

``trainer`` holds keyword arguments of :class:`lightning.pytorch.Trainer` under Lightning's own
names, passed through unchanged (as lightning-hydra-template hands its trainer group to
``Trainer``); everything flanet adds itself lives in the other sections (``seed``, ``data.batch_size``,
``output.*``). Names of earlier flanet releases are still read, with a deprecation message
(:data:`DEPRECATED_KEYS`). Standard library only: the command line imports this module.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flanet.defaults import IMAGE_SIZE
from flanet.limits import MAX_IMAGE_SIZE
from flanet.losses.names import MaskLossName
from flanet.models.defaults import DEFAULT_ENCODER
from flanet.typedvalues import WRONG, convert, describe_type


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message says which and why."""


#: Old dotted key -> its new name; the old names are read, with a warning, until they are removed.
DEPRECATED_KEYS: dict[str, str] = {
    "trainer.epochs": "trainer.max_epochs",
    "trainer.val_every_n_epochs": "trainer.check_val_every_n_epoch",
    "trainer.sanity_val_steps": "trainer.num_sanity_val_steps",
    "trainer.progress_bar": "trainer.enable_progress_bar",
    "trainer.batch_size": "data.batch_size",
    "trainer.checkpoint_every_n_steps": "output.checkpoint_every_n_steps",
    "optim.grad_clip": "trainer.gradient_clip_val",
}
#: The release that stops reading the old names of :data:`DEPRECATED_KEYS`.
DEPRECATED_REMOVED_IN = "0.3"


@dataclass(frozen=True)
class ModelConfig:
    """``model``: what :func:`flanet.models.create_model` builds."""

    name: str = "flanet"
    encoder: str = DEFAULT_ENCODER
    encoder_weights: str | None = None
    #: Further ``create_model`` keyword arguments, checked against its signature.
    options: dict[str, Any] = field(default_factory=dict)
    #: Start from these weights: a flanet checkpoint of the same model (local path, ``hf://`` or ``https://``).
    init_from: str | None = None
    #: Expected SHA-256 of ``init_from`` (required for an ``https://`` URL).
    init_from_sha256: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """``data``: the data set, the clips made of it and the loaders."""

    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.1
    #: Share of the videos held out for testing when the set has no split lists (by video, seeded).
    test_fraction: float = 0.2
    image_size: int = IMAGE_SIZE
    edge: Literal["causal", "lookahead"] = "causal"
    augment: bool = False
    heatmap_sigma: float = 5.0
    #: Heatmap centre of a frame with a mask: its bounding box (``mask``, paper) or its ``bbox.json`` box (``box``).
    heatmap_centre: Literal["mask", "box"] = "mask"
    num_workers: int = 4
    #: Global batch, split over all processes: clips, or runs with ``sequence_length``.
    batch_size: int = 24
    #: ``null``: random clips, one target each (paper). ``L``: runs of L consecutive frames, each frame encoded once.
    sequence_length: int | None = None


@dataclass(frozen=True)
class LossConfig:
    """``loss``: the weights of eq. (2), the margin of eq. (1), and the mask terms of the compared methods."""

    bce_weight: float = 1.0
    iou_weight: float = 1.0
    heatmap_weight: float = 1.0
    #: None: the model's default (1 for ``flanet``, else 0), filled in before a run starts.
    contrastive_weight: float | None = None
    alpha: float = 1.0e-3
    #: Named mask loss (``flanet.losses.names``); None: the model's own (``bce-iou``, eq. 2, for FLA-Net).
    mask_loss: MaskLossName | None = None
    dice_weight: float = 1.0
    #: Weight of each deep-supervision side output; None: the model's default (0 without side outputs).
    side_weight: float | None = None


@dataclass(frozen=True)
class OptimConfig:
    """``optim``: Adam and its learning-rate schedule."""

    lr: float = 5.0e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: Literal["none", "cosine", "step"] = "none"
    step_epochs: int = 60
    step_gamma: float = 0.1


@dataclass(frozen=True)
class TrainerConfig:
    """``trainer``: :class:`lightning.pytorch.Trainer` arguments, under Lightning's names.

    Passed through as given, except ``precision: auto`` (resolved by flanet) and ``max_time``
    (a budget per invocation: a resumed run gets it afresh). The defaults are Lightning's
    except ``max_epochs`` (100, paper), ``precision`` (``auto``) and ``log_every_n_steps`` (10);
    no gradient clipping (the paper states none; ``buv-fast`` clips at 0.5 as the released code).
    """

    max_epochs: int = 100
    max_steps: int = -1
    max_time: str | dict[str, float] | None = None
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: int | str = "auto"
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = 1
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 2
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    deterministic: bool | Literal["warn"] = False


@dataclass(frozen=True)
class OutputConfig:
    """``output`` (flanet's): where the run folder goes and how often its resume state is saved."""

    dir: str = "runs"
    run_dir: str | None = None
    #: >0: also write ``checkpoints/resume.ckpt`` every N optimiser steps (always at epoch ends).
    checkpoint_every_n_steps: int = 0


@dataclass(frozen=True)
class DiagnosisConfig:
    """``diagnosis``: the video-level diagnosis head (:mod:`flanet.models.diagnosis`; docs/training.md, "Diagnosis").

    The head is trained jointly with the segmentation when ``weight`` > 0, or alone on the frozen
    features of a trained model with ``task: diagnosis`` (``flanet train --task diagnosis``).
    """

    #: Video labels the head predicts (columns of ``labels.csv``, ``pathology`` of class folders); empty: every
    #: label of the data set whose values are binary.
    labels: list[str] = field(default_factory=list)
    #: Joint training: weight of the head's loss (binary cross-entropy per video and label) beside eq. (2); 0: no head.
    weight: float = 0.0
    #: Pool each frame's features under the predicted ``mask`` or the localisation ``heatmap``.
    pool: Literal["mask", "heatmap"] = "mask"
    hidden: int = 64
    attention: int = 32
    #: ``task: diagnosis``: frames drawn per video for each training step (validation and evaluation
    #: spread ``eval_frames`` over the video).
    frames: int = 8
    eval_frames: int = 32


@dataclass(frozen=True)
class TrainConfig:
    """A complete training configuration; :func:`flanet.training.config.load_config` builds one."""

    name: str = "flanet"
    seed: int = 42
    #: ``segmentation`` (the paper's training, plus the diagnosis head when ``diagnosis.weight`` > 0) or
    #: ``diagnosis`` (the head alone, on the frozen model of ``model.init_from``).
    task: Literal["segmentation", "diagnosis"] = "segmentation"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML, checkpoint metadata, ``load_config`` input)."""
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> TrainConfig:
        """A copy with keys changed: ``config.replace(loss={"contrastive_weight": 1.0}, seed=3)``."""
        changes = {
            key: dataclasses.replace(getattr(self, key), **value) if isinstance(value, dict) else value
            for key, value in sections.items()
        }
        return dataclasses.replace(self, **changes)


#: Keys whose value is a free-form mapping (checked as a whole, not against the schema's keys).
FREE_FORM_KEYS = frozenset({"model.options"})

#: Allowed range of numeric keys: ``(low, high)``, each ``None`` (open) or ``(bound, inclusive)``;
#: every float key must also be finite. Checked by :func:`build`, so a bad value is refused naming
#: its key before anything runs (``trainer.*`` keys are Lightning's to check).
RANGES: dict[str, tuple[tuple[float, bool] | None, tuple[float, bool] | None]] = {
    "data.val_fraction": ((0.0, True), (1.0, False)),
    "data.image_size": ((32, True), (MAX_IMAGE_SIZE, True)),  # a square network input; 352 in the paper
    "data.heatmap_sigma": ((0.0, False), (1024.0, True)),
    "data.num_workers": ((0, True), None),
    "data.batch_size": ((1, True), None),
    "data.sequence_length": ((1, True), None),
    "loss.bce_weight": ((0.0, True), None),
    "loss.iou_weight": ((0.0, True), None),
    "loss.heatmap_weight": ((0.0, True), None),
    "loss.contrastive_weight": ((0.0, True), None),
    "loss.alpha": ((0.0, True), None),
    "optim.lr": ((0.0, False), None),
    "optim.weight_decay": ((0.0, True), None),
    "optim.betas": ((0.0, True), (1.0, False)),
    "optim.step_epochs": ((1, True), None),
    "optim.step_gamma": ((0.0, False), None),
    "trainer.gradient_clip_val": ((0.0, True), None),
    "output.checkpoint_every_n_steps": ((0, True), None),
    "diagnosis.weight": ((0.0, True), None),
    "diagnosis.hidden": ((1, True), None),
    "diagnosis.attention": ((1, True), None),
    "diagnosis.frames": ((1, True), None),
    "diagnosis.eval_frames": ((1, True), None),
}


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """The dataclass ``cls`` from a nested mapping holding every one of its keys, type-checked.

    Numbers are accepted for ``float`` keys and scalars for ``str`` keys (a run named ``2024``);
    anything else of the wrong type is refused.

    Raises:
        ConfigError: naming the key and the type it expects.
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):
        dotted, hint = f"{prefix}{spec.name}", hints[spec.name]
        if dataclasses.is_dataclass(hint):
            values[spec.name] = build(hint, data[spec.name], f"{dotted}.")
        else:
            values[spec.name] = check_range(check_value(data[spec.name], hint, dotted), dotted)
    return cls(**values)


def check_range(value: Any, dotted: str) -> Any:
    """``value`` unchanged when it (each item of a list) is finite and within :data:`RANGES` of ``dotted``.

    Raises:
        ConfigError: naming the key, the range and the value.
    """
    low, high = RANGES.get(dotted, (None, None))
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if not math.isfinite(item):
            raise ConfigError(f"config key '{dotted}' must be a finite number, got {value!r}")
        too_low = low is not None and (item < low[0] or (item == low[0] and not low[1]))
        too_high = high is not None and (item > high[0] or (item == high[0] and not high[1]))
        if too_low or too_high:
            bounds = [f"{'>=' if low[1] else '>'} {low[0]:g}"] if low else []
            bounds += [f"{'<=' if high[1] else '<'} {high[0]:g}"] if high else []
            raise ConfigError(f"config key '{dotted}' must be {' and '.join(bounds)}, got {value!r}")
    return value


def check_value(value: Any, hint: Any, dotted: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, None, Literal, unions, list, dict, Any).

    Raises:
        ConfigError: ``value`` is not of that type.
    """
    converted = convert(value, hint)
    if converted is WRONG:
        origin = typing.get_origin(hint)
        if origin is Literal:
            raise ConfigError(f"config key '{dotted}' must be one of {typing.get_args(hint)}, got {value!r}")
        raise ConfigError(f"config key '{dotted}' expects {describe_type(hint)}, got {value!r}")
    return converted
