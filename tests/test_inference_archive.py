"""Archive prediction: manifest / folder of videos, index, resume after a kill, 2 torchrun ranks (gloo)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.inference.runs.archive import ArchiveError, predict_archive, read_archive_manifest

SIZE = 64


def _write_video(path: Path, frames: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE, SIZE))
    for i in range(frames):
        frame = np.full((SIZE, SIZE, 3), int(rng.integers(20, 60)), np.uint8)
        cv2.circle(frame, (16 + i % 32, 32), 9, (200, 190, 180), -1)
        writer.write(frame)
    writer.release()
    return path


def _index(out: Path) -> list[dict[str, str]]:
    with (out / "index.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _manifest(folder: Path, videos: int, frames: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,id"] + [f"{_write_video(folder / f'scan{k}.mp4', frames, k).name},v{k}" for k in range(videos)]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def test_manifest_rows_index_failures_and_resume(checkpoint: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "in", 3, 4)
    frames = tmp_path / "in" / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), np.full((SIZE, SIZE, 3), 40 * i, np.uint8))
    manifest.write_text(manifest.read_text() + "frames,\nmissing.mp4,gone\n")
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match="1 of 5 videos failed"):
        predict_archive(checkpoint, manifest, out, device="cpu", progress=False)
    rows = _index(out)
    assert [(r["video"], r["status"]) for r in rows] == [
        ("v0", "done"), ("v1", "done"), ("v2", "done"), ("frames", "done"), ("gone", "failed")]
    assert rows[0]["frames"] == "4" and rows[3]["frames"] == "3" and "does not exist" in rows[4]["error"]
    assert sorted(p.name for p in (out / "frames" / "masks").iterdir()) == ["f0.png", "f1.png", "f2.png"]
    assert not (out / "gone").exists() and not (out / ".gone.partial").exists()
    # an interrupted video (left as .partial) and a missing one are redone; finished ones are kept
    finished = (out / "v0" / "summary.json").stat().st_mtime_ns
    (out / "v1").rename(out / ".v1.partial")
    _write_video(tmp_path / "in" / "missing.mp4", 2, 9)
    predict_archive(checkpoint, manifest, out, device="cpu", progress=False)
    assert (out / "v0" / "summary.json").stat().st_mtime_ns == finished
    assert [r["status"] for r in _index(out)] == ["done"] * 5 and not (out / ".v1.partial").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["videos_done"], summary["videos_resumed"], summary["frames"]) == (5, 3, 17)
    with pytest.raises(ValueError, match="other settings"):
        predict_archive(checkpoint, manifest, out, device="cpu", progress=False, threshold=0.9)


def test_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("file\na.mp4\n")
    with pytest.raises(ValueError, match="'path' column"):
        read_archive_manifest(bad)
    bad.write_text("path\nx/scan.mp4\ny/scan.mp4\n")
    with pytest.raises(ValueError, match="lines 2 and 3 both give id 'scan'"):
        read_archive_manifest(bad)
    bad.write_text("path,id\na.mp4,../up\n")
    with pytest.raises(ValueError, match="plain folder name"):
        read_archive_manifest(bad)


def test_cli_folder_of_videos_refuses_a_foreign_output(checkpoint: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for k in range(2):
        _write_video(folder / f"s{k}.mp4", 3, k)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    args = ["predict", str(folder), "--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(foreign)]) == 2
    assert "not written by" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep"
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert "2 of 2 videos done (0 from an earlier run), 6 frames" in capsys.readouterr().out
    assert [r["video"] for r in _index(tmp_path / "o")] == ["s0", "s1"]


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (torchrun starts each rank in its own session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_ranks_share_a_manifest_and_resume_after_a_kill(checkpoint: Path, tmp_path: Path) -> None:
    videos = 8
    manifest = _manifest(tmp_path / "in", videos, 16)
    out = tmp_path / "out"

    def command() -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(_free_port()), "-m", "flanet.cli", "predict", str(manifest),
                "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command(), env=env, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    done: list[Path] = []
    while not done and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        done = [p for p in out.glob("v*") if (p / "summary.json").is_file()] if out.is_dir() else []
    for pid in _descendants(first.pid) + [first.pid]:  # both ranks and the launcher, mid-run
        os.kill(pid, signal.SIGKILL)
    first.wait()
    assert done, first.stdout.read().decode()[-3000:]
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.glob("v*")}
    assert len(finished) < videos and not (out / "index.csv").exists()  # killed before the end
    rerun = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{videos} of {videos} videos done ({len(finished)} from an earlier run)" in rerun.stdout
    rows = _index(out)
    assert [r["video"] for r in rows] == [f"v{k}" for k in range(videos)]  # one merged index, manifest order
    assert all(r["status"] == "done" and r["frames"] == "16" for r in rows)
    assert {p.name: (p / "summary.json").stat().st_mtime_ns for p in out.glob("v*") if p.name in finished} == finished
    assert not list(out.glob(".*.partial"))
    ranks = {json.loads((out / f"v{k}" / "summary.json").read_text())["device"] for k in range(videos)}
    assert ranks == {"cpu"}
