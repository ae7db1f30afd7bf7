"""`flanet bench`: FLOP accounting of stream vs clips, report files (no timing asserts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from flanet.inference.bench import harness as bench
from flanet.inference.bench.harness import TUNED_MALLOC_ENV, _worker, machine_description, run_bench
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
                       json_path=tmp_path / "b.json", markdown=docs, allocators=["tuned"], rounds=1)
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
    from flanet.inference.bench import harness as bench

    calls: list[dict] = []
    monkeypatch.setattr(bench, "run_bench", lambda **kwargs: calls.append(kwargs))
    args = ["bench", "--encoders", "resnet18", "--json", str(tmp_path / "b.json")]
    assert main(args) == 0 and main([*args, "--docs", str(tmp_path / "doc.md")]) == 0
    assert calls[0]["markdown"] is None and calls[1]["markdown"] == tmp_path / "doc.md"
    assert calls[0]["rounds"] == 3 and main([*args, "--rounds", "1"]) == 0 and calls[2]["rounds"] == 1


@pytest.mark.parametrize("rounds", ["0", "-1", "two"])
def test_flanet_bench_refuses_fewer_than_one_round(rounds: str, tmp_path: Path, capsys) -> None:
    from flanet.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", "--rounds", rounds, "--json", str(tmp_path / "b.json")])
    assert stop.value.code == 2
    assert "flanet bench: error: argument --rounds" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(ValueError, match="at least 1"):
        run_bench(["resnet18"], json_path=tmp_path / "b.json", rounds=0)


@pytest.mark.parametrize(("option", "value"), [("--runs", "0"), ("--frames", "0"), ("--warmup", "-1"), ("--runs", "x")])
def test_flanet_bench_refuses_impossible_run_counts_by_name(option: str, value: str, tmp_path: Path, capsys) -> None:
    # --runs 0 used to start the workers and end in a worker traceback ("no median for empty data")
    from flanet.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", "--encoders", "resnet18", "--image-size", "32", "--rounds", "1", "--authors", "none",
              "--backends", "pytorch", "--no-end-to-end", option, value, "--json", str(tmp_path / "b.json")])
    assert stop.value.code == 2
    assert f"flanet bench: error: argument {option}" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "b.json").exists()


def test_bench_end_to_end_and_authors_rows_with_ratios(tmp_path: Path) -> None:
    replica = Path(__file__).resolve().parents[1] / "benchmarks" / "authors_model_replica.py"
    docs = tmp_path / "benchmarks.md"
    report = run_bench(["resnet18"], image_size=64, frames=2, runs=1, warmup=0, devices=["cpu"],
                       json_path=tmp_path / "b.json", markdown=docs, backends=["pytorch"], end_to_end=True,
                       authors=replica, rounds=1, video_size=(96, 72), video_frames=3)
    rows = {(r["mode"], r["backend"]): r for r in report["results"]}
    assert list(rows) == [("authors", "pytorch"), ("stream", "pytorch"), ("clips", "pytorch"),
                          ("end-to-end", "pytorch")]
    authors = rows["authors", "pytorch"]
    for record in report["results"]:
        assert record["fps"] > 0 and math.isclose(record["x_authors"], record["fps"] / authors["fps"])
    streaming = report["results"][1]
    assert streaming["decode_ms"] > 0 and streaming["frame_ms"] > 0 and streaming["decode_share"] > 0
    assert 0 < streaming["latency_ms_p50"] <= streaming["latency_ms_p95"]  # issue 28 item 3: per-frame latency
    e2e = rows["end-to-end", "pytorch"]
    assert e2e["video_size"] == [96, 72] and e2e["video_frames"] == 3
    assert e2e["streaming_fps"] > 0 and e2e["model_only_fps"] > 0 and e2e["x_model_only"] > 0  # issue 28 item 1
    text = docs.read_text()
    assert "| cpu | default | resnet18 | pytorch | end-to-end |" in text and "| x authors |" in text
    assert "| cpu | resnet18 | pytorch |" in text and "| latency p50 / p95 ms | peak RSS MB |" in text


# Scripted frames/s per (allocator, mode) and round: the machine drifts (the authors' model runs at 1, 2
# then 4 frames/s with the default allocator), so the median of paired ratios (6) differs from the ratio
# of medians (14 / 2 = 7), and stream vs clips paired (2) from 14 / 4 = 3.5.
SCRIPT = {("default", "authors"): [1.0, 2.0, 4.0], ("default", "stream"): [6.0, 14.0, 20.0],
          ("default", "clips"): [3.0, 7.0, 4.0], ("tuned", "authors"): [2.0, 2.0, 2.0],
          ("tuned", "stream"): [6.0, 14.0, 20.0], ("tuned", "clips"): [3.0, 7.0, 4.0]}
SHARES = [0.10, 0.14, 0.12]


def _scripted_worker(calls: list[tuple[str, str]]):
    def run(config: dict, env: dict) -> dict:
        allocator = "tuned" if env.get("MALLOC_MMAP_THRESHOLD_") == TUNED_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"] else "default"
        key = (allocator, config["mode"])
        round_index = calls.count(key)
        calls.append(key)
        fps = SCRIPT[key][round_index]
        record = {**{k: config[k] for k in ("device", "encoder", "mode", "image_size", "frames", "runs", "warmup",
                                            "backend")},
                  "fps": fps, "ms_per_frame": 1000 / fps, "run_seconds": [config["frames"] / fps],
                  "machine": machine_description()}
        if config["mode"] != "authors":
            record.update(gflops_per_frame=1.0, peak_rss_mb=100.0 + round_index, rss_after_model_mb=90.0,
                          cuda_peak_allocated_mb=None)
        if config["mode"] == "stream":
            share = SHARES[round_index]
            record.update(decode_ms=share * 1000 / fps, frame_ms=1000 / fps, decode_share=share)
        return record
    return run


def test_bench_rounds_are_round_robin_and_ratios_are_paired_within_a_round(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    for name in TUNED_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(bench, "_run_worker", _scripted_worker(calls))
    report = run_bench(["resnet18"], frames=2, runs=1, devices=["cpu"], json_path=tmp_path / "b.json",
                       allocators=["default", "tuned"], authors=tmp_path / "replica.py", rounds=3)
    one_round = [(allocator, mode) for allocator in ("default", "tuned") for mode in ("authors", "stream", "clips")]
    assert calls == one_round * 3  # every configuration once per round, the authors' model first

    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved == json.loads(json.dumps(report)) and saved["settings"]["rounds"] == 3
    rows = {(r["allocator"], r["mode"]): r for r in saved["results"]}
    stream, clips = rows["default", "stream"], rows["default", "clips"]
    assert stream["rounds_fps"] == [6.0, 14.0, 20.0] and stream["fps"] == 14.0
    assert stream["ms_per_frame"] == 1000 / 14 and stream["peak_rss_mb"] == 102.0
    assert len(stream["rounds_run_seconds"]) == 3 and "run_seconds" not in stream
    assert stream["rounds_x_authors"] == [6.0, 7.0, 5.0] and stream["x_authors"] == 6.0  # 14 / 2 = 7 unpaired
    assert clips["rounds_x_authors"] == [3.0, 3.5, 1.0] and clips["x_authors"] == 3.0  # 4 / 2 = 2 unpaired
    assert rows["default", "authors"]["rounds_x_authors"] == [1.0, 1.0, 1.0]
    assert rows["tuned", "stream"]["rounds_x_authors"] == [3.0, 7.0, 10.0]  # paired with its own allocator's
    assert stream["rounds_decode_share"] == SHARES and stream["decode_share"] == 0.12
    assert math.isclose(stream["decode_ms"], 10.0)  # median of 16.7, 10 and 6 ms
    assert saved["speedup"]["cpu resnet18 (default)"] == 2.0  # 14 / 4 = 3.5 unpaired
    assert saved["speedup_rounds"]["cpu resnet18 (default)"] == [2.0, 2.0, 5.0]

    text = (tmp_path / "b.md").read_text()
    assert "| cpu | default | resnet18 | pytorch | stream | 14.00 | 6.00 (5.00-7.00) | 10.0 ms = 12 % (10-14 %) |" in text
    assert "| cpu | default | authors | pytorch | authors | 2.00 | 1.00 | - |" in text
    assert "| cpu | default | resnet18 | pytorch | clips | 4.00 | 3.00 (1.00-3.50) | - |" in text
    assert "- cpu resnet18 (default): stream is 2.00x (2.00-5.00x) clips throughput" in text
    assert "3 interleaved rounds" in text and "ratio to the authors' frames/s measured in the same round" in text
    progress = capsys.readouterr().out.splitlines()
    assert progress[0] == "round 1/3: cpu default authors' model ... 1.00 frames/s"
    assert progress[7] == "round 2/3: cpu default resnet18 stream pytorch ... 14.00 frames/s"


def test_bench_with_one_round_reports_plain_figures(tmp_path: Path, monkeypatch) -> None:
    for name in TUNED_MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(bench, "_run_worker", _scripted_worker([]))
    report = run_bench(["resnet18"], frames=2, runs=1, devices=["cpu"], json_path=tmp_path / "b.json",
                       authors=tmp_path / "replica.py", rounds=1)
    stream = next(r for r in report["results"] if r["mode"] == "stream")
    assert stream["rounds_fps"] == [6.0] and stream["x_authors"] == 6.0 and stream["rounds_x_authors"] == [6.0]
    text = (tmp_path / "b.md").read_text()
    assert "| stream | 6.00 | 6.00 | 16.7 ms = 10 % |" in text and "- cpu resnet18 (default): stream is 2.00x clips" in text
    assert "one round: each configuration in a fresh process" in text and "interleaved" not in text


def test_bench_compile_adds_a_compiled_stream_row_beside_the_eager_one(tmp_path: Path, monkeypatch) -> None:
    configs: list[dict] = []

    def worker(config: dict, env: dict) -> dict:
        configs.append(config)
        fps = {("authors", False): 1.0, ("stream", False): 5.0, ("stream", True): 8.0}.get(
            (config["mode"], bool(config["compile"])), 2.0)
        record = {**config, "fps": fps, "ms_per_frame": 1000 / fps, "run_seconds": [1 / fps],
                  "machine": machine_description()}
        if config["mode"] != "authors":
            record.update(gflops_per_frame=1.0, peak_rss_mb=100.0, rss_after_model_mb=90.0, cuda_peak_allocated_mb=None)
        if config["mode"] == "stream":
            record.update(decode_ms=10.0, frame_ms=1000 / fps, decode_share=10 * fps / 1000)
        return record

    monkeypatch.setattr(bench, "_run_worker", worker)
    report = run_bench(["resnet18"], frames=2, runs=1, devices=["cpu"], json_path=tmp_path / "b.json",
                       backends=("pytorch", "onnxruntime"), end_to_end=True, authors=tmp_path / "replica.py",
                       compile=True, rounds=1)
    plan = [(c["mode"], c["backend"], c["compile"]) for c in configs]
    assert plan == [("authors", "pytorch", False), ("stream", "pytorch", False), ("stream", "onnxruntime", False),
                    ("stream", "pytorch", True), ("clips", "pytorch", False), ("end-to-end", "pytorch", False),
                    ("end-to-end", "onnxruntime", False)]
    compiled = next(r for r in report["results"] if r["mode"] == "stream" and r["compile"])
    assert compiled["x_authors"] == 8.0
    text = (tmp_path / "b.md").read_text()
    assert "| cpu | default | resnet18 | pytorch compiled | stream | 8.00 | 8.00 | 10.0 ms = 8 % |" in text
    assert "| cpu | default | resnet18 | pytorch | stream | 5.00 | 5.00 | 10.0 ms = 5 % |" in text
    assert "| stream (pytorch compiled) |" in text


def test_bench_frames_in_flight_adds_a_pipelined_row_per_exported_backend(tmp_path: Path, monkeypatch) -> None:
    configs: list[dict] = []

    def worker(config: dict, env: dict) -> dict:
        configs.append(config)
        fps = 1.0 if config["mode"] == "authors" else 7.0 if config["frames_in_flight"] == 2 else 5.0
        record = {**config, "fps": fps, "ms_per_frame": 1000 / fps, "run_seconds": [1 / fps],
                  "machine": machine_description()}
        if config["mode"] != "authors":
            record.update(gflops_per_frame=1.0, peak_rss_mb=100.0, rss_after_model_mb=90.0, cuda_peak_allocated_mb=None)
        if config["mode"] == "stream":
            record.update(decode_ms=20.0, frame_ms=1000 / fps, decode_share=0.07)
        return record

    monkeypatch.setattr(bench, "_run_worker", worker)
    report = run_bench(["resnet18"], frames=2, runs=1, devices=["cpu"], json_path=tmp_path / "b.json",
                       backends=("pytorch", "onnxruntime", "openvino"), authors=tmp_path / "replica.py",
                       rounds=1, frames_in_flight=2)
    plan = [(c["mode"], c["backend"], c["frames_in_flight"]) for c in configs]
    assert plan == [("authors", "pytorch", 1), ("stream", "pytorch", 1), ("stream", "onnxruntime", 1),
                    ("stream", "openvino", 1), ("stream", "onnxruntime", 2), ("stream", "openvino", 2),
                    ("clips", "pytorch", 1)]
    assert report["settings"]["frames_in_flight"] == 2
    text = (tmp_path / "b.md").read_text()
    assert "| cpu | default | resnet18 | openvino, 2 in flight | stream | 7.00 | 7.00 | 20.0 ms = 7 % |" in text
    assert "| cpu | default | resnet18 | onnxruntime | stream | 5.00 | 5.00 | 20.0 ms = 7 % |" in text
    with pytest.raises(ValueError, match="frames_in_flight must be at least 1"):
        run_bench(["resnet18"], json_path=tmp_path / "c.json", frames_in_flight=0)


def test_bench_unfolded_adds_a_pytorch_row_without_batchnorm_folding(tmp_path: Path, monkeypatch) -> None:
    """Issue 28 item 6: peak memory with and without folding, side by side."""
    configs: list[dict] = []

    def worker(config: dict, env: dict) -> dict:
        configs.append(config)
        return {**config, "fps": 2.0, "ms_per_frame": 500.0, "run_seconds": [1.0], "machine": machine_description(),
                "gflops_per_frame": 1.0, "peak_rss_mb": 100.0 + 10 * config["unfolded"], "rss_after_model_mb": 90.0,
                "cuda_peak_allocated_mb": None}

    monkeypatch.setattr(bench, "_run_worker", worker)
    run_bench(["resnet18"], frames=2, runs=1, devices=["cpu"], json_path=tmp_path / "b.json", backends=("pytorch",),
              rounds=1, unfolded=True)
    assert [(c["mode"], c["unfolded"]) for c in configs] == [("stream", False), ("stream", True), ("clips", False)]
    assert "| stream (pytorch, BatchNorms unfolded) | 2.00 | 500.0 | 1.0 | 110 (90) |" in (tmp_path / "b.md").read_text()
