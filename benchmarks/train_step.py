"""Seconds per training step and peak memory of one optimiser step (issue: training cost).

One step = forward, the loss of eq. (2), backward, gradient clipping (0.5) and Adam, on random
clips and targets, exactly what ``flanet train`` runs per batch:

- ``--model flanet``: clips of 4 frames ``[t, t-1, t-2, t-3]`` through ``forward_windows``
  (outputs for t and t-1 from one encoder pass per frame) and the full loss incl. eq. (1);
- ``--model flanet-basic`` (or any create_model name without heatmap): 3-frame clips, BCE + IoU;
- ``--model authors-replica``: the compute of the authors' released model
  (``benchmarks/authors_model_replica.py``), 3-frame clips, BCE + IoU.

Run each configuration in a fresh process (peak RSS is per process), e.g.::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        python benchmarks/train_step.py --model flanet --batch 2 --size 352 --threads 2

On a GPU, at the paper recipe's batch 24 with ``buv-fast``'s bf16-mixed (``buv-paper`` itself is float32)::

    python benchmarks/train_step.py --device cuda --batch 24 --precision bf16-mixed

Prints one JSON line: median / min seconds per step after warm-up, peak RSS, settings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from flanet.losses import FLANetLoss
from flanet.models import create_model

PRECISIONS = ("32-true", "bf16-mixed")


def build(name: str, encoder: str) -> tuple[torch.nn.Module, int, bool]:
    """``(model, frames per clip, uses forward_windows)``."""
    if name == "authors-replica":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from authors_model_replica import AuthorsFLANetReplica

        return AuthorsFLANetReplica(encoder), 3, False
    model = create_model(name, encoder=encoder)
    windows = bool(model.has_heatmap)
    return model, model.num_frames + int(windows), windows


def make_step(name: str, encoder: str, batch: int, size: int, device: str = "cpu",
              precision: str = "32-true") -> tuple[Callable[[], None], dict]:
    """One optimiser step of ``flanet train`` on random data, and what it runs on.

    Args:
        name: ``create_model`` name or ``authors-replica``.
        encoder: timm encoder (random weights).
        batch: clips per step (the paper: 24).
        size: square input side (the paper: 352).
        device: torch device.
        precision: ``32-true``, or ``bf16-mixed`` (autocast to bfloat16, as Lightning's setting
            of the same name; weights, gradients and Adam stay float32).

    Returns:
        ``(step, info)``: ``step()`` runs one step (asynchronously on CUDA: synchronise to time
        it); ``info`` has the frames per clip and the parameter count.
    """
    model, frames, windows = build(name, encoder)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    criterion = FLANetLoss()
    clip = torch.randn(batch, frames, 3, size, size, device=device)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    heatmap = torch.rand(batch, 1, size, size, device=device)
    video_index = torch.arange(batch, device=device)
    device_type = torch.device(device).type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            if windows:
                out = model.forward_windows(clip)  # each (B, 2, 1, S, S): windows t and t-1
                loss = criterion(out.mask_logits[:, 0], mask, out.heatmap[:, 0], heatmap,
                                 out.heatmap[:, 1], video_index).total
            elif name == "authors-replica":
                loss = criterion(model(clip), mask).total
            else:
                out = model(clip)
                loss = criterion(out.mask_logits, mask, out.heatmap, heatmap if out.heatmap is not None else None).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()

    return step, {"frames_per_clip": frames, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flanet")
    parser.add_argument("--encoder", default="res2net50_26w_4s")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32-true", choices=PRECISIONS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    step, info = make_step(args.model, args.encoder, args.batch, args.size, args.device, args.precision)
    cuda = torch.device(args.device).type == "cuda"

    load_before = os.getloadavg()[0]
    times = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(args.device)
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "model": args.model,
        "encoder": args.encoder,
        "batch": args.batch, "size": args.size, **info, "device": args.device, "precision": args.precision,
        "s_per_step_median": round(statistics.median(times), 3),
        "s_per_step_min": round(min(times), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "cuda_peak_gb": round(torch.cuda.max_memory_allocated(args.device) / 1e9, 2) if cuda else None,
        "threads": args.threads, "torch": torch.__version__,
        "malloc": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "loadavg_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
