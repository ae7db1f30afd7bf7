"""Side-by-side CPU timing: the authors' model (compute replica) vs flanet, same machine.

Each configuration runs in a fresh process (same torch threads, same input), batch 1 at
352x352, eval + inference mode, random weights; ``--warmup`` untimed calls then the
median of ``--runs`` timed calls of one *output frame*:

* ``authors, clip-by-clip``: the released architecture (``authors_model_replica.py``),
  3 frames re-encoded per output frame, as their code evaluates a video;
* ``flanet, clip-by-clip``: ``model(clip)``, 3 frames encoded per output frame;
* ``flanet, streaming``: one new frame ``encode`` + ``decode`` from cached features, what
  ``VideoSegmenter`` does per frame (model time only, no pre/post-processing);
* ``flanet, streaming, channels_last``: the same with channels-last memory format;
* ``flanet, streaming, channels_last, folded BN``: and the encoder's BatchNorms folded into its
  convolutions (``fold_batch_norms``): what ``VideoSegmenter`` runs on CPU with the PyTorch
  backend by default;
* ``flanet, streaming, compiled``: that default, with the per-frame ``encode`` and ``decode``
  compiled by ``torch.compile`` as ``VideoSegmenter(compile=True)`` does on the CPU (inductor,
  weights frozen; compiled during the warm-up, which is then at least one call);
* ``flanet, streaming, onnxruntime``: the same per-frame work in the ONNX Runtime backend
  (``--backend onnxruntime``: the exported encoder on the new frame, the exported decoder on its
  features and the two cached ones; CPU provider, ``--threads`` intra-op threads; the export
  is made, or taken from the export cache, before timing);
* ``flanet, streaming, openvino``: the same exported parts compiled by OpenVINO for the CPU
  (``--backend openvino``: float32, ``--threads`` threads, latency mode).

Both glibc allocator settings (defaults, and the tuned ``MALLOC_*`` thresholds of the
cost note) are run unless ``--allocator`` picks one; OpenMP spinning is capped as in ``flanet``
commands (``GOMP_SPINCOUNT``, unless set). The configurations run in ``--rounds`` interleaved
rounds (every configuration once per round, in the order above): this VM's speed drifts by up to
1.5x over minutes, so each ratio to the authors' model is taken within a round and the table gives
the median over rounds (and the range). Writes JSON and prints a markdown table.

    python benchmarks/compare_authors.py --out bench-authors.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from flanet.inference.bench.rounds import paired_ratio, with_range
from flanet.threads import SPIN_ENV

TUNED = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
CONFIGS = ("authors, clip-by-clip", "flanet, clip-by-clip", "flanet, streaming", "flanet, streaming, channels_last",
           "flanet, streaming, channels_last, folded BN", "flanet, streaming, compiled", "flanet, streaming, onnxruntime",
           "flanet, streaming, openvino")


def _worker(name: str, size: int, warmup: int, runs: int, threads: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    clip = torch.randn(1, 3, 3, size, size)
    if name.startswith("authors"):
        sys.path.insert(0, str(Path(__file__).parent))
        from authors_model_replica import AuthorsFLANetReplica

        model = AuthorsFLANetReplica().eval()
        step = lambda: model(clip)  # noqa: E731
    else:
        from flanet.models import create_model

        model = create_model("flanet").eval()
        if name == "flanet, clip-by-clip":
            step = lambda: model(clip)  # noqa: E731
        elif name.endswith(("onnxruntime", "openvino")):
            from flanet.inference.runtimes.exported import export_for_onnxruntime
            from flanet.inference.runtimes.onnxruntime_runner import OnnxRunner
            from flanet.inference.runtimes.openvino_runner import OpenVinoRunner

            manifest = export_for_onnxruntime(model, size)
            runner = (OnnxRunner(manifest, ["CPUExecutionProvider"], threads=threads) if name.endswith("onnxruntime")
                      else OpenVinoRunner(manifest, threads=threads))
            frame = clip[:, 0]
            cached = [runner.per_frame_state(frame), runner.per_frame_state(frame)]

            def step() -> None:
                runner.predict([runner.per_frame_state(frame), *cached])
        else:
            frame = clip[:, 0]
            if name.endswith(("folded BN", "compiled")):
                from flanet.models.encoder import fold_batch_norms

                model = fold_batch_norms(model)
            if "channels_last" in name or name.endswith("compiled"):
                model = model.to(memory_format=torch.channels_last)
                frame = frame.contiguous(memory_format=torch.channels_last)
            encode, decode = model.encode, model.decode
            if name.endswith("compiled"):
                from flanet.inference.core.segmenter import compile_options

                options = compile_options(True, torch.device("cpu"))
                encode, decode = (torch.compile(f, dynamic=False, **options) for f in (model.encode, model.decode))
                warmup = max(1, warmup)
            with torch.inference_mode():
                cached = [encode(frame), encode(frame)]

            def step() -> None:
                features = encode(frame)
                decode([features, *cached])

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "config": name, "ms_per_frame": 1000 * median, "fps": 1 / median, "runs_s": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--allocator", choices=("default", "tuned", "both"), default="both")
    parser.add_argument("--out", type=Path, default=Path("bench-authors.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.size, args.warmup, args.runs, args.threads)))
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    allocators = ("default", "tuned") if args.allocator == "both" else (args.allocator,)
    results = []
    load_start = os.getloadavg()
    for allocator in allocators:
        # OpenMP spinning capped as `flanet` commands and `flanet bench` do (unless set): uncapped, the
        # PyTorch rows collapse when another process shares the cores (docs/benchmarks.md)
        env = {**SPIN_ENV, **{k: v for k, v in os.environ.items() if k not in TUNED}}
        env.update(TUNED if allocator == "tuned" else {})
        for round_index in range(args.rounds):
            for name in CONFIGS:
                command = [sys.executable, __file__, "--worker", name, "--size", str(args.size), "--warmup",
                           str(args.warmup), "--runs", str(args.runs), "--threads", str(args.threads)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                record = {**json.loads(done.stdout.strip().splitlines()[-1]), "allocator": allocator,
                          "round": round_index}
                results.append(record)
                print(f"{allocator:8s} round {round_index + 1}/{args.rounds} {name:44s} {record['fps']:6.2f} frames/s  "
                      f"{record['ms_per_frame']:7.1f} ms", flush=True)
    rows = _summary(results, allocators)
    report = {"size": args.size, "rounds": args.rounds, "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "results": results, "summary": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nload average {load_start} -> {report['load_average_end']}\n")
    print("| allocator | configuration | output frames/s | ms / frame | x authors (range over rounds) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['allocator']} | {r['config']} | {r['fps']:.2f} | {r['ms_per_frame']:.0f} | "
              f"{with_range(r['x_authors'], r['rounds_x_authors'])} | {r['peak_rss_mb']:.0f} |")


def _summary(results: list[dict], allocators: tuple[str, ...]) -> list[dict]:
    """Per allocator and configuration: median frames/s over rounds, and the median over rounds of
    the ratio to the authors' model measured in the same round (``flanet bench``'s pairing)."""
    rows = []
    for allocator in allocators:
        authors = [r["fps"] for r in results if r["allocator"] == allocator and r["config"].startswith("authors")]
        for name in CONFIGS:
            mine = [r for r in results if r["allocator"] == allocator and r["config"] == name]
            fps = statistics.median(r["fps"] for r in mine)
            ratio, ratios = paired_ratio([r["fps"] for r in mine], authors)
            rows.append({"allocator": allocator, "config": name, "fps": fps, "ms_per_frame": 1000 / fps,
                         "rounds_fps": [r["fps"] for r in mine], "x_authors": ratio, "rounds_x_authors": ratios,
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in mine)})
    return rows

if __name__ == "__main__":
    main()
