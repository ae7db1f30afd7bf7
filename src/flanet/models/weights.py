"""Loading ImageNet (or any) encoder weights from a local file, never from the network."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


class EncoderWeightsError(ValueError):
    """A weights file that cannot be read or does not fit the encoder."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Reads a state dict from ``.safetensors`` or a torch file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: encoder weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable, truncated or unsafe pickle
        raise EncoderWeightsError(f"{path}: cannot read encoder weights ({err})") from err
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise EncoderWeightsError(f"{path}: not a state dict of tensors")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _listing(keys: set[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{shown}{', ...' if len(keys) > limit else ''} ({len(keys)} in all)"


def load_encoder_weights(backbone: nn.Module, name: str, path: str | Path) -> None:
    """Loads a timm state dict into a ``features_only`` backbone, strictly.

    Keys of layers a ``features_only`` model drops (classifier, head) are ignored; any
    other unexpected key, any missing key or a shape mismatch raises
    :class:`EncoderWeightsError` naming the file and the keys.
    """
    state = read_state_dict(path)
    wanted = backbone.state_dict()
    with torch.device("meta"):
        full_keys = set(timm.create_model(name, pretrained=False).state_dict())
    missing = set(wanted) - set(state)
    unexpected = set(state) - set(wanted) - full_keys
    if missing or unexpected:
        parts = [f"{path}: weights do not fit encoder {name!r}"]
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise EncoderWeightsError("; ".join(parts))
    bad_shapes = {
        k: (tuple(state[k].shape), tuple(v.shape))
        for k, v in wanted.items()
        if tuple(state[k].shape) != tuple(v.shape)
    }
    if bad_shapes:
        detail = ", ".join(f"{k} file {a} vs model {b}" for k, (a, b) in list(bad_shapes.items())[:5])
        raise EncoderWeightsError(f"{path}: shape mismatch for encoder {name!r}: {detail}")
    backbone.load_state_dict({k: state[k] for k in wanted}, strict=True)
