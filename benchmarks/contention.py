"""Streaming throughput with and without one competing busy process, per thread setting.

Each (backend, setting) runs twice in a fresh worker process: alone, then while one extra
process spins on a CPU (``while True: pass``, the "one competing busy process" of issue 15).
The worker streams ``--frames`` synthetic frames through ``VideoSegmenter`` (batch 1, random
weights) after ``--warmup`` frames and reports output frames/s; the table gives the ratio
busy / alone and whether it meets the target, busy >= 0.4x alone (``TARGET_RATIO``).
Settings (environment of the worker, set before torch loads):

* ``flanet``: what ``flanet predict`` sets (``flanet.threads.configure_process`` for a
  streaming command: threads = available CPUs, libgomp's spinning kept) and does: ``VideoSegmenter``
  adapts torch's thread count to the CPUs other processes leave free (``AdaptiveThreads``);
* ``capped``: what the other ``flanet`` commands set (``GOMP_SPINCOUNT=3000``), threads fixed;
* ``omp-default``: libgomp's defaults (``OMP_*``/``GOMP_*`` unset), torch threads = CPUs;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
* ``1-thread``: ``OMP_NUM_THREADS=1``.

Backends (``--backends``, default all three): ``pytorch``; ``onnxruntime``, whose model runs in its
own intra-op pool (threads = available CPUs, spinning off, whatever the setting: the OpenMP
setting reaches only its PyTorch pre- and post-processing); and ``openvino`` (its own threads =
available CPUs, unpinned); the ``threads`` column gives the model's threads.

    python benchmarks/contention.py --encoder res2net50_26w_4s --frames 6 --out bench-contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
TARGET_RATIO = 0.4  # issue 15: throughput under one competing process >= 0.4x idle
SETTINGS = ("flanet", "capped", "omp-default", "passive", "1-thread")


def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    if setting in ("flanet", "capped"):
        from flanet.threads import configure_process

        configure_process(env, cap_spinning=setting == "capped")
    elif setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif setting == "1-thread":
        env["OMP_NUM_THREADS"] = "1"
    return env


def _worker(encoder: str, size: int, frames: int, warmup: int, backend: str, setting: str) -> dict:
    import numpy as np
    import torch

    from flanet.inference import VideoSegmenter
    from flanet.models import create_model
    from flanet.threads import available_cpus

    torch.manual_seed(0)
    model = create_model("flanet", encoder=encoder, encoder_weights=None)
    segmenter = VideoSegmenter(model, size, "cpu", backend=backend, adaptive_threads=setting == "flanet")
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    stream = segmenter.stream(pool[i % 4] for i in range(warmup + frames))
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    torch_threads = []  # torch's thread count at each timed frame (AdaptiveThreads may change it)
    for _ in stream:
        torch_threads.append(torch.get_num_threads())
    seconds = time.perf_counter() - start
    model_threads = max(torch_threads) if backend == "pytorch" else available_cpus()  # the exported runner's pool
    return {"fps": frames / seconds, "threads": model_threads, "torch_threads": torch_threads,
            "env": {k: os.environ.get(k) for k in OMP_KEYS}}


def _measure(setting: str, backend: str, args: argparse.Namespace, busy: bool) -> dict:
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        command = [sys.executable, __file__, "--worker", "--encoder", args.encoder, "--size", str(args.size),
                   "--frames", str(args.frames), "--warmup", str(args.warmup), "--backend", backend,
                   "--setting", setting]
        done = subprocess.run(command, env=_env(setting), capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="res2net50_26w_4s")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    backends = ["pytorch", "onnxruntime", "openvino"]
    parser.add_argument("--backends", nargs="+", default=backends, choices=backends)
    parser.add_argument("--out", type=Path, default=Path("bench-contention.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="pytorch", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="flanet", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.encoder, args.size, args.frames, args.warmup, args.backend, args.setting)))
        return
    load_start, rows = os.getloadavg(), []
    for backend in args.backends:
        for setting in args.settings:
            alone = _measure(setting, backend, args, busy=False)
            busy = _measure(setting, backend, args, busy=True)
            ratio = busy["fps"] / alone["fps"]
            rows.append({"backend": backend, "setting": setting, "alone_fps": alone["fps"], "busy_fps": busy["fps"],
                         "ratio": ratio, "meets_target": ratio >= TARGET_RATIO, "threads": alone["threads"],
                         "torch_threads_alone": alone["torch_threads"], "torch_threads_busy": busy["torch_threads"],
                         "env": alone["env"]})
            print(f"{backend:11s} {setting:12s} alone {alone['fps']:6.2f}  busy {busy['fps']:6.2f} frames/s  "
                  f"ratio {ratio:.2f}", flush=True)
    report = {"encoder": args.encoder, "size": args.size, "frames": args.frames, "warmup": args.warmup,
              "cpus": len(os.sched_getaffinity(0)), "target_ratio": TARGET_RATIO, "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "results": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nload average {load_start} -> {report['load_average_end']}\n")
    print(f"| backend | setting | threads | alone frames/s | with 1 busy process | torch threads when busy | ratio "
          f"| >= {TARGET_RATIO}x |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        busy_threads = "-".join(str(n) for n in sorted(set(r["torch_threads_busy"])))
        print(f"| {r['backend']} | {r['setting']} | {r['threads']} | {r['alone_fps']:.2f} | {r['busy_fps']:.2f} | "
              f"{busy_threads} | {r['ratio']:.2f} | {'yes' if r['meets_target'] else 'no'} |")
    print()
    for r in (r for r in rows if r["setting"] == "flanet"):  # what flanet commands ship
        verdict = "met" if r["meets_target"] else "NOT met"
        print(f"{r['backend']}, flanet's settings: busy / alone = {r['ratio']:.2f} -> target >= {TARGET_RATIO}x {verdict}")


if __name__ == "__main__":
    main()
