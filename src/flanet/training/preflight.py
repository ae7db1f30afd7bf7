"""Checks made before a run starts, so bad settings fail with one line and leave nothing behind.

Everything here runs before the run folder exists: an impossible setting (``trainer.max_epochs=0``, a
GPU accelerator on a machine without one, an unreadable ``trainer.max_time``, a run name that
would escape ``output.dir``) is refused by name, and a new run claims a folder of its own even
when another run of the same name starts in the same second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from flanet.fileio import refuse_overlap
from flanet.training.resume import parse_max_time
from flanet.training.schema import ConfigError, TrainConfig

_GPU_ACCELERATORS = ("gpu", "cuda")


def check_settings(config: TrainConfig) -> None:
    """Refuse settings no run can honour.

    Raises:
        ConfigError: naming the key and the accepted values.
    """
    trainer = config.trainer
    if trainer.max_epochs < 1:
        raise ConfigError(f"config key 'trainer.max_epochs' must be at least 1, got {trainer.max_epochs}")
    if trainer.max_steps < -1 or trainer.max_steps == 0:
        raise ConfigError(f"config key 'trainer.max_steps' must be -1 (no limit) or at least 1, "
                          f"got {trainer.max_steps}")
    if trainer.accumulate_grad_batches < 1:
        raise ConfigError("config key 'trainer.accumulate_grad_batches' must be at least 1, "
                          f"got {trainer.accumulate_grad_batches}")
    if config.data.batch_size < 1:
        raise ConfigError(f"config key 'data.batch_size' must be at least 1, got {config.data.batch_size}")
    if config.output.checkpoint_every_n_steps < 0:
        raise ConfigError("config key 'output.checkpoint_every_n_steps' must be 0 (off) or positive, "
                          f"got {config.output.checkpoint_every_n_steps}")
    if config.data.image_size < 1:
        raise ConfigError(f"config key 'data.image_size' must be positive, got {config.data.image_size}")
    parse_max_time(trainer.max_time)
    accelerator = str(trainer.accelerator).lower()
    if accelerator in _GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConfigError(f"config key 'trainer.accelerator' is {trainer.accelerator!r} but no CUDA GPU is "
                          "available here; use trainer.accelerator=auto or cpu")


def check_run_folder_outside_data(config: TrainConfig, run_dir: Path | None = None) -> None:
    """Refuse a run folder in or under the data set, or holding it, before anything is written (issue 22 item 3).

    Checkpoints, logs and ``splits.json`` written into ``data.root`` change the data set (a run
    folder there is read back as a video by the frame-folder layouts); a data set inside the run
    folder would be deleted with a failed run's folder. ``run_dir``: the folder of ``--resume``;
    otherwise ``output.run_dir``, else the run folder a new run gets under ``output.dir``.

    Raises:
        ConfigError: naming the key and the data set.
    """
    if config.data.root is None:
        return
    if run_dir is not None:
        folder, key = run_dir, "--resume"
    elif config.output.run_dir is not None:
        folder, key = Path(config.output.run_dir), "output.run_dir"
    else:
        folder, key = Path(config.output.dir) / run_name(config), "output.dir"
    try:
        refuse_overlap(folder, [config.data.root], flag=key)
    except ValueError as error:
        raise ConfigError(f"config key {key!r}: {error} (data.root: the run would write into the data set)") from error


def with_absolute_root(config: TrainConfig) -> TrainConfig:
    """A copy whose ``data.root`` is absolute, so that ``--resume`` works from any folder."""
    if config.data.root is None:
        return config
    return config.replace(data={"root": str(Path(config.data.root).expanduser().resolve())})


def run_name(config: TrainConfig) -> str:
    """The configuration's ``name``, refused when it is not a plain folder name."""
    name = config.name
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name or name.startswith("~"):
        raise ConfigError(f"config key 'name' must be a plain folder name (no '/' or '..'), got {name!r}; "
                          "choose the folder with output.dir or output.run_dir")
    return name


def claim_new_run_dir(parent: Path, name: str) -> Path:
    """Create and return ``parent/<name>-<YYYYmmdd-HHMMSS>``, or ``...-2``, ``-3``... when taken.

    The folder is created with ``exist_ok=False``, so two runs started in the same second (even
    in two processes) never share one.
    """
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in range(1, 1000):
        candidate = parent / (stem if suffix == 1 else f"{stem}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(os.strerror(17), str(parent / stem))
