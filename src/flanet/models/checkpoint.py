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

from flanet import __version__
from flanet.defaults import IMAGE_SIZE
from flanet.fileio import atomic_path
from flanet.models.contract import VideoSegmentationModel
from flanet.models.diagnosis import STANDARDIZATION, DiagnosisHead, build_head
from flanet.models.registry import ModelError, model_spec, rebuild_model

FORMAT = "flanet-checkpoint"
#: 2: the model is stored as ``{"name", "options"}`` (``model``); 1: as one flat ``model_config`` dict.
VERSION = 2
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # zip container (torch >= 1.6) or a legacy pickle
# create_model options added after v0.1, with the value that rebuilds a v0.1 architecture:
# a checkpoint whose config lacks one was written before it existed.
V01_MODEL_OPTIONS: dict[str, Any] = {"ffa_attention": "shared", "mask_stride": 4}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe, damaged or does not fit."""


class LoadedDiagnosis(NamedTuple):
    """A checkpoint's diagnosis head (eval mode) and the thresholds chosen on validation, per label (None: not chosen)."""

    head: DiagnosisHead
    thresholds: dict[str, float | None]


class LoadedCheckpoint(NamedTuple):
    """A rebuilt model (in eval mode) with its ``{"name", "options"}`` configuration, the metadata and
    the diagnosis head when the checkpoint has one."""

    model: VideoSegmentationModel
    config: dict[str, Any]
    metadata: dict[str, Any]
    diagnosis: LoadedDiagnosis | None = None


def legacy_model_config(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "options"}`` from a version-1 checkpoint's flat ``model_config``.

    Version 1 stored every FLA-Net keyword for every model (a UNet's too); only the options the
    named model has are kept, and FLA-Net options added after v0.1 default to the v0.1
    architecture (:data:`V01_MODEL_OPTIONS`).

    Raises:
        ModelError: the name is not a registered model.
    """
    flat = dict(flat)
    name = str(flat.pop("name", "flanet"))
    names = model_spec(name).option_names
    options = {k: v for k, v in {**V01_MODEL_OPTIONS, **flat}.items() if k in names}
    return {"name": name, "options": options}


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor (sorted by name)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: VideoSegmentationModel, metadata: dict[str, Any] | None = None,
                    diagnosis: DiagnosisHead | None = None,
                    thresholds: dict[str, float | None] | None = None) -> Path:
    """Saves ``model`` (built by :func:`~flanet.models.create_model`) with its ``{name, options}`` and ``metadata``.

    A ``diagnosis`` head is stored beside the model (``"diagnosis"``: its configuration, weights, their
    SHA-256 and the per-label ``thresholds`` chosen on validation); the model's own weights stay as they are,
    so a checkpoint with a head loads wherever one without does. The file is written next to its destination
    and renamed into place, so an interrupted save never leaves a truncated checkpoint behind.
    """
    if not isinstance(model, VideoSegmentationModel) or not model.config:
        raise CheckpointError("the model has no name and options: build it with flanet.models.create_model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "flanet_version": __version__,
        "model": {"name": model.config["name"], "options": dict(model.config["options"])},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    payload["state_sha256"] = state_digest(payload["state_dict"])
    if diagnosis is not None:
        state = {k: v.detach().cpu() for k, v in diagnosis.state_dict().items()}
        payload["diagnosis"] = {"config": dict(diagnosis.config), "state_dict": state, "state_sha256": state_digest(state),
                                "thresholds": {label: (thresholds or {}).get(label) for label in diagnosis.labels}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def normalise_model_config(stored: Any) -> dict[str, Any]:
    """``{"name", "options"}`` from a stored model configuration of this or of the flat version-1 form.

    Raises:
        ModelError: neither form, or a version-1 name that is not a registered model.
    """
    if isinstance(stored, dict) and isinstance(stored.get("name"), str) and isinstance(stored.get("options"), dict):
        return {"name": stored["name"], "options": dict(stored["options"])}
    if isinstance(stored, dict) and "options" not in stored:
        return legacy_model_config(stored)
    raise ModelError(f"not a model configuration {{'name': ..., 'options': {{...}}}}: {stored!r}")


def stored_model_config(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``{"name", "options"}`` of a checkpoint payload (:func:`read_checkpoint`), of any version."""
    if "model" in payload:
        return normalise_model_config(payload["model"])
    if isinstance(payload.get("model_config"), dict):
        return legacy_model_config(payload["model_config"])
    raise ModelError("the checkpoint names no model (no 'model': {'name': ..., 'options': {...}})")


def config_difference(config: dict[str, Any], expected: dict[str, Any]) -> str:
    """``"name: checkpoint 'a' vs expected 'b', options.x: ..."``, or ``""`` when the two are equal."""
    flat = {"name": config.get("name"), **{f"options.{k}": v for k, v in config.get("options", {}).items()}}
    other = {"name": expected.get("name"), **{f"options.{k}": v for k, v in expected.get("options", {}).items()}}
    diff = sorted(k for k in set(flat) | set(other) if flat.get(k) != other.get(k))
    return ", ".join(f"{k}: checkpoint {flat.get(k)!r} vs expected {other.get(k)!r}" for k in diff)


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
    _check_fields(path, payload)
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


def _check_fields(path: Path, payload: dict[str, Any]) -> None:
    """Refuse a payload whose fields have the wrong type (a tampered or hand-made file), by name.

    Raises:
        CheckpointError: naming the file and the field.
    """
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: field 'version' must be an integer, got {version!r}")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: field 'state_dict' must be a non-empty mapping of names to tensors")
    if bad := [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)][:3]:
        raise CheckpointError(f"{path}: field 'state_dict' holds entries that are not named tensors: {', '.join(bad)}")
    if not isinstance(payload.get("metadata", {}), dict):
        raise CheckpointError(f"{path}: field 'metadata' must be a mapping, got {type(payload['metadata']).__name__}")
    for field in ("model", "model_config", "diagnosis"):
        if field in payload and not isinstance(payload[field], dict):
            raise CheckpointError(f"{path}: field '{field}' must be a mapping, got {type(payload[field]).__name__}")
    digest = payload.get("state_sha256")
    if digest is not None and not isinstance(digest, str):
        raise CheckpointError(f"{path}: field 'state_sha256' must be a string, got {type(digest).__name__}")


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
    try:
        config = stored_model_config(payload)
        if expected_config is not None:
            detail = config_difference(config, expected_config)
            if detail:
                raise CheckpointError(f"{path}: checkpoint is for a different model configuration ({detail})")
        model = rebuild_model(config)
    except ModelError as err:
        raise CheckpointError(f"{path}: cannot rebuild its model: {err}") from err
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {config['name']!r}: {err}") from err
    model.to(map_location).eval()
    model.trained_image_size = image_size_from_metadata(payload.get("metadata"), default=None)
    return LoadedCheckpoint(model, config, dict(payload.get("metadata", {})), load_diagnosis(path, payload))


def load_diagnosis(path: str | Path, payload: dict[str, Any]) -> LoadedDiagnosis | None:
    """The diagnosis head of a checkpoint payload (:func:`read_checkpoint`), None when it has none.

    Raises:
        CheckpointError: a head whose configuration, weights or checksum do not fit.
    """
    stored = payload.get("diagnosis")
    if stored is None:
        return None
    try:
        head = build_head(stored["config"])
        state = stored["state_dict"]
        if state_digest(state) != stored.get("state_sha256"):
            raise CheckpointError(f"{path}: the diagnosis head's weights are corrupted (SHA-256 does not match)")
        identity = {key: value for key, value in head.state_dict().items() if key in STANDARDIZATION}
        head.load_state_dict({**identity, **state}, strict=True)  # heads stored before standardisation: identity
        thresholds = {label: None if value is None else float(value)
                      for label, value in dict(stored.get("thresholds", {})).items()}
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: unreadable diagnosis head ({err})") from err
    if bad := non_finite_tensors(state):
        raise CheckpointError(f"{path}: refused: the diagnosis head holds NaN or infinite weights ({', '.join(bad[:3])})")
    return LoadedDiagnosis(head.eval(), thresholds)


def image_size_from_metadata(metadata: dict[str, Any] | None, default: int | None = IMAGE_SIZE) -> int | None:
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
