"""Live capture (`flanet predict --source`): newest frame, drops, latency, clean stops, source failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import _disc_frames, _write_video
from flanet.cli import main
from flanet.fileio import LOCK_NAME
from flanet.inference.runs.capture import open_live_source, redact_source, stop_on_signals
from flanet.inference.runs.live import LIVE_COLUMNS, SourceLostError, predict_live
from flanet.models import create_model

REPO = Path(__file__).resolve().parents[1]


class FakeCamera:
    """A capture device delivering frames at ``fps`` (as a camera: late reads do not catch up).

    Frame k is black with red = k % 256 and green = k // 256 (BGR, as OpenCV gives it). After
    ``frames`` frames it fails (a camera unplugged). With ``gate``, each read first waits for the
    test to release one frame.
    """

    def __init__(self, fps: float = 200.0, frames: int | None = None, gate: threading.Semaphore | None = None) -> None:
        self.fps, self.frames, self.gate = fps, frames, gate
        self.produced = 0
        self.released = False
        self._start: float | None = None

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames is not None and self.produced >= self.frames:
            return False, None
        if self.gate is not None and not self.gate.acquire(timeout=10):
            return False, None
        self._start = self._start or time.perf_counter()
        delay = self._start + self.produced / self.fps - time.perf_counter()
        if self.gate is None and delay > 0:
            time.sleep(delay)
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 2], frame[..., 1] = self.produced % 256, self.produced // 256
        self.produced += 1
        return True, frame

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self.released = True


def _index_of(rgb: np.ndarray) -> int:
    return int(rgb[0, 0, 0]) + 256 * int(rgb[0, 0, 1])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def checkpoint(small_checkpoint: Path) -> Path:
    """This file's checkpoint: conftest's smallest one."""
    return small_checkpoint


@pytest.fixture()
def slow_model() -> torch.nn.Module:
    """A tiny FLA-Net whose encoder takes at least 20 ms a frame: slower than a 200 fps source."""
    model = create_model("flanet", encoder="resnet18")
    encode = model.encode

    def slow_encode(images: torch.Tensor) -> list[torch.Tensor]:
        time.sleep(0.02)
        return encode(images)

    model.encode = slow_encode
    return model


def test_the_newest_frame_is_taken_and_the_stale_ones_are_dropped() -> None:
    gate = threading.Semaphore(1)  # the first frame is read when the source opens
    camera = FakeCamera(gate=gate)
    live = open_live_source("0", open_capture=lambda target: camera)
    frames = live.frames(threading.Event())

    def deliver(count: int) -> None:
        expected = live.captured + count
        for _ in range(count):
            gate.release()
        deadline = time.perf_counter() + 10
        while live.captured < expected and time.perf_counter() < deadline:
            time.sleep(0.005)
        assert live.captured == expected

    deliver(4)  # frames 0..4 wait; only 4 reaches the model
    first = next(frames)
    assert (first.index, first.dropped_before, _index_of(first.image)) == (4, 4, 4)
    deliver(2)
    second = next(frames)
    assert (second.index, second.dropped_before, _index_of(second.image)) == (6, 1, 6)
    assert second.captured_clock > first.captured_clock and second.captured_at >= first.captured_at
    deliver(1)  # frame 7 is never taken: dropped when the run closes
    live.close(timeout=0)  # the reader is blocked in a read (a stalled camera) ...
    assert (live.captured, live.taken, live.dropped) == (8, 2, 6)
    gate.release()  # ... and releases the capture when the read returns, delivering nothing more
    deadline = time.perf_counter() + 10
    while not camera.released and time.perf_counter() < deadline:
        time.sleep(0.005)
    assert camera.released and live.captured == 8


def test_duration_and_stop_event_end_the_iteration() -> None:
    start = time.perf_counter()  # the duration counts from the moment the source opened
    live = open_live_source("0", open_capture=lambda target: FakeCamera(fps=100.0))
    taken = [frame.index for frame in live.frames(threading.Event(), duration=0.3)]
    live.close()
    assert live.stop_reason == "duration" and 0.3 <= time.perf_counter() - start < 5
    assert taken == sorted(taken) and live.captured == live.taken + live.dropped
    live = open_live_source("0", open_capture=lambda target: FakeCamera(fps=100.0))
    stop = threading.Event()
    stop.set()
    assert list(live.frames(stop)) == [] and live.stop_reason == "interrupted"
    live.close()


def test_live_run_drops_frames_and_records_latency(slow_model: torch.nn.Module, tmp_path: Path) -> None:
    camera = FakeCamera(fps=200.0)
    out = predict_live(slow_model, "0", tmp_path / "out", image_size=64, device="cpu", progress=False,
                       max_frames=4, open_capture=lambda target: camera)
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "frames.csv")
    assert summary["stop_reason"] == "max_frames" and summary["frames_segmented"] == len(rows) == 4
    assert summary["frames_captured"] == summary["frames_segmented"] + summary["frames_dropped"]
    assert summary["frames_dropped"] > 0 and summary["source_kind"] == "device" and summary["source_fps"] == 200.0
    indices = [int(r["frame"]) for r in rows]
    assert indices == sorted(set(indices)) and indices[-1] < summary["frames_captured"]
    dropped_between = [int(r["dropped_before"]) for r in rows]
    assert all(b - a - 1 == d for a, b, d in zip(indices, indices[1:], dropped_between[1:]))
    assert dropped_between[0] == indices[0]
    assert summary["frames_dropped"] == sum(dropped_between) + summary["frames_captured"] - 1 - indices[-1]
    assert set(LIVE_COLUMNS) <= set(rows[0]) and summary["measurement_unit"] == "px"
    assert summary["largest_area_px"] == max(int(r["area_px"]) for r in rows) and "largest_max_diameter_px" in summary
    latencies = [float(r["latency_ms"]) for r in rows]
    assert min(latencies) >= 20.0  # every frame went through the 20 ms encoder after its capture
    assert 0 <= summary["latency_ms_p50"] <= summary["latency_ms_p95"] <= summary["latency_ms_max"] == max(latencies)
    times = [datetime.fromisoformat(r["capture_time"]) for r in rows]
    assert times == sorted(times) and times[0].utcoffset().total_seconds() == 0
    assert sorted(p.stem for p in (out / "masks").iterdir()) == [r["source"] for r in rows]
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    assert not (out / "INCOMPLETE").exists() and camera.released


def test_a_file_source_is_paced_at_its_frame_rate_and_ends_cleanly(checkpoint: Path, tmp_path: Path) -> None:
    video = _write_video(tmp_path / "scan.mp4", _disc_frames(8), fps=40.0)
    out = predict_live(checkpoint, str(video), tmp_path / "out", device="cpu", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "frames.csv")
    assert summary["stop_reason"] == "end_of_source" and summary["paced"] and summary["frames_captured"] == 8
    assert int(rows[-1]["frame"]) == 7  # the last frame of the file is always segmented
    opened = datetime.fromisoformat(summary["started_at"]).timestamp()
    for row in rows:  # frame k is delivered no earlier than k / fps after the source opened (ms in the files)
        assert datetime.fromisoformat(row["capture_time"]).timestamp() - opened >= int(row["frame"]) / 40.0 - 0.002
    assert not (out / "INCOMPLETE").exists()


def test_a_source_that_dies_mid_run_closes_its_files(
    slow_model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SourceLostError, match="stopped delivering frames after 12 frame"):
        predict_live(slow_model, "0", out, image_size=64, device="cpu", progress=False,
                     open_capture=lambda target: FakeCamera(fps=200.0, frames=12))
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "frames.csv")
    assert summary["stop_reason"] == "source_lost" and summary["frames_captured"] == 12
    assert summary["frames_segmented"] == len(rows) == len(list((out / "masks").iterdir())) >= 1
    assert summary["frames_captured"] == summary["frames_segmented"] + summary["frames_dropped"]
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)
    capture.release()


def test_cli_source_errors_are_one_line(
    checkpoint: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_video = tmp_path / "broken.mp4"
    not_video.write_bytes(b"not a video at all" * 50)
    base = ["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--no-progress"]
    for source, message in [(str(tmp_path / "none.mp4"), "capture source not found"),
                            (str(not_video), "cannot open the capture source"),
                            ("99", "cannot open the capture source or read a frame from it (no such device")]:
        assert main([*base, "--source", source]) == 2
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"flanet predict: error: {message}"), lines
        assert lines[0].endswith(f"({source})") and not (tmp_path / "out").exists()
    for extra in (["--source", "0", str(not_video)], []):  # both INPUT and --source, or neither: usage error
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *extra])
        assert exit_info.value.code == 2
    assert main([*base, "--max-frames", "3", str(not_video)]) == 2  # a bound of a live run needs --source
    assert "need --source" in capfd.readouterr().err
    monkeypatch.setattr(cv2, "VideoCapture", lambda target: FakeCamera(fps=200.0, frames=5))
    assert main([*base, "--source", "rtsp://user:secret@camera.local/stream"]) == 1
    err = capfd.readouterr().err
    assert "flanet predict: error: capture source rtsp://user:***@camera.local/stream stopped delivering" in err
    assert "secret" not in err and "secret" not in (tmp_path / "out" / "summary.json").read_text()


def test_redact_source() -> None:
    assert redact_source("rtsp://admin:pw@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert redact_source("http://10.0.0.2/video.mjpg") == "http://10.0.0.2/video.mjpg"
    assert redact_source("0") == "0" and redact_source("scan.mp4") == "scan.mp4"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_set_the_stop_event_and_handlers_come_back(signum: int) -> None:
    before = signal.getsignal(signum)
    with stop_on_signals(threading.Event()) as stop:
        assert signal.getsignal(signum) is not before
        os.kill(os.getpid(), signum)
        deadline = time.perf_counter() + 5
        while not stop.is_set() and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert stop.is_set()
        assert signal.getsignal(signum) is before  # a second Ctrl-C interrupts at once
    assert signal.getsignal(signum) is before


def test_ctrl_c_ends_a_live_run_cleanly(checkpoint: Path, tmp_path: Path) -> None:
    video = _write_video(tmp_path / "long.mp4", _disc_frames(600), fps=30.0)  # 20 s when played live
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "flanet", "predict", "--checkpoint", str(checkpoint), "--source", str(video),
               "--out", str(out), "--no-progress", "--device", "cpu"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.perf_counter() + 120
        while len(list((out / "masks").glob("*.png"))) < 2 and process.poll() is None:
            assert time.perf_counter() < deadline, "no frame segmented in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "stopped: interrupted" in stdout and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(out / "frames.csv")
    assert summary["stop_reason"] == "interrupted" and summary["frames_segmented"] == len(rows) >= 2
    assert summary["frames_captured"] == summary["frames_segmented"] + summary["frames_dropped"] < 600
    assert len(list((out / "masks").glob("*.png"))) == len(rows)
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)
    capture.release()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, ".flanet-predict", "frames.csv", "masks", "overlay.mp4",
                                                    "summary.json"]  # the writer's lock file stays, released
