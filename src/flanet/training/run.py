"""``train(config, overrides) -> run_dir``: one training run, new or resumed."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from flanet.data import DataError, VideoSet, discover
from flanet.data.split_record import RECORD_FILE, SplitRecord
from flanet.fileio import atomic_write_text, lock_output_folder, release_output_folder
from flanet.models import CheckpointError
from flanet.models.checkpoint import config_difference, normalise_model_config
from flanet.models.registry import ModelError
from flanet.training.callbacks import RunFolder
from flanet.training.config import dump_config, load_config
from flanet.training.datamodule import VideoDataModule, choose_splits
from flanet.training.diagnosis import BagDataModule, DiagnosisModule, frozen_model, resolve_labels, video_targets
from flanet.training.lightning_logs import quiet_lightning
from flanet.training.model_defaults import random_encoder_warning, resolve_model_defaults
from flanet.training.module import MODEL_CONFIG_KEY, FLANetModule, NonFiniteLossError
from flanet.training.preflight import (
    check_run_folder_outside_data,
    check_settings,
    claim_new_run_dir,
    run_name,
    with_absolute_root,
)
from flanet.training.resume import (
    AtomicCheckpointIO,
    InvocationTimer,
    ResumeState,
    parse_max_time,
    verify_resume_checkpoint,
)
from flanet.training.schema import TrainConfig

log = logging.getLogger(__name__)

#: Environment variable through which the processes of one distributed run share its folder.
RUN_DIR_ENV = "FLANET_RUN_DIR"
RESUME_NAME = "resume"  # checkpoints/resume.ckpt: Lightning's full training state


class TrainingError(RuntimeError):
    """Training stopped on a problem (e.g. a NaN loss); the message names what was kept."""


def train(
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: str | Path | None = None,
) -> Path:
    """Train a model and return its run folder.

    Args:
        config: shipped recipe name, YAML path, mapping or :class:`TrainConfig`; may be None
            with ``resume`` (the run folder's ``config.yaml`` is used, old key names included).
        overrides: ``dotted.key=value`` overrides (see :func:`load_config`).
        resume: a run folder or its ``checkpoints/resume.ckpt``: training continues from the
            end of the last completed epoch (weights, optimiser, epoch/step counters, best
            score, RNG states), in the same folder.

    Returns:
        The run folder: ``config.yaml``, ``splits.json`` (the videos trained on, chosen on and held
        out: :class:`~flanet.data.split_record.SplitRecord`), ``checkpoints/{best,last}.pt`` (flanet checkpoints),
        ``checkpoints/resume.ckpt`` (Lightning), ``metrics.csv``, ``loss_curve.png``, ``logs/``.

    Raises:
        ConfigError: bad configuration. DataError: dataset missing or unusable.
        CheckpointError: ``resume`` is missing or built for another model configuration.
        TrainingError: the loss became NaN/inf (checkpoints of the last epoch are kept).
    """
    resume_ckpt, run_dir = _locate_resume(resume) if resume is not None else (None, None)
    if config is None:
        if run_dir is None:
            raise ValueError("train() needs a config (or resume= a run folder)")
        config = run_dir / "config.yaml"
    resolved = with_absolute_root(resolve_model_defaults(load_config(config, overrides)))
    check_settings(resolved)
    warning = random_encoder_warning(resolved)
    if warning is not None and global_rank() == 0:
        log.warning("%s", warning)
    root = resolved.data.root
    if root is None:
        raise DataError("no dataset given: set data.root=/path/to/dataset")
    if not Path(root).exists():
        raise DataError("dataset folder not found (data.root)", root)
    check_run_folder_outside_data(resolved, run_dir)  # before any folder exists
    video_set, record = choose_splits(discover(root), resolved.data, resolved.seed)  # before any folder exists
    resolved = resolve_labels(resolved, video_set)  # diagnosis.labels of a run with the diagnosis head
    pl.seed_everything(resolved.seed, workers=True, verbose=False)
    module: FLANetModule | DiagnosisModule = (DiagnosisModule(resolved, frozen_model(resolved))
                                              if resolved.task == "diagnosis" else FLANetModule(resolved))
    if resume_ckpt is not None:
        _check_resume_model(resume_ckpt, module.model.config)
        created = False
    else:
        run_dir = _new_run_dir(resolved)
        claimed = resolved.output.run_dir is None and run_dir.is_dir() and not any(run_dir.iterdir())
        created = global_rank() == 0 and (claimed or not run_dir.exists())
    if global_rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_output_folder(run_dir)  # one writer per run folder: a second --resume of it is refused, PID named
        dump_config(resolved, run_dir / "config.yaml")
        atomic_write_text(run_dir / RECORD_FILE, json.dumps(record.to_dict(), indent=2) + "\n")
    os.environ[RUN_DIR_ENV] = str(run_dir)  # ranks started by Lightning's launcher share it
    trainer = None
    try:
        trainer = _build_trainer(resolved, run_dir, record)
        data = _data_module(resolved, module, video_set)
        trainer.fit(module, datamodule=data, ckpt_path=resume_ckpt, weights_only=True)
    except BaseException as error:
        if created and (trainer is None or trainer.global_step == 0):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume: leave no folder behind
        if isinstance(error, NonFiniteLossError):
            last = run_dir / "checkpoints" / "last.pt"
            kept = f"last good checkpoint kept: {last}" if last.exists() else "no epoch had finished, no checkpoint"
            raise TrainingError(f"training stopped: {error}; {kept}. Try a lower optim.lr") from error
        raise
    finally:
        release_output_folder(run_dir)
    log.info("run folder: %s", run_dir)
    return run_dir


def _data_module(config: TrainConfig, module: FLANetModule | DiagnosisModule,
                 video_set: VideoSet) -> pl.LightningDataModule:
    """Bags of clips per video for ``task: diagnosis``; clips (with the videos' labels for a joint head) otherwise."""
    if isinstance(module, DiagnosisModule):
        return BagDataModule(config, clip_len=module.model.num_frames, video_set=video_set)
    targets = video_targets(video_set, list(config.diagnosis.labels)) if module.head is not None else None
    return VideoDataModule(config, clip_len=module.model.num_frames, with_previous=module.use_previous,
                           box_targets=bool(module.model.has_heatmap), video_set=video_set, video_targets=targets)


def precision_for(config: TrainConfig) -> int | str:
    """``trainer.precision``; flanet's ``auto`` = bf16-mixed on a CUDA device with bf16, else 32-true."""
    precision = config.trainer.precision
    if precision != "auto":
        return precision
    accelerator = str(config.trainer.accelerator)
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"


def trainer_arguments(config: TrainConfig) -> dict[str, Any]:
    """The ``trainer`` section as :class:`lightning.pytorch.Trainer` keyword arguments.

    Every key is passed through under its own name, except ``precision: auto`` (resolved by
    :func:`precision_for`) and ``max_time`` (left out: :func:`_build_trainer` gives the run an
    :class:`InvocationTimer` instead of Lightning's timer, so that a resumed run gets the
    whole budget again).
    """
    arguments = dataclasses.asdict(config.trainer)
    del arguments["max_time"]
    arguments["precision"] = precision_for(config)
    return arguments


def _build_trainer(config: TrainConfig, run_dir: Path, record: SplitRecord | None = None) -> pl.Trainer:
    resume_state = ResumeState(run_dir / "checkpoints" / f"{RESUME_NAME}.ckpt", config.output.checkpoint_every_n_steps)
    callbacks: list[pl.Callback] = [RunFolder(run_dir, config, record), resume_state]
    max_time = parse_max_time(config.trainer.max_time)
    if max_time is not None:
        callbacks.append(InvocationTimer(max_time))
    if config.trainer.enable_progress_bar:
        callbacks.append(TQDMProgressBar())
    logs = run_dir / "logs"
    # A resumed run appends to its CSV log, although Lightning's warning says it deletes it.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
    # The data module restores the data order of a run resumed mid-epoch (training/resume.py).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")  # max_time dropped
    if config.task == "diagnosis":  # the frozen segmentation model stays in eval mode on purpose
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    loggers = [CSVLogger(logs, name="", version="csv"), TensorBoardLogger(logs, name="", version="tensorboard")]
    arguments = trainer_arguments(config)
    if record is not None and record.selection_split is None:  # no validation split (a single training video): last.pt only
        arguments.update(limit_val_batches=0, num_sanity_val_steps=0)
    quiet_lightning()
    return pl.Trainer(
        **arguments,
        enable_model_summary=False,
        benchmark=config.trainer.deterministic is False,  # cuDNN autotuning: inputs have one fixed size
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=loggers,
        default_root_dir=run_dir,
        use_distributed_sampler=False,
    )


def global_rank() -> int:
    """Global rank from the launcher's environment (torchrun, SLURM, Lightning), else 0."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def _new_run_dir(config: TrainConfig) -> Path:
    """The run folder of a new run; every process of a distributed run gets the same one."""
    shared = os.environ.get(RUN_DIR_ENV)
    if shared and global_rank() != 0:
        return Path(shared)
    explicit = config.output.run_dir
    if explicit is not None:
        run_dir = Path(explicit)
    else:
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "none")
        multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        if multi_process and job == "none":
            raise ValueError("distributed launch without a shared run id: set output.run_dir=/shared/path/run")
        name = run_name(config)
        if not multi_process:
            return claim_new_run_dir(Path(config.output.dir), name)
        run_dir = Path(config.output.dir) / f"{name}-job{job}"
    if global_rank() == 0 and (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir}: a run folder already exists here; choose another output.run_dir "
                         f"or continue it with --resume {run_dir}")
    return run_dir


def _locate_resume(resume: str | Path) -> tuple[Path, Path]:
    """``(resume checkpoint, run folder)`` from a run folder or a ``.ckpt`` path."""
    path = Path(resume)
    if path.is_dir():
        ckpt = path / "checkpoints" / f"{RESUME_NAME}.ckpt"
        if not ckpt.is_file():
            raise CheckpointError(f"{path}: no checkpoints/{RESUME_NAME}.ckpt in this run folder "
                                  "(was the run stopped before its first epoch ended?)")
        return ckpt, path
    if not path.is_file():
        raise CheckpointError(f"{path}: no such run folder or resume checkpoint")
    if path.suffix != ".ckpt":
        raise CheckpointError(f"{path}: not a Lightning resume checkpoint (.ckpt); pass the run folder "
                              "or its checkpoints/resume.ckpt (best.pt/last.pt hold weights only)")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{path}: its run folder {run_dir} has no config.yaml")
    return path, run_dir


def _check_resume_model(ckpt: Path, model_config: Mapping[str, Any]) -> None:
    """Refuse a resume checkpoint written for another model configuration."""
    if ckpt.stat().st_size == 0:
        raise CheckpointError(f"{ckpt}: resume checkpoint is empty (0 bytes; written by a flanet older than "
                              "its atomic saves?): restart the run, or resume from a copy of an intact file")
    try:
        verify_resume_checkpoint(ckpt)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    try:
        stored = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get(MODEL_CONFIG_KEY)
    except Exception as error:  # noqa: BLE001 - any failure to read is reported with the file
        raise CheckpointError(f"{ckpt}: cannot read resume checkpoint ({error})") from error
    if stored is None:
        raise CheckpointError(f"{ckpt}: not a flanet resume checkpoint (no model configuration inside)")
    try:
        detail = config_difference(normalise_model_config(stored), dict(model_config))
    except ModelError as error:
        raise CheckpointError(f"{ckpt}: resume checkpoint's model: {error}") from error
    if detail:
        raise CheckpointError(f"{ckpt}: resume checkpoint is for a different model configuration ({detail})")
