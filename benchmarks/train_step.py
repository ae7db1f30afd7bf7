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
from pathlib import Path

import torch

from flanet.losses import FLANetLoss
from flanet.models import create_model


def build(name: str, encoder: str) -> tuple[torch.nn.Module, int, bool]:
    """``(model, frames per clip, uses forward_windows)``."""
    if name == "authors-replica":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from authors_model_replica import AuthorsFLANetReplica

        return AuthorsFLANetReplica(), 3, False
    model = create_model(name, encoder=encoder)
    windows = bool(model.has_heatmap)
    return model, model.num_frames + int(windows), windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flanet")
    parser.add_argument("--encoder", default="res2net50_26w_4s")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, frames, windows = build(args.model, args.encoder)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    criterion = FLANetLoss()
    b, s = args.batch, args.size
    clip = torch.randn(b, frames, 3, s, s)
    mask = (torch.rand(b, 1, s, s) > 0.7).float()
    heatmap = torch.rand(b, 1, s, s)
    video_index = torch.arange(b)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if windows:
            out = model.forward_windows(clip)  # each (B, 2, 1, S, S): windows t and t-1
            loss = criterion(out.mask_logits[:, 0], mask, out.heatmap[:, 0], heatmap,
                             out.heatmap[:, 1], video_index).total
        elif args.model == "authors-replica":
            loss = criterion(model(clip), mask).total
        else:
            out = model(clip)
            loss = criterion(out.mask_logits, mask, out.heatmap, heatmap if out.heatmap is not None else None).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()

    load_before = os.getloadavg()[0]
    times = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "model": args.model,
        "encoder": args.encoder if args.model != "authors-replica" else "res2net50_26w_4s",
        "batch": b, "size": s, "frames_per_clip": frames,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "s_per_step_median": round(statistics.median(times), 3),
        "s_per_step_min": round(min(times), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "threads": args.threads, "torch": torch.__version__,
        "malloc": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "loadavg_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
