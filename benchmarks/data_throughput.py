"""Data loading throughput: clips/s of ClipDataset through a DataLoader at 352x352.

By default it generates a synthetic set (8 videos x 16 frames, 352 px JPEG frames) in a temporary
folder and times the training loader of the ``buv-paper`` recipe (batch 24, 4 workers, clips of
4 frames for the contrastive loss, no augmentation), plus variants (workers, augmentation).
Prints a Markdown table for docs/benchmarks.md.

    python benchmarks/data_throughput.py [--root DATA] [--workers 0 2 4] [--batches 10]

It first prints the cost of one clip in one process (torch limited to one thread, as in a
DataLoader worker), then the DataLoader throughput for each number of workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from flanet.data import ClipDataset, discover
from flanet.data.synth import generate_dataset


def measure(dataset: ClipDataset, batch_size: int, workers: int, batches: int) -> float:
    """Clips per second over ``batches`` batches, after one warm-up batch (worker start-up excluded)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size * (batches + 1))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = sum(batch["frames"].shape[0] for batch in iterator)
    return count / (time.perf_counter() - start)


def per_clip_ms(dataset: ClipDataset, clips: int = 20, repeats: int = 3) -> float:
    """Milliseconds per ``dataset[i]`` in this process (best of ``repeats`` runs of ``clips`` clips)."""
    for index in range(3):
        dataset[index]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(clips):
            dataset[(index * 7) % len(dataset)]
        best = min(best, (time.perf_counter() - start) / clips)
    return 1000.0 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data set to read (default: synthetic set)")
    parser.add_argument("--image-size", type=int, default=352)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2, 4], help="loader workers to time (none: skip)")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads in the main process")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or generate_dataset(Path(tmp) / "synth", videos=8, frames=16, size=args.image_size, seed=0)
        video_set = discover(root)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores visible, "
              f"torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads in the main process")
        source = root if args.root else "synthetic 8 videos x 16 frames"
        print(f"data: {source}, output {args.image_size}x{args.image_size}, batch {args.batch_size}\n")
        settings = [(with_previous, augment) for with_previous in (True, False) for augment in (False, True)]
        datasets = {
            (with_previous, augment): ClipDataset(video_set, None, image_size=args.image_size, augment=augment,
                                                   with_previous=with_previous)
            for with_previous, augment in settings
        }
        names = {True: "4 frames (with_previous)", False: "3 frames"}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        print("| clip | augment | ms per clip, one process |")
        print("|---|---|---|")
        for (with_previous, augment), dataset in datasets.items():
            row = f"| {names[with_previous]} | {'on' if augment else 'off'}"
            print(f"{row} | {per_clip_ms(dataset):.1f} |", flush=True)
        torch.set_num_threads(threads)
        if args.workers:
            print("\n| clip | augment | workers | clips/s |")
            print("|---|---|---|---|")
        for (with_previous, augment), dataset in datasets.items():
            for workers in args.workers:
                rate = measure(dataset, args.batch_size, workers, args.batches)
                row = f"| {names[with_previous]} | {'on' if augment else 'off'} | {workers}"
                print(f"{row} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
