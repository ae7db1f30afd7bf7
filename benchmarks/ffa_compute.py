"""FFA computed in the spatial domain (default) vs with explicit FFTs: FLOPs and measured time.

For FLA-Net on Res2Net-50 at 352x352 (four FFA levels, neck widths 32-256 at strides 4-32,
T = 3), per output frame:

* **FLOPs of the FFA transforms and elementwise work, analytic** (``torch.utils.flop_counter``
  counts neither FFTs nor elementwise ops, so ``flanet bench``'s GFLOPs do not see the
  difference): a complex 2-D FFT of N points costs about 5 N log2 N real FLOPs;
* **measured time** of the four FFA modules (``spectral_path`` + BConv) and of one streaming
  ``decode`` (fusion + both decoder branches), median of ``--repeats`` runs after warm-up,
  eval mode, batch 1, ``torch.get_num_threads()`` threads, float32.

    python benchmarks/ffa_compute.py --repeats 30

Prints a markdown table and writes it as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from flanet.models import create_model

SIZE = 352


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return 1e3 * statistics.median(times)


def analytic_gflops(levels: list[tuple[int, int, int]], frames: int = 3) -> dict[str, float]:
    """FFA work outside the convolutions for levels ``(C, h, w)``, per output frame."""
    fft = spatial = 0.0
    for c, h, w in levels:
        n = h * w
        transform = 5 * n * math.log2(n)
        # fft2 of T frames, ifft2 of both halves of each of the T-1 groups; |.|^2 sums, gating,
        # complex assembly and z1 + z2 are ~ 8 FLOPs per spectral value of the groups
        fft += c * (frames + 2 * (frames - 1)) * transform + 8 * 4 * c * n * (frames - 1)
        # d = R(x) - x (1 per value and frame), ||d||^2 and ||x||^2 (2 x 2), gating x * a + d * (a - b) / 2
        # (3), and the sum of the previous frames' terms (1 per value for each frame beyond the second)
        spatial += 8 * c * n * frames + c * n * (frames - 2)
    return {"fft": fft / 1e9, "spatial": spatial / 1e9}


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {compute: create_model("flanet", ffa_compute=compute).eval() for compute in ("spatial", "fft")}
    models["fft"].load_state_dict(models["spatial"].state_dict())
    frames = [models["spatial"].encode(torch.randn(1, 3, SIZE, SIZE)) for _ in range(3)]
    levels = [torch.stack(level, dim=1) for level in zip(*frames)]  # (1, T, C, h, w)
    shapes = [(x.shape[2], x.shape[3], x.shape[4]) for x in levels]
    flops = analytic_gflops(shapes)
    rows = []
    for compute, model in models.items():
        fusions = model.fusions
        ffa_ms = _median_ms(lambda fusions=fusions: [f(x) for f, x in zip(fusions, levels)], args.repeats)
        decode_ms = _median_ms(lambda model=model: model.decode(frames), args.repeats)
        rows.append({"compute": compute, "ffa_gflops_outside_convs": flops[compute], "ffa_ms": ffa_ms, "decode_ms": decode_ms})
    diff = (models["spatial"].decode(frames).mask_logits - models["fft"].decode(frames).mask_logits).abs().max()
    machine = {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
               "processor": platform.processor(), "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__}
    print(f"machine: {machine}")
    print(f"levels (C, h, w): {shapes}; max |mask logit difference| spatial vs fft: {float(diff):.2e}")
    print("| FFA computation | GFLOPs / frame outside convolutions (analytic) | 4 FFA modules, ms | streaming decode, ms |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['compute']} | {row['ffa_gflops_outside_convs']:.3f} | {row['ffa_ms']:.1f} | {row['decode_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "levels": shapes, "rows": rows,
                                         "max_abs_diff": float(diff)}, indent=2))


if __name__ == "__main__":
    main()
