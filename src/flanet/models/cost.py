"""Parameter and FLOP counts of a model, per output frame (docs/model.md, ``flanet bench``).

:func:`count_gflops` is flanet's one FLOP counter: :func:`measure_cost`, ``flanet bench`` and the
scripts in benchmarks/ all count with it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from flanet.defaults import IMAGE_SIZE
from flanet.fileio import atomic_write_text
from flanet.models.contract import VideoSegmentationModel
from flanet.models.registry import create_model, model_options, model_spec

log = logging.getLogger(__name__)
_MODELS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelCost:
    """Cost of one output frame at ``size`` x ``size`` (FLOPs = 2 x multiply-adds).

    Attributes:
        params_m: parameters, millions.
        encoder_params_m: of which in the per-frame encoder (backbone + neck).
        clip_gflops: one ``model(clip)`` call, every frame of the clip encoded.
        stream_gflops: one new frame encoded plus one step of the stream (:meth:`~flanet.models.contract.
            VideoSegmentationModel.step`: the decode from cached features, and for a memory model the
            memory's read and write) with the state as full as it gets (equal to ``clip_gflops`` for
            single-frame models).
        encoder_gflops: one frame through the encoder.
    """

    params_m: float
    encoder_params_m: float
    clip_gflops: float
    stream_gflops: float
    encoder_gflops: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def count_gflops(fn: Callable[..., Any], *args: Any) -> float:
    """GFLOPs of one call ``fn(*args)`` as ``torch.utils.flop_counter`` counts them (2 x multiply-adds).

    The counter sees matrix products and convolutions only: FFTs and elementwise work are not counted.
    """
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 1e9


def frames_to_fill(model: VideoSegmentationModel, image: torch.Tensor, patience: int = 8, limit: int = 48) -> int:
    """Frames streamed before the one that reads the fullest state (its position, 0-based).

    A window is full after ``num_frames - 1`` frames. Another state (a bounded memory) is streamed the
    frame ``image`` until its ``held_frames`` has not grown for ``patience`` frames, at most ``limit``.
    How full a state gets depends on the frame count only, so a small ``image`` gives the count of any size.
    """
    state = model.init_state()
    if state.window is not None:
        return state.window - 1
    features = model.encode(image)
    held: list[int] = []
    since = 0
    while since < patience and len(held) < limit:
        held.append(state.held_frames)
        since = 0 if held[-1] > max(held[:-1], default=-1) else since + 1
        model.step(state, features)
    return held.index(max(held))


def full_state_step_gflops(model: VideoSegmentationModel, image: torch.Tensor, patience: int = 8,
                           limit: int = 48) -> float:
    """GFLOPs of one :meth:`~flanet.models.contract.VideoSegmentationModel.step` when the state holds the most
    (after :func:`frames_to_fill` frames)."""
    features = model.encode(image)
    state = model.init_state()
    for _ in range(frames_to_fill(model, image, patience, limit)):
        model.step(state, features)
    return count_gflops(model.step, state, features)


@torch.inference_mode()
def measure_cost(model: VideoSegmentationModel, size: int = IMAGE_SIZE) -> ModelCost:
    """Counts parameters and FLOPs with ``torch.utils.flop_counter`` on a random clip."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    clip = torch.randn(1, model.num_frames, 3, size, size, device=device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    clip_gflops = count_gflops(model, clip)
    encoder_params = sum(p.numel() for p in model.encoder.parameters()) / 1e6
    encoder_gflops = count_gflops(model.encode, clip[:, 0])
    stream_gflops = encoder_gflops + full_state_step_gflops(model, clip[:, 0])
    model.train(was_training)
    return ModelCost(params, encoder_params, clip_gflops, stream_gflops, encoder_gflops)


def registered_cost(name: str, size: int = IMAGE_SIZE, **options: Any) -> ModelCost:
    """:func:`measure_cost` of registered model ``name`` (its default options unless given), without computing.

    The model is built on PyTorch's ``meta`` device, where tensors have shapes but no data: the
    FLOP counter sees the same operations as on a real device, in a fraction of the time and
    memory. A builder that cannot run there (e.g. one reading data) is measured on the CPU.
    """
    try:
        with torch.device("meta"):
            model = create_model(name, **options)
        return measure_cost(model, size)
    except (NotImplementedError, RuntimeError) as error:
        log.debug("%s: cost on the meta device failed (%s); measuring on the CPU", name, error)
        return measure_cost(create_model(name, **options), size)


def cost_cache_file() -> Path:
    """``$FLANET_CACHE_DIR/model-costs.json``, default ``~/.cache/flanet/model-costs.json``."""
    return Path(os.environ.get("FLANET_CACHE_DIR") or Path.home() / ".cache" / "flanet") / "model-costs.json"


def _cost_key(name: str, size: int, options: dict[str, Any]) -> str:
    """Name, size, every option, torch and the code that builds the model (flanet/models and the builder's file)."""
    digest = hashlib.sha256(f"{name}|{size}|{json.dumps(options, sort_keys=True)}|{torch.__version__}".encode())
    builder_file = inspect.getsourcefile(model_spec(name).builder)
    files = sorted(_MODELS_DIR.glob("**/*.py")) + ([Path(builder_file)] if builder_file else [])
    for path in files:
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def cached_costs(names: list[str], size: int = IMAGE_SIZE, cache: Path | None = None) -> dict[str, ModelCost]:
    """:func:`registered_cost` of each model with its default options, kept in :func:`cost_cache_file`.

    A cached figure is reused while the model's options, the code under ``flanet/models`` (and the
    builder's own file) and torch are unchanged; an unreadable cache is measured again.
    """
    cache = cache or cost_cache_file()
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    costs: dict[str, ModelCost] = {}
    changed = False
    for name in names:
        key = _cost_key(name, size, asdict(model_options(name)))
        try:
            costs[name] = ModelCost(**stored[key])
        except (KeyError, TypeError):
            costs[name] = registered_cost(name, size)
            stored[key] = costs[name].as_dict()
            changed = True
    if changed:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps(stored, indent=1, sort_keys=True))
        except OSError as error:  # a read-only home still lists the models
            log.warning("cannot write the cost cache %s (%s)", cache, error)
    return costs
