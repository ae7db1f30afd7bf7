"""What a compared model costs: parameters and GFLOPs at 352 (counted), and streaming frames/s (measured).

The cost columns of ``flanet compare --table N`` and of ``benchmarks/models_cost.py``.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from flanet.defaults import IMAGE_SIZE
from flanet.models.contract import VideoSegmentationModel
from flanet.models.cost import frames_to_fill, registered_cost

#: The paper's input size (Section 4): GFLOPs are counted at 352 x 352 for every row.
COST_SIZE = IMAGE_SIZE


@dataclass(frozen=True)
class RowCost:
    """Parameters (millions), GFLOPs of one streamed output frame at 352, frames/s measured (None: not)."""

    params_m: float
    gflops: float
    fps: float | None


def stream_fps(model: VideoSegmentationModel, image_size: int, device: str | torch.device = "cpu", frames: int = 12,
               warmup: int = 2, seed: int = 0) -> float:
    """Frames/s of :class:`~flanet.inference.VideoSegmenter` streaming ``frames`` noise frames after the warm-up.

    One encoder pass per frame (cached features for the previous ones), batch 1, frames already at
    ``image_size`` (no resizing); the median of per-frame times, so one stall does not decide it. The
    warm-up is ``warmup`` frames, or more: as many as the model's state needs to fill
    (:func:`~flanet.models.cost.frames_to_fill`: a window, a memory), so every timed frame is of the
    steady state (a memory sampling every k-th frame then holds its bound, or one entry less when the
    previous frame is also a sampled one).
    """
    from flanet.inference import VideoSegmenter

    side = 2 * model.size_multiple  # a state fills by frame count alone: a small frame where the model is
    small = torch.zeros(1, 3, side, side, device=next(model.parameters()).device)
    with torch.inference_mode():
        warmup = max(warmup, frames_to_fill(model.eval(), small) + 1)
    rng = np.random.default_rng(seed)
    source = [rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for _ in range(warmup + frames)]
    segmenter = VideoSegmenter(model, image_size, device)
    times: list[float] = []
    start = time.perf_counter()
    for index, _ in enumerate(segmenter.stream(source)):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if index >= warmup:
            times.append(now - start)
        start = now
    return 1.0 / statistics.median(times)


def row_cost(model: VideoSegmentationModel, image_size: int | None = None, device: str | torch.device = "cpu") -> RowCost:
    """Cost of ``model`` as built (its ``{name, options}``): counted at 352, frames/s at ``image_size`` (None: skip)."""
    config = model.config
    cost = registered_cost(config["name"], COST_SIZE, **config["options"])
    fps = None if image_size is None else stream_fps(model, image_size, device)
    return RowCost(cost.params_m, cost.stream_gflops, fps)


def device_name(device: str | torch.device = "cpu") -> str:
    """``cpu: <model name>, N threads`` or the CUDA device's name, for the frames/s column."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    except OSError:
        pass
    return f"CPU {name}, {torch.get_num_threads()} threads"
