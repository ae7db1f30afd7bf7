"""Overlapped `flanet predict` (issue 28 item 1): the threaded stages write what the sequential loop writes.

The helpers of :mod:`flanet.inference.core.overlap` keep order, raise an error at its item and stop their
threads when closed; ``predict_to_folder(overlap=True)`` (the default) and ``overlap=False`` write the same
masks, CSV, viewer and summary, byte for byte, and give the overlay video's encoder the same frames, for a
video file, a folder of frames, a DICOM cine and an archive, and stop at the same frame with the same files
when a frame fails. (The overlay's H.264 bytes themselves are not compared: PyAV's x264 encoder does not
give the same bytes for the same frames from one run to the next, with or without overlap.)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import _disc_frames, _write_video
from dicom_writer import colour_frames, write_cine
from flanet.fileio import INCOMPLETE
from flanet.inference import VideoSegmenter, predict_to_folder
from flanet.inference.core.overlap import ordered_map, read_ahead
from flanet.inference.runs.archive import predict_archive
from flanet.inference.runs.overlay_video import OverlayVideoWriter
from flanet.inference.runtimes.pytorch_runner import PyTorchRunner

TIMING = ("fps_achieved", "seconds", "seconds_this_run", "wall_s")  # the only values that differ between two runs


class Boom(Exception):
    pass


def _items(count: int, fail_at: int | None = None, log: list[int] | None = None) -> Iterator[int]:
    for i in range(count):
        if i == fail_at:
            raise Boom(f"item {i}")
        if log is not None:
            log.append(i)
        yield i


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_read_ahead_keeps_order_raises_at_the_item_and_stays_bounded(depth: int) -> None:
    assert list(read_ahead(_items(20), depth)) == list(range(20))
    got = []
    with pytest.raises(Boom, match="item 5"):
        for item in read_ahead(_items(20, fail_at=5), depth):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    produced: list[int] = []
    stream = read_ahead(_items(100, log=produced), depth)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(produced) <= depth + 2  # the queue, the item in the producer's hand and the one consumed
    stream.close()


def test_closing_read_ahead_stops_its_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10**6)
        finally:
            closed.set()

    before = threading.active_count()
    stream = read_ahead(source(), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.is_set() and threading.active_count() == before


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_ordered_map_keeps_order_and_raises_at_the_item(workers: int) -> None:
    def slow_square(i: int) -> int:
        time.sleep(0.002 * (7 - i % 7))  # later items often finish first
        if i == 11:
            raise Boom("item 11")
        return i * i

    got = []
    with pytest.raises(Boom, match="item 11"):
        for value in ordered_map(slow_square, range(30), workers):
            got.append(value)
    assert got == [i * i for i in range(11)]
    assert list(ordered_map(lambda i: -i, _items(9), workers)) == [-i for i in range(9)]
    got = []
    with pytest.raises(Boom, match="item 4"):  # an error of the input too, after the items before it
        for value in ordered_map(lambda i: i, _items(9, fail_at=4), workers):
            got.append(value)
    assert got == [0, 1, 2, 3]


def _tree(folder: Path, overlays: dict[Path, list[str]]) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (summary.json without its timings and with ``<out>`` for
    ``folder``; an overlay video as the digests of the frames its encoder was given)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "summary.json":
            summary = json.loads(data)
            for entry in [summary, *summary.get("videos", [])]:
                for key in TIMING:
                    entry.pop(key, None)
            data = json.dumps(summary, sort_keys=True).replace(str(folder), "<out>").encode()
        elif path.suffix == ".mp4":
            written = [key for key in overlays if path.name == key.name and path.parent.name in (key.parent.name,
                       key.parent.name.lstrip(".").removesuffix(".partial"))]
            data = "\n".join(overlays[written[-1]]).encode()
        files[str(path.relative_to(folder))] = data
    return files


@pytest.fixture()
def overlays(monkeypatch: pytest.MonkeyPatch) -> dict[Path, list[str]]:
    """Digest of every frame given to an overlay writer, by the writer's path."""
    given: dict[Path, list[str]] = {}
    write = OverlayVideoWriter.write

    def recording(self: OverlayVideoWriter, bgr: np.ndarray) -> None:
        given.setdefault(self.path, []).append(hashlib.sha256(np.ascontiguousarray(bgr).tobytes()).hexdigest())
        write(self, bgr)

    monkeypatch.setattr(OverlayVideoWriter, "write", recording)
    return given


def _threshold(checkpoint: Path, frames: list[np.ndarray]) -> float:
    """A threshold that splits the random model's probabilities (masks neither empty nor full)."""
    segmenter = VideoSegmenter.from_checkpoint(checkpoint, device="cpu")
    return float(np.median(next(iter(segmenter.stream(frames[:1]))).probability))


def _both(run: Callable[[Path, bool], Path], tmp_path: Path,
          overlays: dict[Path, list[str]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    return _tree(run(tmp_path / "overlapped", True), overlays), _tree(run(tmp_path / "sequential", False), overlays)


def test_overlapped_predict_writes_the_sequential_files(small_checkpoint: Path, tmp_path: Path,
                                                        overlays: dict[Path, list[str]]) -> None:
    frames = _disc_frames(6, 72, 100)
    threshold = _threshold(small_checkpoint, frames)
    video = _write_video(tmp_path / "scan.mp4", frames)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames[:5]):
        cv2.imwrite(str(folder / f"f_{i + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)[:, :, 0])  # grayscale
    cine = write_cine(tmp_path / "cine.dcm", colour_frames(5), region=(8, 4, 55, 39))
    for given in (video, folder, cine):
        overlapped, sequential = _both(lambda out, overlap, given=given: predict_to_folder(
            small_checkpoint, given, out, device="cpu", progress=False, threshold=threshold, overlap=overlap),
            tmp_path / f"out-{given.name}", overlays)
        assert overlapped == sequential, given.name
        masks = [name for name in overlapped if name.startswith("masks/")]
        assert len(masks) in (5, 6) and len({overlapped[m] for m in masks}) > 1  # not all alike: order matters
    archive = tmp_path / "archive"
    archive.mkdir()
    for seed in range(2):
        _write_video(archive / f"v{seed}.mp4", _disc_frames(4, 48, 64, seed=seed))
    overlapped, sequential = _both(lambda out, overlap: predict_archive(
        small_checkpoint, archive, out, device="cpu", progress=False, threshold=threshold, overlap=overlap),
        tmp_path, overlays)
    index = overlapped.pop("index.csv"), sequential.pop("index.csv")
    assert overlapped == sequential and len(overlapped) > 10
    assert [line.split(",")[:3] for line in index[0].decode().splitlines()] == \
        [line.split(",")[:3] for line in index[1].decode().splitlines()]


@pytest.mark.parametrize("failure", ["frame size", "non-finite output"])
def test_an_error_stops_both_paths_at_its_frame_with_the_same_files(
    small_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str,
    overlays: dict[Path, list[str]],
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _disc_frames(8, 48, 64)
    frames[5] = frames[5][:40] if failure == "frame size" else frames[5]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    calls = [0]
    if failure == "non-finite output":
        predict, calls = PyTorchRunner.predict, [0]  # calls of this run

        def nan_at_frame_5(self: PyTorchRunner, window: object) -> tuple[torch.Tensor, torch.Tensor | None]:
            logits, heatmap = predict(self, window)
            calls[0] += 1
            return (logits * torch.nan if calls[0] == 6 else logits), heatmap

        monkeypatch.setattr(PyTorchRunner, "predict", nan_at_frame_5)
    trees, errors = [], []
    for overlap in (True, False):
        out = tmp_path / f"out-{overlap}"
        calls[0] = 0
        with pytest.raises((ValueError, RuntimeError)) as raised:
            predict_to_folder(small_checkpoint, folder, out, device="cpu", progress=False, overlap=overlap)
        errors.append(str(raised.value))
        trees.append(_tree(out, overlays))
    assert errors[0] == errors[1] and "frame 5" in errors[0]
    assert trees[0] == trees[1] and INCOMPLETE in trees[0]  # never looks finished
    assert sorted(name for name in trees[0] if name.startswith("masks/")) == [f"masks/{i}.png" for i in range(5)]
    assert trees[0]["frames.csv"].decode().count("\n") == 6  # header + the 5 frames before the failure
