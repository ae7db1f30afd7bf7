"""Crash-safe resume state: ``checkpoints/resume.ckpt`` every epoch and every N steps.

The resume checkpoint is Lightning's full training state (weights, Adam, loop counters, callback
and data-module states, RNG states). :class:`ResumeState` writes it at the end of every training
epoch, after every ``output.checkpoint_every_n_steps`` optimiser steps, and at the step where a
stop criterion (``trainer.max_time``, ``trainer.max_steps``) ends the run mid-epoch;
:class:`AtomicCheckpointIO` writes it to a temporary file in the checkpoint folder and renames it
into place, so a ``kill -9`` at any moment leaves the previous state intact. A run resumed from a
mid-epoch state continues with the next batch of the same epoch (see
:class:`ResumableSampler`) and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, Timer
from torch.utils.data import DistributedSampler

from flanet.data import ClipDataset
from flanet.fileio import atomic_path, atomic_write_text, file_sha256
from flanet.training.config import ConfigError

log = logging.getLogger(__name__)

_CLOCK = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer: temporary file in the destination folder, then ``os.replace``.

    Lightning's own writer stages the file in ``TMPDIR`` and moves it, which is a copy (and a
    truncated file on a kill or a full disk) when ``TMPDIR`` is on another file system. Its SHA-256
    is written beside it (:func:`hash_path`), so a resume verifies the file as ``.pt`` files are
    (:func:`verify_resume_checkpoint`, issue 22 item 5).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
            digest = file_sha256(tmp)
        atomic_write_text(hash_path(Path(path)), f"{digest}  {Path(path).name}\n")


def hash_path(checkpoint: Path) -> Path:
    """``<checkpoint>.sha256``: the SHA-256 of a resume checkpoint, written beside it (``sha256sum`` format)."""
    return checkpoint.with_name(checkpoint.name + ".sha256")


def verify_resume_checkpoint(checkpoint: Path) -> None:
    """Refuse a resume checkpoint whose bytes do not match the SHA-256 written beside it.

    A checkpoint without a ``.sha256`` (written by an older flanet) is read as before.

    Raises:
        ValueError: naming the file, when the hash differs (damaged or changed since it was written).
    """
    sidecar = hash_path(checkpoint)
    if not sidecar.is_file():
        return
    expected = sidecar.read_text(encoding="utf-8").split()[:1]
    if expected != [file_sha256(checkpoint)]:
        raise ValueError(f"{checkpoint}: resume checkpoint is corrupted (its SHA-256 does not match {sidecar.name}); "
                         "restart the run, or resume from an intact copy")


def parse_max_time(value: Any) -> timedelta | None:
    """``trainer.max_time`` as a duration: ``"DD:HH:MM:SS"``, a mapping such as ``{hours: 4}``, or None.

    Raises:
        ConfigError: any other value (named with the key).
    """
    if value is None:
        return None
    if isinstance(value, str) and (match := _CLOCK.fullmatch(value.strip())):
        days, hours, minutes, seconds = (int(part) for part in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if isinstance(value, Mapping):
        try:
            return timedelta(**{str(k): float(v) for k, v in value.items()})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"config key 'trainer.max_time': {error}, got {dict(value)!r}") from error
    raise ConfigError(f"config key 'trainer.max_time' expects \"DD:HH:MM:SS\" (e.g. 00:04:00:00) "
                      f"or a mapping such as {{hours: 4}}, got {value!r}")


class InvocationTimer(Timer):
    """Lightning's :class:`Timer` with a budget per invocation: a resumed run gets it afresh.

    (Lightning's restores the time already spent, so a job resubmitted with the same
    ``trainer.max_time`` would stop after its first step.)
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep this invocation's clock (the stored elapsed time is ignored)."""


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` (order seeded by seed and epoch) that can start mid-epoch.

    Args:
        dataset: the training clips.
        num_replicas, rank, shuffle, seed, drop_last: as for :class:`DistributedSampler`.
        epoch: the epoch to start with (a resumed run's).
        skip: samples of that epoch already trained on (its first ``skip`` indices are not
            yielded; ``len()`` still counts them, so the loader's length is the epoch's).
    """

    def __init__(self, dataset: ClipDataset, num_replicas: int, rank: int, shuffle: bool, seed: int,
                 drop_last: bool, epoch: int = 0, skip: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.clips = dataset
        self.set_epoch(epoch)
        self._skip_epoch, self._skip = epoch, skip

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order and the dataset's augmentation draws."""
        super().set_epoch(epoch)
        self.clips.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip = self._skip if self.epoch == self._skip_epoch else 0
        self._skip = 0
        return iter(indices[skip:])


def batches_done(trainer: pl.Trainer) -> tuple[int, int]:
    """``(epoch, batches)``: where the training loop stands, as the data order must resume.

    At the end of an epoch (or before one starts) this is ``(next epoch, 0)``.
    """
    loop = trainer.fit_loop.epoch_loop
    processed = loop.batch_progress.current.processed
    if processed >= trainer.num_training_batches:
        return trainer.current_epoch + 1, 0
    return trainer.current_epoch, processed


class ResumeState(Checkpoint):
    """Writes ``checkpoints/resume.ckpt`` (all ranks take part; Lightning writes on rank 0).

    After every ``every_n_steps`` optimiser steps (0: never), at the step where the run is told
    to stop (``trainer.max_time``, ``trainer.max_steps``) and at the end of every training epoch.
    As a :class:`Checkpoint` it runs after the other callbacks, so the best score and the
    epoch's metrics are part of what it saves.

    Args:
        path: the resume checkpoint.
        every_n_steps: step period of mid-epoch saves.
    """

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer: pl.Trainer) -> None:
        # the full training state (optimizer, loops, callbacks: what a resume needs); Lightning's
        # ``weights_only`` here means "save the weights alone", unrelated to torch.load's, with which
        # the file is read back (``weights_only=True``, training/run.py); said explicitly, Lightning
        # no longer logs "`weights_only` was not set" at every save
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches:
            return  # the epoch's last batch: saved at the epoch end, after validation
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        stopping = trainer.should_stop or (trainer.max_steps >= 0 and step >= trainer.max_steps)
        if (periodic or stopping) and step != self._saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if batches_done(trainer)[1] == 0 and trainer.global_step != self._saved_step:
            self._save(trainer)
