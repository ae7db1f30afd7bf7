"""Cost of every registered model, side by side in one run: parameters, GFLOPs at 352, CPU streaming frames/s.

Each model is built with its default options (its paper's backbone, random weights), counted with
``flanet.models.cost.registered_cost`` at 352x352 (one streamed output frame: a new frame encoded and
one decode), and streamed by ``VideoSegmenter`` on the CPU at 352x352 (``flanet.experiments.costs.
stream_fps``: median over the frames after the warm-up). Writes ``<out>/models_cost.json`` and ``.md``
with the machine (``lscpu``) and the load average at start and end.

    python benchmarks/models_cost.py --out benchmarks --frames 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from flanet.experiments.costs import COST_SIZE, stream_fps
from flanet.models import create_model, list_models, model_spec
from flanet.models.cost import registered_cost


def _lscpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    keys = ("Model name", "CPU(s)", "Thread(s) per core", "L3")
    return ", ".join(f"{k.strip()}: {fields[k].strip()}" for k in keys if k in fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    parser.add_argument("--frames", type=int, default=8, help="timed frames per model after 2 warm-up frames")
    parser.add_argument("--models", help="comma-separated names (default: every registered model)")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else list_models()
    load_start = os.getloadavg()
    rows = []
    for name in names:
        spec = model_spec(name)
        cost = registered_cost(name, COST_SIZE)
        torch.manual_seed(0)
        model = create_model(name).eval()
        fps = stream_fps(model, COST_SIZE, "cpu", frames=args.frames)
        rows.append({"model": name, "kind": spec.info.kind, "encoder": spec.default_encoder,
                     "rows": [str(r) for r in spec.info.rows], "params_m": cost.params_m,
                     "stream_gflops": cost.stream_gflops, "clip_gflops": cost.clip_gflops, "cpu_fps": fps})
        print(f"{name}: {cost.params_m:.1f} M, {cost.stream_gflops:.1f} GFLOPs, {fps:.2f} frames/s", flush=True)
        del model
    machine = {"lscpu": _lscpu(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "load_average_start": load_start, "load_average_end": os.getloadavg(),
               "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models_cost.json").write_text(json.dumps({"machine": machine, "size": COST_SIZE, "frames": args.frames,
                                                           "models": rows}, indent=1) + "\n")
    lines = ["| model | kind | paper rows | encoder (default) | params (M) | GFLOPs stream | GFLOPs clip | CPU frames/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['kind']} | {', '.join(r['rows']) or '-'} | {r['encoder']} | "
                     f"{r['params_m']:.1f} | {r['stream_gflops']:.1f} | {r['clip_gflops']:.1f} | {r['cpu_fps']:.2f} |")
    lines += ["", f"Machine: {machine['lscpu']}; torch {machine['torch']} with {machine['threads']} threads; load "
              f"average {load_start[0]:.2f} at start, {machine['load_average_end'][0]:.2f} at the end; "
              f"{machine['date_utc']}."]
    (args.out / "models_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
