"""Frames in flight (flanet.inference.core.in_flight): same outputs in order, bounded work, errors, early stop."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from flanet.inference import VideoSegmenter
from flanet.inference.core import in_flight as in_flight_module
from flanet.inference.core.in_flight import pipelined_predictions
from flanet.inference.runtimes.exported import export_for_onnxruntime
from flanet.models import create_model

SIZE = 64


class Recorder:
    """encode/decode stand-ins: windows are tuples of frame values; records concurrency and reads."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.read = 0  # frames taken from the input

    def frames(self, count: int):
        for i in range(count):
            self.read += 1
            yield i

    def encode(self, frame: int) -> int:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.delay * (1 + frame % 3))  # uneven: later frames can finish first
        with self.lock:
            self.active -= 1
        if frame == self.fail_at:
            raise RuntimeError(f"encoder failed at frame {frame}")
        return 10 * frame

    def decode(self, window: list[int]) -> tuple[int, ...]:
        time.sleep(self.delay)
        return tuple(window)


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_outputs_are_the_causal_windows_in_frame_order(in_flight: int) -> None:
    rec = Recorder(delay=0.002)
    got = list(pipelined_predictions(rec.frames(7), rec.encode, rec.decode, num_frames=3, in_flight=in_flight))
    assert [frame for frame, _ in got] == list(range(7))
    # frame t reads [t, t-1, t-2], the first frame standing in before the start (causal edge)
    assert [out for _, out in got] == [(0, 0, 0), (10, 0, 0), (20, 10, 0), (30, 20, 10), (40, 30, 20),
                                       (50, 40, 30), (60, 50, 40)]
    assert rec.most_active <= in_flight


def test_frames_run_at_the_same_time_and_the_input_is_read_lazily() -> None:
    rec = Recorder(delay=0.02)
    outputs = pipelined_predictions(rec.frames(50), rec.encode, rec.decode, num_frames=3, in_flight=2)
    next(outputs)
    assert rec.read == 2  # only as many frames as are in flight are taken
    for _ in range(3):
        next(outputs)
    assert rec.read == 5 and rec.most_active == 2
    outputs.close()


def test_an_encoder_error_reaches_the_consumer_at_its_frame() -> None:
    rec = Recorder(delay=0.001, fail_at=4)
    outputs = pipelined_predictions(rec.frames(10), rec.encode, rec.decode, num_frames=3, in_flight=2)
    assert [frame for frame, _ in (next(outputs) for _ in range(4))] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="encoder failed at frame 4"):
        next(outputs)
    assert not [t for t in threading.enumerate() if t.name.startswith("flanet-frame")]  # workers gone


def test_closing_early_stops_the_workers() -> None:
    rec = Recorder(delay=0.01)
    outputs = pipelined_predictions(rec.frames(1000), rec.encode, rec.decode, num_frames=3, in_flight=3)
    next(outputs)
    outputs.close()
    assert rec.read <= 4
    assert not [t for t in threading.enumerate() if t.name.startswith("flanet-frame")]


def _finishes(run, timeout: float = 20.0) -> list:
    """``run()``'s result, or a failure when it has not returned after ``timeout`` seconds (a hang)."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(run()), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"hung: no result after {timeout} s"
    return out[0]


class LateStartExecutor(ThreadPoolExecutor):
    """A pool whose workers are scheduled late (a busy CPU): each begins its frame 20 ms after being handed it."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(lambda: (time.sleep(0.02), fn(*args, **kwargs))[1])


@pytest.mark.parametrize("in_flight", [3, 4, 8])
def test_workers_scheduled_late_do_not_hang(in_flight: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 item 7: frame i-2's state was dropped from the table before its worker looked itself up."""
    monkeypatch.setattr(in_flight_module, "ThreadPoolExecutor", LateStartExecutor)
    got = _finishes(lambda: list(pipelined_predictions(iter(range(12)), lambda f: f, tuple, 3, in_flight)))
    assert [out for _, out in got][:4] == [(0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 2, 1)]
    assert [frame for frame, _ in got] == list(range(12))


@pytest.mark.parametrize("in_flight", range(1, 9))
def test_many_runs_at_every_frames_in_flight_finish(in_flight: int) -> None:
    """Issue 22 item 7: 40 runs of 16 frames at each N = 1..8, with a timeout, all finish with the right windows."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # as many thread interleavings as possible
    try:
        for _ in range(40):
            got = _finishes(lambda: list(pipelined_predictions(iter(range(16)), lambda f: f, tuple, 3, in_flight)))
            assert [out for _, out in got] == [tuple(max(0, t - k) for k in range(3)) for t in range(16)]
    finally:
        sys.setswitchinterval(switch)


def test_an_early_stop_ends_a_started_frame_waiting_for_a_cancelled_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame cancelled before it ran publishes the cancellation: started later frames stop, the pool shuts down."""
    monkeypatch.setattr(in_flight_module, "ThreadPoolExecutor", LateStartExecutor)

    def run() -> None:
        outputs = pipelined_predictions(iter(range(100)), lambda f: f, tuple, 3, 6)
        next(outputs)
        outputs.close()

    _finishes(run)
    assert not [t for t in threading.enumerate() if t.name.startswith("flanet-frame")]


def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="frames in flight must be >= 1"):
        list(pipelined_predictions(iter([1]), int, tuple, num_frames=3, in_flight=0))


@pytest.fixture(scope="module")
def model_and_manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("flanet", encoder="resnet18").eval()
    return model, export_for_onnxruntime(model, SIZE, tmp_path_factory.mktemp("cache") / "onnx")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_segmenter_with_two_frames_in_flight_gives_the_same_results(
    model_and_manifest: tuple[torch.nn.Module, Path], backend: str
) -> None:
    model, manifest = model_and_manifest
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(6)]
    one = list(VideoSegmenter(model, SIZE, "cpu", backend=backend, onnx=manifest).stream(frames))
    two = list(VideoSegmenter(model, SIZE, "cpu", backend=backend, onnx=manifest, frames_in_flight=2).stream(frames))
    assert [r.index for r in two] == list(range(6))
    assert [r.context_frames for r in two] == [1, 2, 3, 3, 3, 3]
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(b.mask_logits.numpy(), a.mask_logits.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.heatmap.numpy(), a.heatmap.numpy(), rtol=0, atol=1e-5)
        assert b.probability.shape == (48, 80)


def test_frames_in_flight_needs_an_exported_backend(model_and_manifest: tuple[torch.nn.Module, Path]) -> None:
    model, _ = model_and_manifest
    with pytest.raises(ValueError, match="must be 1 with backend pytorch"):
        VideoSegmenter(model, SIZE, "cpu", frames_in_flight=2)
    with pytest.raises(ValueError, match="frames_in_flight 0"):
        VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime", frames_in_flight=0)


def test_a_bad_frame_midway_ends_the_stream_with_its_error(
    model_and_manifest: tuple[torch.nn.Module, Path],
) -> None:
    model, manifest = model_and_manifest
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)]
    frames.append(rng.integers(0, 256, (40, 80, 3), dtype=np.uint8))  # another size
    stream = VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime", onnx=manifest, frames_in_flight=2).stream(frames)
    seen = []
    with pytest.raises(ValueError, match="frame 3 is 80x40"):
        for result in stream:
            seen.append(result.index)
    assert seen == [0, 1]  # frame 2, still in flight when frame 3 was read, is dropped with the stream


def test_cli_predict_with_frames_in_flight_writes_the_same_masks(
    model_and_manifest: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    from flanet.cli import main
    from flanet.models import save_checkpoint

    model, manifest = model_and_manifest
    monkeypatch.setenv("FLANET_CACHE_DIR", str(manifest.parents[2]))  # the export made by the fixture
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, {"image_size": SIZE})
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(2)
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    outs = {}
    for in_flight in ("1", "2"):
        outs[in_flight] = tmp_path / f"out{in_flight}"
        assert main(["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(outs[in_flight]),
                     "--backend", "onnxruntime", "--frames-in-flight", in_flight, "--no-progress",
                     "--threshold", "0.3"]) == 0
    names = sorted(p.name for p in (outs["1"] / "masks").iterdir())
    assert len(names) == 5 and names == sorted(p.name for p in (outs["2"] / "masks").iterdir())
    for name in names:
        a = cv2.imread(str(outs["1"] / "masks" / name), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(outs["2"] / "masks" / name), cv2.IMREAD_GRAYSCALE)
        assert (a == b).mean() >= 0.999


@pytest.mark.parametrize("extra", [["--backend", "pytorch"], ["--backend", "onnxruntime", "--source", "0"]])
def test_cli_refuses_frames_in_flight_where_it_cannot_apply(extra: list[str], tmp_path: Path, capsys) -> None:
    from flanet.cli import main

    args = ["predict", "--checkpoint", str(tmp_path / "m.pt"), "--frames-in-flight", "2", *extra]
    if "--source" not in extra:
        args.insert(1, str(tmp_path))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "flanet predict: error: --frames-in-flight above 1 needs --backend onnxruntime or openvino" in err
    assert "(--frames-in-flight)" in err and "Traceback" not in err


def test_decode_share_with_frames_in_flight_uses_the_frame_interval(
    model_and_manifest: tuple[torch.nn.Module, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames in flight finish in bursts (two at once, then none): the share must not read one burst."""
    from flanet.inference.bench.end_to_end import decode_share

    model, manifest = model_and_manifest
    segmenter = VideoSegmenter(model, SIZE, "cpu", backend="onnxruntime", onnx=manifest, frames_in_flight=2)

    def bursty(frames):
        for i, _ in enumerate(frames):
            segmenter.runner.predict([])  # what a worker does, timed where it runs
            time.sleep(0.08 if i % 2 else 0.0)  # with the decode, every other frame 100 ms: 50 ms on average
            yield i

    monkeypatch.setattr(segmenter, "stream", bursty)
    monkeypatch.setattr(type(segmenter.runner), "predict", lambda self, window: time.sleep(0.01))
    rng = np.random.default_rng(0)
    share = decode_share(segmenter, [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)], repeats=6)
    assert 45 <= share["frame_ms"] <= 70  # the median frame would be 10 or 90 ms
    assert 9 <= share["decode_ms"] <= 20  # the in-stream decodes
    assert share["decode_share"] == pytest.approx(share["decode_ms"] / (2 * share["frame_ms"]))
    assert "predict" not in vars(segmenter.runner)  # the runner's own method again


def test_decode_share_times_real_in_flight_decodes(model_and_manifest: tuple[torch.nn.Module, Path]) -> None:
    from flanet.inference.bench.end_to_end import decode_share

    model, manifest = model_and_manifest
    segmenter = VideoSegmenter(model, SIZE, "cpu", backend="openvino", onnx=manifest, frames_in_flight=2)
    rng = np.random.default_rng(0)
    share = decode_share(segmenter, [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)])
    assert share["decode_ms"] > 0 and share["frame_ms"] > 0 and 0 < share["decode_share"] < 1
    assert "predict" not in vars(segmenter.runner)
    assert len(list(segmenter.stream(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(3)))) == 3
