"""The authors' released checkpoint file -> the weights of ``flanet-authors``, every key mapped.

Their evaluation script loads the file with ``model.load_state_dict(torch.load(path))`` into an
smp 0.3.2 ``Unet`` (docs/model.md, "Running the authors' released weights"), so the file is a state
dict: plain, or saved from ``torch.nn.DataParallel`` (every key prefixed ``module.``), or wrapped in a
dict under one of :data:`WRAPPER_KEYS`. Its key families map to ``flanet-authors`` as
:data:`KEY_MAP` says; anything else is named in the error, as is any parameter the file lacks.
The file is read with ``torch.load(..., weights_only=True)``: one that would run code is refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: The release's key prefixes (smp 0.3.2 Unet + their FAM and heatmap head) -> ``flanet-authors``'.
KEY_MAP: dict[str, str] = {
    "encoder.": "encoder.",
    "decoder.": "decoder.",
    "segmentation_head.": "segmentation_head.",
    "FAM_list.0.": "fusion.",
    "heatmaphead_list.0.": "heatmap_head.",
}
#: Keys under which training scripts commonly wrap a state dict.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "weights")
DATA_PARALLEL_PREFIX = "module."
_LISTED = 8  # names shown per list in an error


class AuthorsWeightsError(ValueError):
    """A file that is not the authors' released state dict (or does not fit their architecture)."""


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())


def unwrap_state_dict(payload: Any, path: str | Path = "<state dict>") -> dict[str, Tensor]:
    """The state dict inside ``payload``: itself, or the one under a :data:`WRAPPER_KEYS` key;
    a ``module.`` prefix (``DataParallel``) on every key is removed.

    Raises:
        AuthorsWeightsError: no state dict found (the message names the top-level keys).
    """
    state = payload
    if not _is_state_dict(state) and isinstance(payload, Mapping):
        inner = [payload[k] for k in WRAPPER_KEYS if _is_state_dict(payload.get(k))]
        state = inner[0] if inner else None
    if not _is_state_dict(state):
        keys = list(payload)[:_LISTED] if isinstance(payload, Mapping) else []
        found = f"a dict with keys {keys}" if keys else type(payload).__name__
        raise AuthorsWeightsError(f"{path}: no state dict of tensors found (got {found}; a wrapped one is looked "
                                  f"for under {', '.join(WRAPPER_KEYS)})")
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def read_authors_file(path: str | Path) -> dict[str, Tensor]:
    """Reads the release's file safely (``weights_only=True``) and returns its state dict (unwrapped).

    Raises:
        FileNotFoundError: no such file.
        AuthorsWeightsError: unsafe, damaged or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "weights file not found", str(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise AuthorsWeightsError(f"{path}: refused: the file holds Python objects that would run code when "
                                  f"loaded (only weights_only files are read): {str(err).splitlines()[0]}") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise AuthorsWeightsError(f"{path}: not a readable torch file ({str(err).splitlines()[0]})") from err
    return unwrap_state_dict(payload, path)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _LISTED else shown


def convert_authors_state_dict(state: Mapping[str, Tensor], model: nn.Module,
                               path: str | Path = "<state dict>") -> dict[str, Tensor]:
    """The release's state dict under ``flanet-authors``' names, checked against ``model``.

    Every key must map (:data:`KEY_MAP`) onto a parameter or buffer of ``model`` of the same shape,
    and every parameter and buffer of ``model`` must be given.

    Raises:
        AuthorsWeightsError: listing the file's keys that map to nothing (unexpected), the model's
            keys the file lacks (missing) and the shapes that differ.
    """
    expected = model.state_dict()
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        prefix = next((p for p in KEY_MAP if key.startswith(p)), None)
        target = None if prefix is None else KEY_MAP[prefix] + key[len(prefix):]
        if target is None or target not in expected:
            unexpected.append(key)
        else:
            converted[target] = value
    reverse = {v: k for k, v in KEY_MAP.items()}
    missing = [next((reverse[p] + k[len(p):] for p in reverse if k.startswith(p)), k)
               for k in expected if k not in converted]
    shapes = [f"{k} {tuple(v.shape)} (model {tuple(expected[k].shape)})"
              for k, v in converted.items() if v.shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shapes that differ: {_listing(shapes)}")
    if problems:
        raise AuthorsWeightsError(f"{path}: not the authors' released FLA-Net state dict (smp 0.3.x Unet on "
                                  f"Res2Net-50 26w-4s with FAM_list / heatmaphead_list): {'; '.join(problems)}")
    return {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in converted.items()}


def load_authors_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Loads the release's file ``path`` into ``model`` (a ``flanet-authors`` model), strictly."""
    state = convert_authors_state_dict(read_authors_file(path), model, path)
    model.load_state_dict(state, strict=True)
    return model
