"""``flanet bench``: inference speed, stream vs clips: throughput, memory and FLOPs.

Every (device, encoder, mode) configuration runs in a fresh worker process
(``python -m flanet.inference.bench.harness --worker CONFIG``), so the peak RSS it reports
(``resource.getrusage``) belongs to that configuration alone. The whole list of configurations
runs ``rounds`` times round-robin, and ratios are paired within a round
(:mod:`flanet.inference.bench.rounds`: the machine's speed drifts over minutes). A worker builds FLA-Net
with random weights, streams ``frames`` synthetic frames through
:class:`~flanet.inference.VideoSegmenter` (batch 1) ``warmup`` times untimed, then
``runs`` times timed; output frames/s is ``frames / median(run seconds)``.
GFLOPs per output frame come from :func:`flanet.models.cost.count_gflops`:
one ``encode`` + one ``decode`` (``stream``: each frame encoded once, its features reused) or one
``model(clip)`` (``clips``: every window encoded whole). The report goes to a JSON file and a markdown
file beside it; a shared document (docs/benchmarks.md) gets a section only when asked (``markdown``).
Accuracy comparisons are ``flanet compare`` (:mod:`flanet.experiments.compare`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.defaults import IMAGE_SIZE
from flanet.fileio import atomic_write_text
from flanet.inference.bench.end_to_end import authors_fps, decode_share, end_to_end_fps
from flanet.inference.bench.rounds import combine_rounds, paired_ratio, with_range

__all__ = ["run_bench", "machine_description", "TUNED_MALLOC_ENV"]

TUNED_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
MODES = ("stream", "clips")


def machine_description() -> dict[str, Any]:
    """CPU model, threads, torch version, GPU and allocator settings of this process."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "malloc_env": {k: os.environ.get(k) for k in TUNED_MALLOC_ENV},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _worker(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this process; returns the result record."""
    from flanet.inference.core.segmenter import VideoSegmenter
    from flanet.models import create_model
    from flanet.models.cost import count_gflops

    torch.manual_seed(0)
    device = torch.device(config["device"])
    size, n_frames = config["image_size"], config["frames"]
    backend = config.get("backend", "pytorch")
    if config["mode"] == "authors":
        return {**config, **authors_fps(Path(config["authors"]), config), "machine": machine_description()}
    model = create_model("flanet", encoder=config["encoder"], encoder_weights=None)
    if config["mode"] == "end-to-end":
        return {**config, **end_to_end_fps(model, config), "machine": machine_description(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    compile = config.get("compile", False) if backend == "pytorch" else False
    unfolded = bool(config.get("unfolded"))
    # the segmenter owns the model, as with a checkpoint (flanet predict): BatchNorms folded in place
    segmenter = VideoSegmenter(model, size, device, reuse_features=config["mode"] == "stream", backend=backend,
                               compile=compile, frames_in_flight=config.get("frames_in_flight", 1), own_model=True,
                               fold_batchnorm=False if unfolded else None)
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    x = torch.randn(1, 3, size, size, device=device)
    with torch.inference_mode():
        if segmenter.reuse_features:
            gflops = count_gflops(lambda: model.decode([model.encode(x)] * model.num_frames))
        else:
            gflops = count_gflops(model, x[:, None].expand(1, model.num_frames, -1, -1, -1))
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    latencies: list[float] = []  # seconds from asking for a frame's result to having it (one frame at a time)

    def one_run() -> float:
        start = last = time.perf_counter()
        for _ in segmenter.stream(pool[i % len(pool)] for i in range(n_frames)):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            latencies.append(now - last)
            last = now
        return time.perf_counter() - start

    for _ in range(max(1, config["warmup"]) if compile else config["warmup"]):  # compiling is not timed
        one_run()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    latencies.clear()
    seconds = [one_run() for _ in range(config["runs"])]
    median = statistics.median(seconds)
    latency = latency_percentiles(latencies) if segmenter.frames_in_flight == 1 else {}
    share = decode_share(segmenter, pool) if segmenter.reuse_features else {}
    return {
        **{k: config[k] for k in ("device", "encoder", "mode", "image_size", "frames", "runs", "warmup")},
        "backend": backend, "compile": compile, "frames_in_flight": segmenter.frames_in_flight, **share, **latency,
        "unfolded": unfolded,
        "fps": n_frames / median, "ms_per_frame": 1000 * median / n_frames, "run_seconds": seconds,
        "gflops_per_frame": gflops, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_model_mb": rss_loaded,
        "cuda_peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "machine": machine_description(),
    }


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """``latency_ms_p50`` / ``latency_ms_p95`` of per-frame latencies in seconds (nearest rank; empty: {})."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    rank = lambda q: ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]  # noqa: E731
    return {"latency_ms_p50": 1000 * rank(0.50), "latency_ms_p95": 1000 * rank(0.95)}


def _run_worker(config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "flanet.inference.bench.harness", "--worker", json.dumps(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(worker_failure(config, done.stderr))
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_failure(config: dict[str, Any], stderr: str) -> str:
    """One line for a failed worker: which configuration, its last error line, and where its whole log is kept."""
    handle, name = tempfile.mkstemp(prefix="flanet-bench-worker-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8") as log_file:
        log_file.write(f"configuration: {json.dumps(config)}\n{stderr}")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no error output"
    label = ", ".join(str(config[k]) for k in ("encoder", "mode", "backend") if config.get(k))
    return f"bench worker ({label}) failed: {last[:300]} (its whole log: {name})"


def _allocator_label(env: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items() if v) or "glibc defaults (MALLOC_* unset)"


def _load(values: Sequence[float] | None) -> str:
    return "n/a" if values is None else " / ".join(f"{v:.2f}" for v in values)


def _backend_label(record: dict[str, Any]) -> str:
    """``pytorch``, ``pytorch compiled``, an exported backend's name, or ``<name>, N in flight``, for one row."""
    backend = record.get("backend", "pytorch")
    in_flight = record.get("frames_in_flight", 1)
    backend = f"{backend}, BatchNorms unfolded" if record.get("unfolded") else backend
    return (f"{backend} compiled" if record.get("compile") else backend) + (
        f", {in_flight} in flight" if in_flight > 1 else "")


def _compile_label(compile: bool | str) -> str:
    if compile is False:
        return "PyTorch rows eager"
    mode = f"mode {compile}" if isinstance(compile, str) else "reduce-overhead on CUDA, default with frozen weights elsewhere"
    return f"PyTorch rows eager, plus a stream row with torch.compile of the per-frame step ({mode})"


def _method(rounds: int) -> str:
    if rounds == 1:
        return "one round: each configuration in a fresh process"
    return (f"{rounds} interleaved rounds: each round runs every configuration once (the authors' model first), "
            "each in a fresh process")


def _markdown(report: dict[str, Any]) -> str:
    m, settings = report["machine"], report["settings"]
    rounds = settings["rounds"]
    legend = "; ".join(f"{name} = {_allocator_label(env)}" for name, env in report["allocators"].items())
    lines = [
        f"\n## Inference: stream vs clips (`flanet bench`, {report['date']})\n",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} threads, GPU: {m['gpu'] or 'none'}; load average (1 / 5 / 15 min) "
        f"{_load(report['load_average_start'])} at start, {_load(report['load_average_end'])} at the end. "
        f"Allocator: {legend}. "
        f"FLA-Net (`create_model('flanet', encoder=...)`), random weights, batch 1, "
        f"{settings['image_size']}x{settings['image_size']}, eval + inference mode; {_method(rounds)}, "
        f"{settings['warmup']} warm-up run(s), then the median of {settings['runs']} "
        f"runs of {settings['frames']} output frames through `VideoSegmenter.stream` (synthetic frames "
        "already at the model size: the time includes normalisation and output copies, no resizing)"
        f"{'; frames/s is the median over rounds of those medians' if rounds > 1 else ''}; "
        f"{_compile_label(settings.get('compile', False))}. "
        f"Peak RSS{' (the largest of the rounds)' if rounds > 1 else ''} includes what importing torch maps; "
        "the RSS after building the model is in brackets.\n",
        "| device | allocator | encoder | mode | output frames/s | ms/frame | GFLOPs/frame | peak RSS MB (after model) | CUDA peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["mode"] not in MODES:
            continue
        cuda = f"{r['cuda_peak_allocated_mb']:.0f}" if r["cuda_peak_allocated_mb"] is not None else "-"
        mode = r["mode"] if _backend_label(r) == "pytorch" else f"{r['mode']} ({_backend_label(r)})"
        lines.append(
            f"| {r['device']} | {r['allocator']} | {r['encoder']} | {mode} | {r['fps']:.2f} | "
            f"{r['ms_per_frame']:.1f} | {r['gflops_per_frame']:.1f} | {r['peak_rss_mb']:.0f} "
            f"({r['rss_after_model_mb']:.0f}) | {cuda} |"
        )
    lines.append("")
    if any(r["mode"] not in MODES or r.get("x_authors") for r in report["results"]):
        lines += [
            "Per backend, model only (stream) and end to end (`predict_to_folder` on a synthetic "
            f"{'x'.join(str(v) for v in settings.get('video_size', (640, 480)))} mp4, timed whole: "
            "decoding, preprocessing, model, resizing, masks, overlay video, CSV), beside the authors' "
            "architecture (clips, model only) measured in the same run; fusion + decoders = the median "
            "time of one `decode` of cached features over that of a whole streamed frame. "
            + ("x authors = the median over rounds of the ratio to the authors' frames/s measured in the same "
               "round (which cancels the machine's drift between rounds), fusion + decoders the median over "
               "rounds; min-max over rounds in brackets.\n" if rounds > 1 else "\n"),
            "Latency: per frame, one frame at a time, from asking for a frame's result to having it "
            "(nearest-rank p50 / p95 over the timed runs, median over rounds). Peak RSS: the worker process's "
            "(an end-to-end worker holds the model twice: `predict`'s and the model-only segmenter's).\n",
            "| device | allocator | encoder | backend | measured | output frames/s | x authors | fusion + decoders "
            "| latency p50 / p95 ms | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["results"]:
            ratio = ("-" if not r.get("x_authors") else "1.00" if r["mode"] == "authors"
                     else with_range(r["x_authors"], r["rounds_x_authors"]))
            share = (f"{r['decode_ms']:.1f} ms = "
                     + with_range(100 * r["decode_share"], [100 * s for s in r["rounds_decode_share"]], 0, " %")
                     if r.get("decode_share") else "-")
            latency = (f"{r['latency_ms_p50']:.0f} / {r['latency_ms_p95']:.0f}" if r.get("latency_ms_p50") else "-")
            rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"
            lines.append(f"| {r['device']} | {r['allocator']} | {r['encoder']} | {_backend_label(r)} | "
                         f"{r['mode']} | {r['fps']:.2f} | {ratio} | {share} | {latency} | {rss} |")
        lines.append("")
    e2e = [r for r in report["results"] if r.get("x_model_only")]
    if e2e:
        size = "x".join(str(v) for v in e2e[0]["video_size"])
        lines += [
            f"End to end against model only (issue 28: >= 0.85x): `predict_to_folder` of a synthetic {size} mp4 "
            f"({e2e[0]['video_frames']} frames: decoding, model, outputs at full size, masks, overlay video, "
            "viewer, CSV), from its first frame to its last write (its summary's `fps_achieved`), against the "
            "same checkpoint streaming the same decoded frames in the same process, the two alternating; ratio = "
            "the median of the paired ratios (min-max over rounds). With start-up = the whole `predict_to_folder` "
            "call (loading the checkpoint, an exported backend's session, the output folder).\n",
            "| device | encoder | backend | end to end frames/s | with start-up | model only frames/s | "
            "end to end / model only |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in e2e:
            lines.append(f"| {r['device']} | {r['encoder']} | {_backend_label(r)} | {r['streaming_fps']:.2f} | "
                         f"{r['fps']:.2f} | {r['model_only_fps']:.2f} | "
                         f"{with_range(r['x_model_only'], r['rounds_x_model_only'], unit='x')} |")
        lines.append("")
    if rounds > 1 and report["speedup"]:
        lines.append("Stream vs clips: the median over rounds of the ratio within a round (min-max).\n")
    lines += [f"- {key}: stream is {with_range(value, report['speedup_rounds'][key], unit='x')} clips throughput"
              for key, value in report["speedup"].items()]
    return "\n".join(lines) + "\n"


def run_bench(encoders: Sequence[str], image_size: int = IMAGE_SIZE, frames: int = 8, runs: int = 5, warmup: int = 1,
              devices: Sequence[str] | None = None, json_path: Path = Path("bench-inference.json"),
              markdown: Path | None = None, allocators: Sequence[str] = ("default",),
              backends: Sequence[str] = ("pytorch",), end_to_end: bool = False,
              authors: Path | None = None, compile: bool | str = False, rounds: int = 3,
              frames_in_flight: int = 1, video_size: tuple[int, int] = (1920, 1080), video_frames: int = 32,
              unfolded: bool = False) -> dict[str, Any]:
    """Run every configuration ``rounds`` times round-robin, each time in a fresh process; write the reports.

    Round 1 runs the whole list of configurations (per allocator and device: the authors' model first,
    then every flanet configuration) once, then round 2 does, and so on, so each configuration is
    measured across the same span of time; a configuration's figures are medians over rounds and its
    ratios (``x_authors``, stream vs clips) medians of the ratios within each round
    (:func:`~flanet.inference.bench.rounds.combine_rounds`); every round is kept in the JSON.

    Args:
        encoders: timm encoder names (random weights).
        image_size: square input side.
        frames: output frames per timed run.
        runs: timed runs per configuration (median reported).
        warmup: untimed runs first.
        devices: e.g. ["cpu", "cuda"]; default cpu plus cuda when available.
        json_path: where the JSON report goes; the same report as markdown goes beside it
            (``json_path`` with suffix ``.md``, replaced on every run).
        markdown: a shared document the markdown section is also appended to, e.g.
            docs/benchmarks.md (None, the default: none).
        allocators: "default" (this process's environment) and/or "tuned" (workers get
            ``TUNED_MALLOC_ENV``, glibc keeps large buffers mapped).
        backends: any of "pytorch", "onnxruntime", "openvino": a model-only stream row each (with
            the share of the fusion + decoders in a frame).
        end_to_end: also time ``predict_to_folder`` on a synthetic ``video_size`` mp4 of ``video_frames``
            frames, per backend (eager PyTorch: every predict would compile anew), beside the model-only stream
            of the same decoded frames (:func:`~flanet.inference.bench.end_to_end.end_to_end_fps`).
        authors: file of the authors' model replica (``benchmarks/authors_model_replica.py``):
            adds its clips row and every row's ratio to it (same run, same machine).
        compile: add a stream row with the PyTorch per-frame step compiled (True: mode by device,
            or a mode; see :class:`~flanet.inference.VideoSegmenter`) beside the eager one, which
            stays, as do the eager clips and end-to-end rows; the compilation happens in an
            untimed warm-up run.
        rounds: interleaved rounds (at least 1).
        frames_in_flight: above 1, also a stream row per exported backend with this many frames in
            flight (:mod:`flanet.inference.core.in_flight`; its fusion + decoders share is per worker:
            one decode over ``frames_in_flight`` x the frame interval).
        video_size: (width, height) of the end-to-end rows' synthetic recording.
        video_frames: frames of that recording.
        unfolded: also a PyTorch stream row without BatchNorm folding (its peak memory beside the folded one's).

    Returns:
        The report written to ``json_path``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if frames_in_flight < 1:
        raise ValueError(f"frames_in_flight must be at least 1, got {frames_in_flight}")
    devices = list(devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    plan, allocator_envs = [], {}  # one round: (allocator, worker environment, configuration)
    for allocator in allocators:
        env = {**os.environ, **(TUNED_MALLOC_ENV if allocator == "tuned" else {})}
        allocator_envs[allocator] = {k: env.get(k) for k in TUNED_MALLOC_ENV}
        for device in devices:
            jobs = [("authors", "authors", "pytorch", False, 1)] if authors is not None else []
            for encoder in encoders:
                jobs += [(encoder, "stream", backend, False, 1) for backend in backends]
                if compile and "pytorch" in backends:  # the compiled per-frame step beside the eager one
                    jobs.append((encoder, "stream", "pytorch", compile, 1))
                if frames_in_flight > 1:  # pipelined rows beside the one-frame-at-a-time ones
                    jobs += [(encoder, "stream", b, False, frames_in_flight) for b in backends if b != "pytorch"]
                if unfolded and "pytorch" in backends:  # peak memory without BatchNorm folding, beside it
                    jobs.append((encoder, "stream-unfolded", "pytorch", False, 1))
                jobs.append((encoder, "clips", "pytorch", False, 1))
                # eager only: each predict builds its own segmenter, so a compiled row would time compilation
                jobs += [(encoder, "end-to-end", backend, False, 1) for backend in backends if end_to_end]
            for encoder, mode, backend, compiled, in_flight in jobs:
                plan.append((allocator, env, {
                    "device": device, "encoder": encoder, "mode": mode.removesuffix("-unfolded"),
                    "image_size": image_size, "frames": frames, "runs": runs, "warmup": warmup, "backend": backend,
                    "compile": compiled, "frames_in_flight": in_flight, "unfolded": mode.endswith("-unfolded"),
                    "video_size": list(video_size), "video_frames": video_frames,
                    "authors": str(authors) if authors is not None else None}))
    measured: list[list[dict[str, Any]]] = [[] for _ in plan]
    for round_number in range(1, rounds + 1):
        for (allocator, env, config), records in zip(plan, measured, strict=True):
            what = ("authors' model" if config["mode"] == "authors"
                    else f"{config['encoder']} {config['mode']} {_backend_label(config)}")
            print(f"round {round_number}/{rounds}: {config['device']} {allocator} {what} ...", end=" ", flush=True)
            records.append({**_run_worker(config, env), "allocator": allocator})
            print(f"{records[-1]['fps']:.2f} frames/s", flush=True)
    results = [combine_rounds(records) for records in measured]
    speedup, speedup_rounds = {}, {}
    for r in results:
        if r["mode"] == "stream":
            clip = next(c for c in results if c["mode"] == "clips" and
                        all(c[k] == r[k] for k in ("device", "encoder", "allocator")))
            via = "" if _backend_label(r) == "pytorch" else f", {_backend_label(r)}"
            key = f"{r['device']} {r['encoder']} ({r['allocator']}{via})"
            speedup[key], speedup_rounds[key] = paired_ratio(r["rounds_fps"], clip["rounds_fps"])
    for r in results:
        base = next((a for a in results if a["mode"] == "authors" and a["device"] == r["device"]
                     and a["allocator"] == r["allocator"]), None)
        r["x_authors"], r["rounds_x_authors"] = (
            (None, None) if base is None else paired_ratio(r["rounds_fps"], base["rounds_fps"]))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": results[0]["machine"], "load_average_start": load_start,
        "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "settings": {"image_size": image_size, "frames": frames, "runs": runs, "warmup": warmup, "batch": 1,
                     "compile": compile, "rounds": rounds, "frames_in_flight": frames_in_flight,
                     "video_size": list(video_size), "video_frames": video_frames},
        "allocators": allocator_envs, "results": results, "speedup": speedup, "speedup_rounds": speedup_rounds,
    }
    section = _markdown(report)
    atomic_write_text(json_path, json.dumps(report, indent=2))
    atomic_write_text(Path(json_path).with_suffix(".md"), section.lstrip("\n"))
    for key, value in speedup.items():
        print(f"{key}: stream {with_range(value, speedup_rounds[key], unit='x')} clips")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        with markdown.open("a", encoding="utf-8") as handle:
            handle.write(section)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="flanet bench worker (internal)")
    parser.add_argument("--worker", required=True, help="JSON configuration of one measurement")
    print(json.dumps(_worker(json.loads(parser.parse_args().worker))))
