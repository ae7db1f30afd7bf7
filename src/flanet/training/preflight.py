"""Checks made before a run starts, so bad settings fail with one line and leave nothing behind.

Everything here runs before the run folder exists: an impossible setting (``trainer.epochs=0``, a
GPU accelerator on a machine without one, an unreadable ``trainer.max_time``, a run name that
would escape ``output.dir``) is refused by name, and a new run claims a folder of its own even
when another run of the same name starts in the same second.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flanet.training.config import ConfigError
from flanet.training.resume import parse_max_time

_GPU_ACCELERATORS = ("gpu", "cuda")


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse trainer settings no run can honour.

    Raises:
        ConfigError: naming the key and the accepted values.
    """
    trainer = config["trainer"]
    if trainer["epochs"] < 1:
        raise ConfigError(f"config key 'trainer.epochs' must be at least 1, got {trainer['epochs']}")
    if trainer["max_steps"] < -1 or trainer["max_steps"] == 0:
        raise ConfigError(f"config key 'trainer.max_steps' must be -1 (no limit) or at least 1, "
                          f"got {trainer['max_steps']}")
    if trainer["batch_size"] < 1:
        raise ConfigError(f"config key 'trainer.batch_size' must be at least 1, got {trainer['batch_size']}")
    if trainer["checkpoint_every_n_steps"] < 0:
        raise ConfigError("config key 'trainer.checkpoint_every_n_steps' must be 0 (off) or positive, "
                          f"got {trainer['checkpoint_every_n_steps']}")
    if config["data"]["image_size"] < 1:
        raise ConfigError(f"config key 'data.image_size' must be positive, got {config['data']['image_size']}")
    parse_max_time(trainer["max_time"])
    accelerator = str(trainer["accelerator"]).lower()
    if accelerator in _GPU_ACCELERATORS and not torch.cuda.is_available():
        raise ConfigError(f"config key 'trainer.accelerator' is {trainer['accelerator']!r} but no CUDA GPU is "
                          "available here; use trainer.accelerator=auto or cpu")


def with_absolute_root(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose ``data.root`` is absolute, so that ``--resume`` works from any folder."""
    absolute = copy.deepcopy(dict(config))
    if absolute["data"]["root"] is not None:
        absolute["data"]["root"] = str(Path(absolute["data"]["root"]).expanduser().resolve())
    return absolute


def run_name(config: Mapping[str, Any]) -> str:
    """The configuration's ``name``, refused when it is not a plain folder name."""
    name = str(config["name"])
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
