"""flanet on one CUDA GPU in one short run: streaming, batched, the authors' model, a training step.

Every row runs in this one process on ``cuda`` (CUDA synchronised before each clock read),
FLA-Net with Res2Net-50 and random weights at ``--size`` (352), eval + inference mode:

* ``stream``: :class:`~flanet.inference.VideoSegmenter` at batch 1, S x S uint8 frames in,
  per-frame results (probability map on the host) out, i.e. what ``flanet predict`` runs per
  frame minus decoding and writing; as float32, bf16 autocast, bf16 channels-last, and bf16
  with ``compile=True`` (inductor + CUDA graphs, compiled in the untimed warm-up). ``check``
  is the largest |probability difference| to the float32 stream over the first frames;
* ``step``: the same per-frame step (encode the new frame, decode the window) on frames
  already on the GPU: the model's share of a stream row;
* ``batched``: B consecutive frames of one video encoded in one batch and their B windows
  decoded in one batch, features carried over from batch to batch (``flanet evaluate``'s
  streaming mode, ``iter_streamed_predictions``), for every B in ``--batches``;
* ``authors``: the authors' architecture (``authors_model_replica.py``), one ``model(clip)``
  per output frame at batch 1, and B clips per call at flanet's best bf16 batch;
* ``train``: one optimiser step at the paper recipe's batch 24 and 352 (``buv-fast``'s
  bf16-mixed; ``train_step.py``), FLA-Net and the authors' architecture.

Output frames/s = frames / median(run seconds). ``x authors`` divides by the authors' row of
the same dtype (batch 1 rows by the batch-1 row, batched rows by the batched one). Prints one
markdown table and keeps ``--out`` (JSON) up to date after every row (``complete`` turns true
at the end). Without a GPU it stops at once (exit 2); ``--smoke`` runs every row on the CPU
with a tiny encoder and size instead, to check the script (tests/test_benchmarks_gpu.py).

    bash benchmarks/gpu.sh        # this script, then the CUDA tests
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.data import to_model_input
from flanet.inference import VideoSegmenter
from flanet.inference.bench.harness import machine_description
from flanet.models import create_model
from flanet.models.windows import CausalWindows, frame_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_model_replica import AuthorsFLANetReplica  # noqa: E402
from train_step import make_step  # noqa: E402

TARGET_FPS = 300  # issue 15: >= 300 output frames/s at 352 on an H100-class GPU
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


class Timer:
    """Median seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones, synchronised."""

    def __init__(self, device: torch.device, warmup: int, runs: int) -> None:
        self.device, self.warmup, self.runs = device, warmup, runs

    def __call__(self, fn: Callable[[], Any]) -> float:
        seconds = []
        for run in range(self.warmup + self.runs):
            self._sync()
            start = time.perf_counter()
            fn()
            self._sync()
            if run >= self.warmup:
                seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def stream_rows(model: torch.nn.Module, args: argparse.Namespace, timer: Timer) -> Iterator[dict]:
    """``stream`` and ``step`` rows at batch 1 for each variant, one at a time; ``check`` is against float32."""
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(4)]
    variants = [("fp32", {}), ("bf16", {"dtype": torch.bfloat16}),
                ("bf16 channels-last", {"dtype": torch.bfloat16, "channels_last": True}),
                ("bf16 compiled", {"dtype": torch.bfloat16, "compile": args.compile})][: 3 if args.no_compile else 4]
    reference = None
    for name, options in variants:
        segmenter = VideoSegmenter(model, args.size, args.device, **options)
        first = [r.probability for r in segmenter.stream(pool)]  # a compiled step compiles here
        reference = first if reference is None else reference
        check = max(float(np.abs(a - b).max()) for a, b in zip(first, reference))
        seconds = timer(functools.partial(_stream, segmenter, pool, args.frames))
        yield _row("stream", name, 1, args.frames / seconds, check=check)
        images = [to_model_input(frame, args.size).to(segmenter.device)[None]
                  .contiguous(memory_format=segmenter.memory_format) for frame in pool]
        yield _row("step", name, 1, args.frames / timer(functools.partial(_steps, segmenter, images, args.frames)))


def _stream(segmenter: VideoSegmenter, pool: list[np.ndarray], frames: int) -> None:
    """Stream ``frames`` frames (cycling through ``pool``) and consume the results."""
    for _ in segmenter.stream(pool[i % len(pool)] for i in range(frames)):
        pass


@torch.inference_mode()
def _steps(segmenter: VideoSegmenter, images: list[torch.Tensor], frames: int) -> None:
    """``frames`` per-frame steps of the segmenter on device tensors (encode the new frame, decode the window)."""
    windows = CausalWindows(segmenter.num_frames)
    for i in range(frames):
        segmenter._predict(windows.push(segmenter._per_frame_state(images[i % len(images)])))


def batched_fps(model: torch.nn.Module, batch: int, args: argparse.Namespace, timer: Timer,
                dtype: torch.dtype | None, memory_format: torch.memory_format) -> float:
    """Output frames/s of encoding B new frames and decoding their B windows per call (features carried)."""
    device = torch.device(args.device)
    model.to(memory_format=memory_format)
    images = torch.randn(batch, 3, args.size, args.size, device=device).contiguous(memory_format=memory_format)

    @torch.inference_mode()
    def run() -> None:
        windows = CausalWindows(model.num_frames)  # what flanet evaluate's stream mode runs per chunk
        with _autocast(device, dtype):
            for _ in range(args.batched_steps):
                model.decode(frame_features(windows.push(model.encode(images))))

    return batch * args.batched_steps / timer(run)


def authors_fps(replica: torch.nn.Module, batch: int, args: argparse.Namespace, timer: Timer,
                dtype: torch.dtype | None) -> float:
    """Output frames/s of the authors' architecture: ``model(clip)`` per output frame, ``batch`` clips a call."""
    device = torch.device(args.device)
    clips = torch.randn(batch, 3, 3, args.size, args.size, device=device)
    calls = max(1, args.frames // batch)

    @torch.inference_mode()
    def run() -> None:
        with _autocast(device, dtype):
            for _ in range(calls):
                replica(clips)

    return batch * calls / timer(run)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def _row(kind: str, what: str, batch: int, fps: float, **extra: Any) -> dict:
    return {"kind": kind, "what": what, "dtype": what.split()[0], "batch": batch, "fps": fps,
            "ms_per_frame": 1000 / fps, **extra}


class Report:
    """Rows measured so far, with the CUDA peak memory of each, saved to JSON after every row."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.path, self.device = args.out, torch.device(args.device)
        machine = machine_description()
        if self.device.type == "cuda":
            machine.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                           cudnn_tf32=torch.backends.cudnn.allow_tf32, matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
        settings = {k: v if isinstance(v, (int, float, str, list, dict, type(None))) else str(v)
                    for k, v in vars(args).items()}
        self.data: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
                                     "settings": settings, "rows": [], "complete": False}
        self._reset()

    def add(self, row: dict) -> dict:
        if self.device.type == "cuda":
            row["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.data["rows"].append(row)
        what = f"{row['fps']:8.1f} output frames/s" if "fps" in row else f"{row['s_per_step']:8.3f} s/step"
        print(f"{row['kind']:8s} {row['what']:22s} batch {row['batch']:3d}  {what}", flush=True)
        self.save()
        self._reset()
        return row

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2), encoding="utf-8")

    def _reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)


def markdown(data: dict) -> str:
    """One table of every row, with its ratio to the authors' row of the same dtype and kind of batch."""
    rows = data["rows"]
    authors = {(r["dtype"], r["batch"] == 1): r["fps"] for r in rows if r["kind"] == "authors"}
    lines = ["| measured | configuration | batch | output frames/s | ms / frame | x authors | check | CUDA peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = f"{r['cuda_peak_mb']:.0f}" if r.get("cuda_peak_mb") is not None else "-"
        if r["kind"] == "train":
            lines.append(f"| train step | {r['what']}, {r['dtype']} | {r['batch']} | {r['clips_per_s']:.1f} clips/s | "
                         f"{1000 * r['s_per_step']:.0f} ms / step | - | - | {peak} |")
            continue
        base = authors.get((r["dtype"], r["batch"] == 1))
        ratio = f"{r['fps'] / base:.2f}" if base and r["kind"] != "authors" else "-"
        check = f"{r['check']:.1e}" if "check" in r else "-"
        lines.append(f"| {r['kind']} | {r['what']} | {r['batch']} | {r['fps']:.1f} | {r['ms_per_frame']:.2f} | "
                     f"{ratio} | {check} | {peak} |")
    return "\n".join(lines)


def target_line(data: dict) -> str:
    """The batch-1 stream rows against the target of issue 15."""
    best = max((r for r in data["rows"] if r["kind"] == "stream"), key=lambda r: r["fps"])
    verdict = "met" if best["fps"] >= TARGET_FPS else "NOT met"
    return (f"target >= {TARGET_FPS} output frames/s at 352, batch-1 stream: best {best['what']} "
            f"{best['fps']:.1f} -> {verdict}")


def run(args: argparse.Namespace) -> dict:
    """Measure every row in order (batch 1, batched, authors, training) and return the report."""
    torch.manual_seed(0)
    timer, report = Timer(torch.device(args.device), args.warmup, args.runs), Report(args)
    model = create_model("flanet", encoder=args.encoder, encoder_weights=None).eval()
    for row in stream_rows(model, args, timer):
        report.add(row)
    model.to(args.device)
    batched = [report.add(_row("batched", name, b, batched_fps(model, b, args, timer, dtype, memory_format)))
               for name, dtype, memory_format in (("fp32", None, torch.contiguous_format),
                                                  ("bf16", torch.bfloat16, torch.contiguous_format),
                                                  ("bf16 channels-last", torch.bfloat16, torch.channels_last))
               for b in args.batches]
    best = {dtype: max((r for r in batched if r["dtype"] == dtype), key=lambda r: r["fps"])["batch"] for dtype in DTYPES}
    del model
    replica = AuthorsFLANetReplica(args.encoder).to(args.device).eval()
    for name, dtype in DTYPES.items():
        report.add(_row("authors", name, 1, authors_fps(replica, 1, args, timer, dtype)))
        report.add(_row("authors", name, best[name], authors_fps(replica, best[name], args, timer, dtype)))
    del replica
    for name in ("flanet", "authors-replica"):
        report.add(train_row(name, args, timer))
    report.data["complete"] = True
    report.save()
    return report.data


def train_row(name: str, args: argparse.Namespace, timer: Timer) -> dict:
    """One optimiser step of the paper recipe (bf16-mixed) for ``flanet`` or ``authors-replica``."""
    step, info = make_step(name, args.encoder, args.train_batch, args.size, args.device, "bf16-mixed")
    seconds = timer(step)
    return {"kind": "train", "what": name, "dtype": "bf16-mixed", "batch": args.train_batch,
            "s_per_step": seconds, "clips_per_s": args.train_batch / seconds, **info}


SMOKE = {"device": "cpu", "threads": 1, "encoder": "resnet18", "size": 32, "frames": 3, "runs": 1, "warmup": 0,
         "batches": [2], "batched_steps": 1, "train_batch": 2, "compile": {"backend": "eager"}}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    parser.add_argument("--encoder", default="res2net50_26w_4s", help="timm encoder of both models")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--frames", type=int, default=200, help="output frames per timed run at batch 1 (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs; the median is reported (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before them (default 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="batched rows' batch sizes")
    parser.add_argument("--batched-steps", type=int, default=8, help="batches per timed run of a batched row")
    parser.add_argument("--train-batch", type=int, default=24, help="clips per training step (paper: 24)")
    parser.add_argument("--compile-mode", default="reduce-overhead", help="torch.compile mode of the compiled rows")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled rows (no compilation time)")
    parser.add_argument("--out", type=Path, default=Path("bench-gpu.json"), help="JSON report")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script on the CPU: tiny encoder and size, one run, compile backend eager")
    args = parser.parse_args(argv)
    args.compile, args.threads = args.compile_mode, None
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py: error: no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or with --smoke to check the script on the CPU", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    data = run(args)
    print(f"\n{data['machine']['gpu'] or data['machine']['cpu']}, torch {data['machine']['torch']}, "
          f"{args.encoder} at {args.size}x{args.size}, random weights ({data['date']}; JSON: {args.out})\n")
    print(markdown(data))
    print(f"\n{target_line(data)}" + (" (smoke run: not the target's setting)" if args.smoke else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
