"""Accelerated streaming: bf16 autocast and ``torch.compile`` of the per-frame step.

Tolerances, stated once: bf16 autocast keeps 8 significant bits, so its mask logits and heatmap
differ from float32 by at most ``BF16_REL * max(1, max |float32 output|)`` and its
probabilities by at most ``BF16_REL`` (as ``test_models_half``); a compiled step computes the
same float32 operations, fused and reordered, so it equals eager to ``COMPILED_ATOL`` (exactly
with a backend that runs the traced graph as is).

The CUDA tests (names ending in ``_on_cuda``) are skipped without a GPU; ``benchmarks/gpu.sh``
runs them before it measures.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import flanet.inference.bench.harness as bench
import flanet.inference.core.segmenter as streaming
from conftest import _noise_frames as _frames
from conftest import _write_video
from flanet.cli import main
from flanet.inference import FrameResult, VideoSegmenter
from flanet.inference.core.segmenter import compile_options
from flanet.inference.runs.archive import predict_archive
from flanet.models import create_model, save_checkpoint

SIZE = 64
BF16_REL = 5e-2
COMPILED_ATOL = 1e-4

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("flanet", encoder="resnet18").eval()


def _assert_bf16_close(half: list[FrameResult], full: list[FrameResult]) -> None:
    assert len(half) == len(full) > 0
    for h, f in zip(half, full, strict=True):
        assert h.mask_logits.dtype == torch.float32 and h.probability.dtype == np.float32
        for got, want in ((h.mask_logits, f.mask_logits), (h.heatmap, f.heatmap)):
            assert float((got - want).abs().max()) <= BF16_REL * max(1.0, float(want.abs().max()))
        assert np.abs(h.probability - f.probability).max() <= BF16_REL
    # bf16 really ran: float32 would give identical logits
    assert max(float((h.mask_logits - f.mask_logits).abs().max()) for h, f in zip(half, full)) > 0


def _assert_equal(got: list[FrameResult], want: list[FrameResult], atol: float) -> None:
    assert [r.index for r in got] == [r.index for r in want]
    for g, w in zip(got, want, strict=True):
        scale = max(1.0, float(w.mask_logits.abs().max()))
        torch.testing.assert_close(g.mask_logits, w.mask_logits, rtol=0, atol=atol * scale)
        torch.testing.assert_close(g.heatmap, w.heatmap, rtol=0, atol=atol * scale)


def _counting_backend(graphs: list[int]) -> Callable:
    """A torch.compile backend that runs the traced graph as is and records one entry per graph."""

    def backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> Callable:
        graphs.append(len(example_inputs))
        return graph_module.forward

    return backend


def test_bf16_autocast_streaming_is_close_to_float32(model: torch.nn.Module) -> None:
    frames = _frames(4)
    full = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    half = list(VideoSegmenter(model, SIZE, "cpu", dtype=torch.bfloat16).stream(frames))
    _assert_bf16_close(half, full)


def test_compiled_step_equals_eager_with_one_graph_each_and_no_recompile(model: torch.nn.Module) -> None:
    frames = _frames(4, seed=1)
    eager = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    graphs: list[int] = []
    segmenter = VideoSegmenter(model, SIZE, "cpu", compile={"backend": _counting_backend(graphs)})
    compiled = list(segmenter.stream(frames))
    # the traced graph runs the same ops, but its sums over positions can be reassociated: float32 rounding
    _assert_equal(compiled, eager, atol=1e-5)
    assert len(graphs) == 2  # encode and decode, each one whole graph (the repeated first frame adds none)
    with torch._dynamo.config.patch(error_on_recompile=True):  # a second video reuses both graphs
        again = list(segmenter.stream(_frames(3, 40, 72, seed=2)))
    assert len(again) == 3 and len(graphs) == 2


class _ThreadsThatChangeEveryFrame:
    """An AdaptiveThreads stand-in: torch's thread count changes at every frame, as on a busy machine."""

    def __init__(self) -> None:
        self.start, self.frames = torch.get_num_threads(), 0

    def update(self) -> int:
        self.frames += 1
        threads = 1 if self.frames % 2 else max(2, self.start)
        torch.set_num_threads(threads)
        return threads

    def restore(self) -> None:
        torch.set_num_threads(self.start)


def test_compiled_step_is_not_compiled_again_when_the_free_cpus_change(
    model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dynamo guards a compiled graph on torch's thread count: adaptive threads under compile made the
    # step compile again whenever another process came and went (the flaky 4-graph CI failure)
    monkeypatch.setattr(streaming, "AdaptiveThreads", _ThreadsThatChangeEveryFrame)
    frames = _frames(5, seed=7)
    eager = VideoSegmenter(model, SIZE, "cpu")
    assert eager.adaptive_threads  # eager streaming still follows the free CPUs
    want = list(eager.stream(frames))
    graphs: list[int] = []
    segmenter = VideoSegmenter(model, SIZE, "cpu", compile={"backend": _counting_backend(graphs)})
    assert not segmenter.adaptive_threads
    _assert_equal(list(segmenter.stream(frames)), want, atol=1e-5)
    assert len(graphs) == 2  # with the thread count changing at every frame, four or more
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert len(list(segmenter.stream(frames[:3]))) == 3
    with pytest.raises(ValueError, match="adaptive_threads with compile"):
        VideoSegmenter(model, SIZE, "cpu", compile={"backend": "eager"}, adaptive_threads=True)


def test_compile_options_pick_cuda_graphs_on_cuda_only() -> None:
    assert compile_options(True, torch.device("cuda")) == {"mode": "reduce-overhead"}
    assert compile_options(True, torch.device("cpu")) == {"options": {"freezing": True}}  # frozen weights on CPU
    assert compile_options("max-autotune-no-cudagraphs", torch.device("cpu")) == {"mode": "max-autotune-no-cudagraphs"}
    assert compile_options({"backend": "aot_eager"}, torch.device("cuda")) == {"backend": "aot_eager"}


def test_compile_is_refused_with_onnxruntime(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compile applies to backend pytorch only"):
        VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime", compile=True)
    with pytest.raises(ValueError, match="compile applies to backend pytorch only"):
        predict_archive(model, tmp_path, tmp_path / "out", backend="onnxruntime", compile="default")
    assert not (tmp_path / "out").exists()


def test_cli_predict_compile_reaches_the_segmenter_and_changes_no_output(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, {"image_size": SIZE})
    video = _write_video(tmp_path / "scan.mp4", _frames(3, seed=6))
    asked, graphs = [], []

    def options(compile: object, device: torch.device) -> dict:
        asked.append((compile, device.type))
        return {"backend": _counting_backend(graphs)}

    monkeypatch.setattr(streaming, "compile_options", options)
    args = ["predict", "--checkpoint", str(checkpoint), str(video), "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "eager")]) == 0 and asked == []
    assert main([*args, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    assert asked == [(True, "cpu")] and len(graphs) == 2
    for mask in sorted((tmp_path / "eager" / "masks").iterdir()):
        assert (tmp_path / "compiled" / "masks" / mask.name).read_bytes() == mask.read_bytes()
    capsys.readouterr()
    onnx = [*args, "--out", str(tmp_path / "onnx"), "--backend", "onnxruntime", "--compile-mode", "default"]
    assert main(onnx) == 2
    assert "flanet predict: error: --compile applies to --backend pytorch only (--compile)" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()


def test_bench_compile_option_reaches_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"device": "cpu", "encoder": "resnet18", "mode": "stream", "image_size": 32, "frames": 2, "runs": 1,
              "warmup": 0, "compile": {"backend": "eager"}}
    record = bench._worker(config)
    assert record["compile"] == {"backend": "eager"} and record["fps"] > 0
    seen: list = []
    monkeypatch.setattr(bench, "run_bench", lambda **kwargs: seen.append(kwargs["compile"]))
    assert main(["bench", "--compile"]) == 0
    assert main(["bench", "--compile-mode", "max-autotune"]) == 0
    assert main(["bench"]) == 0
    assert seen == [True, "max-autotune", False]


@pytest.mark.slow
def test_inductor_compiled_step_equals_eager_on_cpu(model: torch.nn.Module) -> None:
    frames = _frames(4, seed=3)
    eager = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    segmenter = VideoSegmenter(copy.deepcopy(model), SIZE, "cpu", compile=True)
    _assert_equal(list(segmenter.stream(frames)), eager, atol=COMPILED_ATOL)
    with torch._dynamo.config.patch(error_on_recompile=True):
        _assert_equal(list(segmenter.stream(frames)), eager, atol=COMPILED_ATOL)


@pytest.fixture
def exact_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 convolutions and matmuls without TF32, so compiled and eager compare to float tolerance."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@needs_cuda
def test_bf16_streaming_is_close_to_float32_on_cuda(model: torch.nn.Module, exact_cuda: None) -> None:
    frames = _frames(4)
    full = list(VideoSegmenter(copy.deepcopy(model), SIZE, "cuda").stream(frames))
    half = list(VideoSegmenter(copy.deepcopy(model), SIZE, "cuda", dtype=torch.bfloat16).stream(frames))
    _assert_bf16_close(half, full)


@needs_cuda
def test_cuda_graphs_step_equals_eager_and_keeps_the_window_on_cuda(model: torch.nn.Module, exact_cuda: None) -> None:
    frames = _frames(6, seed=4)  # more frames than the window: earlier features must survive graph replays
    eager = list(VideoSegmenter(copy.deepcopy(model), SIZE, "cuda").stream(frames))
    segmenter = VideoSegmenter(copy.deepcopy(model), SIZE, "cuda", compile=True)
    _assert_equal(list(segmenter.stream(frames)), eager, atol=COMPILED_ATOL)
    with torch._dynamo.config.patch(error_on_recompile=True):
        _assert_equal(list(segmenter.stream(frames)), eager, atol=COMPILED_ATOL)


@needs_cuda
def test_bf16_cuda_graphs_step_is_close_to_float32_on_cuda(model: torch.nn.Module, exact_cuda: None) -> None:
    frames = _frames(4, seed=5)
    full = list(VideoSegmenter(copy.deepcopy(model), SIZE, "cuda").stream(frames))
    half = VideoSegmenter(copy.deepcopy(model), SIZE, "cuda", dtype=torch.bfloat16, compile=True)
    _assert_bf16_close(list(half.stream(frames)), full)
