"""benchmarks/contention.py runs end to end for every backend and reports the ratio against the target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "contention.py"


@pytest.mark.slow
def test_contention_covers_every_backend_and_the_target(tmp_path: Path) -> None:
    out = tmp_path / "contention.json"
    env = {**os.environ, "FLANET_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, str(SCRIPT), "--encoder", "resnet18", "--size", "32", "--frames", "1", "--warmup", "0",
               "--settings", "flanet", "1-thread", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["target_ratio"] == 0.4
    rows = [(r["backend"], r["setting"]) for r in report["results"]]
    assert rows == [(b, s) for b in ("pytorch", "onnxruntime", "openvino") for s in ("flanet", "1-thread")]
    for r in report["results"]:
        assert r["alone_fps"] > 0 and r["busy_fps"] > 0 and r["meets_target"] == (r["ratio"] >= 0.4)
    threads = {(r["backend"], r["setting"]): r["threads"] for r in report["results"]}
    assert threads["pytorch", "1-thread"] == 1  # OMP_NUM_THREADS reaches torch, not onnxruntime's own pool
    for backend in ("onnxruntime", "openvino"):  # their own pools
        assert threads[backend, "1-thread"] == threads[backend, "flanet"]
    for r in report["results"]:  # torch's thread count at every timed frame, alone and beside the busy process
        assert len(r["torch_threads_alone"]) == len(r["torch_threads_busy"]) == 1
        assert all(1 <= n <= os.cpu_count() for n in r["torch_threads_alone"] + r["torch_threads_busy"])
    assert "| torch threads when busy |" in done.stdout
    assert "| ratio | >= 0.4x |" in done.stdout
    for backend in ("pytorch", "onnxruntime", "openvino"):
        assert f"{backend}, flanet's settings: busy / alone = " in done.stdout
