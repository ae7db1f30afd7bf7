"""Parameter and FLOP counts of a model, per output frame (docs/model.md, ``flanet bench``).

:func:`count_gflops` is flanet's one FLOP counter: :func:`measure_cost`, ``flanet bench`` and the
scripts in benchmarks/ all count with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from flanet.defaults import IMAGE_SIZE
from flanet.models.contract import VideoSegmentationModel


@dataclass(frozen=True)
class ModelCost:
    """Cost of one output frame at ``size`` x ``size`` (FLOPs = 2 x multiply-adds).

    Attributes:
        params_m: parameters, millions.
        encoder_params_m: of which in the per-frame encoder (backbone + neck).
        clip_gflops: one ``model(clip)`` call, every frame of the clip encoded.
        stream_gflops: one new frame encoded plus one decode from cached features
            (equal to ``clip_gflops`` for single-frame models).
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
    features = model.encode(clip[:, 0])
    stream_gflops = encoder_gflops + count_gflops(model.decode, [features] * model.num_frames)
    model.train(was_training)
    return ModelCost(params, encoder_params, clip_gflops, stream_gflops, encoder_gflops)
