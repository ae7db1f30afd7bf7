"""flanet checkpoints: weights plus the configuration that rebuilds the model.

A checkpoint is a plain ``torch.save`` of dicts, lists, numbers, strings and tensors,
so it loads with ``torch.load(..., weights_only=True)``: a file that would need to run
code to load is refused.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from flanet import __version__
from flanet.fileio import atomic_path
from flanet.models.factory import create_model

FORMAT = "flanet-checkpoint"
VERSION = 1
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # zip container (torch >= 1.6) or a legacy pickle
# create_model options added after v0.1, with the value that rebuilds a v0.1 architecture:
# a checkpoint whose config lacks one was written before it existed.
V01_MODEL_OPTIONS: dict[str, Any] = {"ffa_attention": "shared", "mask_stride": 4}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe, damaged or does not fit."""


class LoadedCheckpoint(NamedTuple):
    """A rebuilt model (in eval mode) with the checkpoint's configuration and metadata."""

    model: nn.Module
    config: dict[str, Any]
    metadata: dict[str, Any]


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor (sorted by name)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Saves ``model`` (built by :func:`create_model`) with its config and ``metadata``.

    The file is written next to its destination and renamed into place, so an
    interrupted save never leaves a truncated checkpoint behind.
    """
    config = getattr(model, "config", None)
    if not config:
        raise CheckpointError("model has no .config: build it with flanet.models.create_model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "flanet_version": __version__,
        "model_config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    payload["state_sha256"] = state_digest(payload["state_dict"])
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads and validates a checkpoint file without building the model."""
    path = Path(path)
    if path.is_dir():
        found = sorted(str(p.relative_to(path)) for p in path.glob("**/*.pt"))[:3]
        hint = f"; inside: {', '.join(found)}" if found else ""
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (give e.g. RUN/checkpoints/best.pt{hint})")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes)")
    with path.open("rb") as handle:
        head = handle.read(64)
    if not head.startswith(_TORCH_MAGIC):
        hint = " (it is a git-LFS pointer: run `git lfs pull`)" if head.startswith(b"version https://git-lfs") else ""
        raise CheckpointError(f"{path}: not a torch checkpoint file{hint}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects that would run code when loaded "
            f"(only weights_only checkpoints are read). Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: damaged or truncated checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a flanet checkpoint (no 'format': '{FORMAT}'); a run's resume state "
            "(checkpoints/resume.ckpt) is for `flanet train --resume`, its weights are in checkpoints/best.pt"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} is newer than this flanet")
    expected = payload.get("state_sha256")
    if expected is not None and state_digest(payload["state_dict"]) != expected:
        raise CheckpointError(f"{path}: weights are corrupted (SHA-256 of the state dict does not match)")
    if bad := non_finite_tensors(payload.get("state_dict")):
        raise CheckpointError(f"{path}: refused: {len(bad)} weight tensor(s) hold NaN or infinite values "
                              f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); a model with them "
                              "reports no lesion anywhere (a diverged training run?)")
    return payload


def non_finite_tensors(state_dict: object) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or +-inf (issue 22 item 6)."""
    if not isinstance(state_dict, dict):
        return []
    return [name for name, tensor in state_dict.items()
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expected_config: dict[str, Any] | None = None,
) -> LoadedCheckpoint:
    """Rebuilds the model stored in ``path`` and loads its weights (eval mode).

    Args:
        path: checkpoint written by :func:`save_checkpoint`.
        map_location: device for the tensors.
        expected_config: when given, the checkpoint's model configuration must equal it
            (e.g. resuming a run); differences are named in the error.

    Raises:
        CheckpointError: missing, empty, truncated or unsafe file, a configuration that
            differs from ``expected_config``, or weights that do not fit the model.
    """
    payload = read_checkpoint(path, map_location)
    config = {**V01_MODEL_OPTIONS, **payload["model_config"]}
    if expected_config is not None:
        diff = sorted(k for k in set(config) | set(expected_config) if config.get(k) != expected_config.get(k))
        if diff:
            detail = ", ".join(f"{k}: checkpoint {config.get(k)!r} vs expected {expected_config.get(k)!r}" for k in diff)
            raise CheckpointError(f"{path}: checkpoint is for a different model configuration ({detail})")
    model = create_model(**config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {config.get('name')!r}: {err}") from err
    model.to(map_location).eval()
    return LoadedCheckpoint(model, config, dict(payload.get("metadata", {})))


def image_size_from_metadata(metadata: dict[str, Any] | None, default: int = 352) -> int:
    """Input size the checkpoint's model was trained at, from its metadata, else ``default``.

    Reads ``metadata["image_size"]`` (written by training), then ``metadata["train_config"]["data"]
    ["image_size"]``; what is missing or not a positive integer is skipped.
    """
    metadata = metadata or {}
    train_config = metadata.get("train_config") if isinstance(metadata.get("train_config"), dict) else {}
    data = train_config.get("data") if isinstance(train_config.get("data"), dict) else {}
    for candidate in (metadata.get("image_size"), data.get("image_size")):
        if isinstance(candidate, int) and candidate > 0:
            return candidate
    return default


def model_for_inference(model: nn.Module | str | Path, image_size: int | None = None) -> tuple[nn.Module, dict[str, Any], int]:
    """A model given as itself or as a checkpoint file, with its metadata and the input size to run it at.

    Args:
        model: a model, or the path of a checkpoint (loaded safely on the CPU, :func:`load_checkpoint`).
        image_size: input size; None: the checkpoint's training size (:func:`image_size_from_metadata`),
            352 for a model given as itself.

    Returns:
        ``(model, metadata, image_size)``; the metadata is empty for a model given as itself.
    """
    metadata: dict[str, Any] = {}
    if isinstance(model, (str, Path)):
        loaded = load_checkpoint(model, map_location="cpu")
        model, metadata = loaded.model, dict(loaded.metadata or {})
    return model, metadata, image_size or image_size_from_metadata(metadata)
