"""Encoder weights: timm's ImageNet weights (Hugging Face Hub cache) or a local file.

``encoder_weights: imagenet`` is timm's default pretrained tag of the encoder (e.g.
``timm/res2net50_26w_4s.in1k``), loaded by timm's own pretrained mechanism: the Hugging Face
Hub cache (``HF_HOME``, default ``~/.cache/huggingface``), downloading only when the cache lacks
it and the hub is reachable, never with ``HF_HUB_OFFLINE=1``. A ``.pth``/``.safetensors`` path
loads a local timm state dict. Either way the weights are checked key by key against the
encoder (paper Section 4: Res2Net-50 pretrained on ImageNet).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from flanet.models.defaults import IMAGENET

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


def _pretrained_source(name: str) -> str:
    """Where timm finds the default pretrained weights of ``name`` (hub id or URL)."""
    with torch.device("meta"):
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
    source = cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")
    if not source:
        raise EncoderWeightsError(
            f"timm has no pretrained weights for encoder {name!r} (encoder_weights: {IMAGENET}); "
            "give a local .pth/.safetensors file or null for random initialisation"
        )
    return str(source)


def _not_available(name: str, source: str, error: Exception) -> str:
    """Why the hub weights could not be had, and the two ways to get them onto this machine."""
    from huggingface_hub import constants

    offline = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "they could not be downloaded"
    file = f"{name}.pth"
    fill = "" if "://" in source else f"fill a cache once (`hf download {source}`, then copy it here and set HF_HOME) or "
    return (
        f"ImageNet weights of encoder {name!r} ({source}) are not in the Hugging Face Hub cache "
        f"{constants.HF_HUB_CACHE} and {offline} ({type(error).__name__}). On a machine with network, "
        f"{fill}make a local file: python -c \"import timm, torch; "
        f"torch.save(timm.create_model('{name}', pretrained=True).state_dict(), '{file}')\" "
        f"and set model.encoder_weights=/path/to/{file}"
    )


def pretrained_state_dict(name: str) -> tuple[dict[str, Tensor], str]:
    """timm's default pretrained weights of encoder ``name``, via timm's own loader.

    Returns:
        ``(state_dict, source)``, ``source`` naming the hub id (or URL) they came from.

    Raises:
        EncoderWeightsError: timm has no pretrained weights for ``name``, or they are
            neither in the hub cache nor downloadable (offline); the message says how to
            make a local file instead.
    """
    source = _pretrained_source(name)
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as error:  # hub errors, offline mode, unreachable network
        raise EncoderWeightsError(_not_available(name, source, error)) from error
    return model.state_dict(), source


def _listing(keys: set[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{shown}{', ...' if len(keys) > limit else ''} ({len(keys)} in all)"


def load_encoder_weights(backbone: nn.Module, name: str, weights: str | Path) -> None:
    """Loads ImageNet or file weights into a ``features_only`` backbone, strictly.

    Args:
        backbone: the timm ``features_only`` model (FLA-Net's, or smp's ``tu-`` encoder).
        name: its timm model name.
        weights: ``"imagenet"`` (:func:`pretrained_state_dict`) or a ``.pth``/``.safetensors``
            state dict path.

    Keys of layers a ``features_only`` model drops (classifier, head) are ignored; any
    other unexpected key, any missing key or a shape mismatch raises
    :class:`EncoderWeightsError` naming the file and the keys.
    """
    if str(weights) == IMAGENET:
        state, path = pretrained_state_dict(name)
    else:
        state, path = read_state_dict(weights), weights
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
