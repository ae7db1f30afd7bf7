"""benchmarks/gpu.sh: the one-command GPU measurement runs end to end (CPU smoke) and fails fast without a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_sh_smoke_measures_every_row_and_prints_one_table(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--smoke", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["complete"] is True and report["settings"]["smoke"] is True
    rows = [(r["kind"], r["what"], r["batch"]) for r in report["rows"]]
    variants = ["fp32", "bf16", "bf16 channels-last", "bf16 compiled"]
    assert rows == (
        [(kind, v, 1) for v in variants for kind in ("stream", "step")]
        + [("batched", v, 2) for v in ("fp32", "bf16", "bf16 channels-last")]
        + [("authors", d, b) for d in ("fp32", "bf16") for b in (1, 2)]
        + [("train", "flanet", 2), ("train", "authors-replica", 2)]
    )
    for row in report["rows"]:
        assert (row["fps"] if row["kind"] != "train" else row["clips_per_s"]) > 0
    stream = [r for r in report["rows"] if r["kind"] == "stream"]
    assert stream[0]["check"] == 0.0 and all(0 < r["check"] <= 5e-2 for r in stream[1:])  # bf16 vs float32
    table = done.stdout[done.stdout.index("| measured |"):].splitlines()
    assert len([line for line in table if line.startswith("| ")]) == len(rows) + 1  # header + one line a row
    assert "target >= 300 output frames/s at 352" in done.stdout


def test_gpu_py_stops_at_once_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCHMARKS / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module.main(["--out", str(tmp_path / "gpu.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks/gpu.py: error: no CUDA GPU visible") and err.count("\n") == 1
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine gpu.sh would measure")
def test_gpu_sh_stops_at_once_without_a_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--out", str(tmp_path / "gpu.json")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("benchmarks/gpu.py: error: no CUDA GPU visible")
    assert not (tmp_path / "gpu.json").exists()
