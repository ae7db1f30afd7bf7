"""Parameters, GFLOPs at 352 and CPU streaming frames/s of the compared image methods beside FLA-Net and UNet.

One process, models one after the other, each at its paper's default encoder with random
weights (docs/benchmarks.md, "Compared image methods: cost"):

    python benchmarks/image_methods_cost.py --frames 4 --out benchmarks/image_methods_cost.json

GFLOPs per output frame are :func:`flanet.models.cost.measure_cost`'s ``stream_gflops`` (one
encode + one decode); frames/s is ``frames / seconds`` of :class:`flanet.inference.VideoSegmenter`
streaming synthetic 352x352 frames at batch 1 after one untimed warm-up frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from flanet.inference import VideoSegmenter
from flanet.models import create_model
from flanet.models.cost import measure_cost

MODELS = ("flanet", "unet", "resunetplusplus", "acsnet", "pranet", "transunet", "setr")


def measure(name: str, size: int, frames: int) -> dict[str, object]:
    """Cost and streaming speed of model ``name`` at its defaults."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    cost = measure_cost(model, size)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(frames + 1)]
    segmenter = VideoSegmenter(model, size, "cpu", adaptive_threads=False)
    stream = segmenter.stream(images)
    next(stream)  # warm-up frame, untimed
    start = time.perf_counter()
    count = sum(1 for _ in stream)
    seconds = time.perf_counter() - start
    return {"model": name, "encoder": model.config["options"]["encoder"], "params_m": cost.params_m,
            "stream_gflops": cost.stream_gflops, "frames": count, "seconds": seconds, "fps": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/image_methods_cost.json"))
    args = parser.parse_args()
    machine = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    load_start = os.getloadavg()
    rows = []
    for name in args.models:
        rows.append(measure(name, args.size, args.frames))
        row = rows[-1]
        print(f"{name}: {row['params_m']:.1f} M, {row['stream_gflops']:.1f} GFLOPs, {row['fps']:.2f} frames/s", flush=True)
    report = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "image_size": args.size,
              "torch_threads": torch.get_num_threads(), "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "lscpu": machine, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
