"""Streaming segmentation: equality with clip-by-clip model(clip), one encode per frame, bad frames."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from conftest import _noise_frames as _frames
from flanet.data import to_model_input
from flanet.inference import FrameResult, VideoSegmenter
from flanet.models import create_model

SIZE = 64


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("flanet", encoder="resnet18").eval()


def _causal_clip(inputs: list[torch.Tensor], t: int, num_frames: int) -> torch.Tensor:
    """Clip [t, t-1, t-2] with the first frame repeated before the video starts: (1, T, 3, S, S)."""
    return torch.stack([inputs[max(t - k, 0)] for k in range(num_frames)])[None]


def test_streaming_equals_clip_by_clip_model_call(model: torch.nn.Module) -> None:
    frames = _frames(6)
    results = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    inputs = [to_model_input(f, SIZE) for f in frames]
    assert [r.index for r in results] == list(range(6))
    assert [r.context_frames for r in results] == [1, 2, 3, 3, 3, 3]
    with torch.inference_mode():
        for t, result in enumerate(results):
            expected = model(_causal_clip(inputs, t, 3))
            torch.testing.assert_close(result.mask_logits, expected.mask_logits[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(result.heatmap, expected.heatmap[0], rtol=0, atol=1e-5)


def test_clip_by_clip_mode_gives_the_same_results(model: torch.nn.Module) -> None:
    frames = _frames(4, seed=1)
    streamed = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    clipped = list(VideoSegmenter(model, SIZE, "cpu", reuse_features=False).stream(frames))
    for a, b in zip(streamed, clipped, strict=True):
        torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.probability, b.probability, rtol=0, atol=1e-5)


def test_each_frame_is_encoded_once_and_frames_are_pulled_lazily(model: torch.nn.Module) -> None:
    encoded_batches: list[int] = []
    original_encode = model.encode
    pulled = 0

    def counting_encode(images: torch.Tensor) -> list[torch.Tensor]:
        encoded_batches.append(images.shape[0])
        return original_encode(images)

    def source() -> object:
        nonlocal pulled
        for frame in _frames(5, seed=2):
            pulled += 1
            yield frame

    model.encode = counting_encode
    try:
        for result in VideoSegmenter(model, SIZE, "cpu").stream(source()):
            assert pulled == result.index + 1  # nothing read ahead, nothing kept beyond the window
    finally:
        del model.encode
    assert encoded_batches == [1] * 5


def test_consumed_frames_are_not_kept(model: torch.nn.Module) -> None:
    refs: list[weakref.ref] = []

    def source() -> object:
        for seed in range(6):
            frame = _frames(1, seed=seed)[0]  # made one at a time, like a decoder
            refs.append(weakref.ref(frame))
            yield frame
            del frame

    for result in VideoSegmenter(model, SIZE, "cpu").stream(source()):
        gc.collect()
        assert [r() is None for r in refs[:-1]] == [True] * result.index  # only the current frame is alive


def test_result_is_resized_to_the_input_frame(model: torch.nn.Module) -> None:
    result = next(VideoSegmenter(model, SIZE, "cpu", threshold=0.3).stream(_frames(1, 50, 90)))
    assert isinstance(result, FrameResult)
    assert result.probability.shape == (50, 90) and result.probability.dtype == np.float32
    assert result.heatmap_full is not None and result.heatmap_full.shape == (50, 90)
    assert result.mask_logits.shape == (1, SIZE, SIZE)
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0
    np.testing.assert_array_equal(result.mask, result.probability >= 0.3)


def test_grayscale_frames_equal_their_rgb_replication(model: torch.nn.Module) -> None:
    gray = [f[:, :, 0].copy() for f in _frames(3, seed=3)]
    segmenter = VideoSegmenter(model, SIZE, "cpu")
    from_gray = list(segmenter.stream(gray))
    from_rgb = list(segmenter.stream(np.repeat(g[:, :, None], 3, axis=2) for g in gray))
    for a, b in zip(from_gray, from_rgb, strict=True):
        torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=0)


def test_changing_frame_size_is_a_clear_error(model: torch.nn.Module) -> None:
    frames = _frames(2) + _frames(1, 40, 80)
    stream = VideoSegmenter(model, SIZE, "cpu").stream(frames)
    assert len([next(stream), next(stream)]) == 2
    with pytest.raises(ValueError, match=r"frame 2 is 80x40 .* started at 80x48"):
        next(stream)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 2), np.uint8), "unsupported shape"),
    ],
)
def test_malformed_frames_are_rejected(model: torch.nn.Module, frame: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=f"frame 0: .*{message}"):
        next(VideoSegmenter(model, SIZE, "cpu").stream([frame]))


def test_image_size_must_fit_the_encoder(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        VideoSegmenter(model, 50, "cpu")


def test_image_baseline_runs_through_forward() -> None:
    torch.manual_seed(0)
    baseline = create_model("unet", encoder="resnet18").eval()
    assert baseline.num_frames == 1
    frames = _frames(3, seed=4)
    results = list(VideoSegmenter(baseline, SIZE, "cpu").stream(frames))
    with torch.inference_mode():
        for frame, result in zip(frames, results, strict=True):
            expected = baseline(to_model_input(frame, SIZE)[None, None])
            torch.testing.assert_close(result.mask_logits, expected.mask_logits[0], rtol=0, atol=1e-5)
            assert result.heatmap is None and result.heatmap_full is None and result.context_frames == 1


def test_stream_samples_free_cpus_every_frame_and_restores_torch_threads(model: torch.nn.Module, monkeypatch) -> None:
    import flanet.inference.core.segmenter as streaming

    events: list[str] = []

    class RecordingThreads:
        def update(self) -> int:
            events.append("update")
            torch.set_num_threads(1)  # as AdaptiveThreads does when another process takes a CPU
            return 1

        def restore(self) -> None:
            events.append("restore")
            torch.set_num_threads(before)

    before = torch.get_num_threads()
    monkeypatch.setattr(streaming, "AdaptiveThreads", RecordingThreads)
    segmenter = VideoSegmenter(model, SIZE, "cpu")
    assert segmenter.adaptive_threads  # on by default on the CPU
    stream = segmenter.stream(_frames(5))
    next(stream)
    next(stream)
    stream.close()  # a consumer that stops early still gets torch's threads back
    assert events == ["update", "update", "restore"] and torch.get_num_threads() == before
    events.clear()
    assert len(list(VideoSegmenter(model, SIZE, "cpu", adaptive_threads=False).stream(_frames(3)))) == 3
    assert events == []
