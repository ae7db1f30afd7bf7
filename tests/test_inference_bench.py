"""`flanet bench`: FLOP accounting of stream vs clips, report files (no timing asserts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from flanet.inference.bench import TUNED_MALLOC_ENV, _worker, run_bench
from flanet.models import create_model

SIZE = 64


def _config(mode: str) -> dict:
    return {"device": "cpu", "encoder": "resnet18", "mode": mode, "image_size": SIZE, "frames": 2, "runs": 1, "warmup": 0}


def test_stream_saves_exactly_two_encoder_passes_per_frame() -> None:
    streaming, clip = _worker(_config("stream")), _worker(_config("clips"))
    model = create_model("flanet", encoder="resnet18").eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.encode(torch.randn(1, 3, SIZE, SIZE))
    encoder_gflops = counter.get_total_flops() / 1e9
    assert encoder_gflops > 0
    assert math.isclose(clip["gflops_per_frame"] - streaming["gflops_per_frame"], 2 * encoder_gflops, rel_tol=1e-9)
    for record in (streaming, clip):
        assert record["fps"] > 0 and len(record["run_seconds"]) == 1
        assert record["peak_rss_mb"] >= record["rss_after_model_mb"] > 0
        assert record["cuda_peak_allocated_mb"] is None and record["machine"]["torch"] == torch.__version__


def test_run_bench_writes_json_and_markdown_and_appends_a_section_when_asked(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nsomeone else's section\n")
    report = run_bench(["resnet18"], image_size=32, frames=2, runs=1, warmup=0, devices=["cpu"],
                       json_path=tmp_path / "b.json", markdown=docs, allocators=["tuned"])
    saved = json.loads((tmp_path / "b.json").read_text())
    assert [(r["encoder"], r["mode"]) for r in saved["results"]] == [("resnet18", "stream"), ("resnet18", "clips")]
    for record in saved["results"]:  # the workers really ran with the tuned allocator settings
        assert record["machine"]["malloc_env"] == TUNED_MALLOC_ENV
    assert list(saved["speedup"].values()) == list(report["speedup"].values()) and len(saved["speedup"]) == 1
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nsomeone else's section\n")
    assert "| resnet18 | stream |" in text and "| resnet18 | clips |" in text
    assert "MALLOC_MMAP_THRESHOLD_=4294967296" in text
    own = (tmp_path / "b.md").read_text()  # the markdown report beside the JSON holds the same section
    assert own.startswith("## Inference: stream vs clips") and text.endswith(own)


def test_flanet_bench_leaves_docs_alone_unless_asked(tmp_path: Path, monkeypatch) -> None:
    from flanet.cli import main
    from flanet.inference import bench

    calls: list[dict] = []
    monkeypatch.setattr(bench, "run_bench", lambda **kwargs: calls.append(kwargs))
    args = ["bench", "--encoders", "resnet18", "--json", str(tmp_path / "b.json")]
    assert main(args) == 0 and main([*args, "--docs", str(tmp_path / "doc.md")]) == 0
    assert calls[0]["markdown"] is None and calls[1]["markdown"] == tmp_path / "doc.md"


def test_bench_end_to_end_and_authors_rows_with_ratios(tmp_path: Path) -> None:
    replica = Path(__file__).resolve().parents[1] / "benchmarks" / "authors_model_replica.py"
    docs = tmp_path / "benchmarks.md"
    report = run_bench(["resnet18"], image_size=64, frames=2, runs=1, warmup=0, devices=["cpu"],
                       json_path=tmp_path / "b.json", markdown=docs, backends=["pytorch"], end_to_end=True,
                       authors=replica)
    rows = {(r["mode"], r["backend"]): r for r in report["results"]}
    assert list(rows) == [("authors", "pytorch"), ("stream", "pytorch"), ("clips", "pytorch"),
                          ("end-to-end", "pytorch")]
    authors = rows["authors", "pytorch"]
    for record in report["results"]:
        assert record["fps"] > 0 and math.isclose(record["x_authors"], record["fps"] / authors["fps"])
    streaming = rows["stream", "pytorch"]
    assert streaming["decode_ms"] > 0 and streaming["frame_ms"] > 0 and streaming["decode_share"] > 0
    assert rows["end-to-end", "pytorch"]["video_size"] == [640, 480]
    text = docs.read_text()
    assert "| cpu | default | resnet18 | pytorch | end-to-end |" in text and "| x authors |" in text
