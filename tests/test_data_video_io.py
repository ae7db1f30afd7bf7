"""Video files: probing, frame-by-frame decoding, clear errors for broken files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flanet.data import DataError
from flanet.data.video_io import VideoFrameReader, iter_video_frames, probe_video


@pytest.mark.parametrize("name,fourcc", [("a.avi", "MJPG"), ("a.mp4", "mp4v")])
def test_probe_and_iterate(tmp_path, name, fourcc, write_video, solid_frames):
    path = write_video(tmp_path / name, solid_frames([40, 120, 200]), fps=12, fourcc=fourcc)
    info = probe_video(path)
    assert (info.frame_count, info.width, info.height) == (3, 24, 16) and info.fps == pytest.approx(12)
    frames = list(iter_video_frames(path))
    assert len(frames) == 3 and frames[0].shape == (16, 24, 3) and frames[0].dtype == np.uint8
    assert [int(round(f[..., 0].mean())) for f in frames] == pytest.approx([40, 120, 200], abs=6)  # RGB order
    assert float(frames[1][..., 2].mean()) < 6


def test_random_access_reader(tmp_path, write_video, solid_frames):
    path = write_video(tmp_path / "a.avi", solid_frames([10, 60, 110, 160]), fps=12, fourcc="MJPG")
    other = write_video(tmp_path / "b.avi", solid_frames([200, 250]), fps=12, fourcc="MJPG")
    reader = VideoFrameReader(max_open=1)
    assert [int(round(reader.read(path, i)[..., 0].mean())) for i in (3, 0, 1)] == pytest.approx([160, 10, 60], abs=6)
    assert int(round(reader.read(other, 1)[..., 0].mean())) == pytest.approx(250, abs=6)
    assert int(round(reader.read(path, 2)[..., 0].mean())) == pytest.approx(110, abs=6)
    with pytest.raises(DataError, match="cannot decode frame 9"):
        reader.read(other, 9)


def test_folder_of_frames_is_iterated_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((4, 4, 3), i, np.uint8))
    assert [int(f[0, 0, 0]) for f in iter_video_frames(tmp_path)] == [1, 2, 10]


def test_broken_video_files_raise(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match="empty video file") as info:
        probe_video(tmp_path / "empty.mp4")
    assert "empty.mp4" in str(info.value)
    with pytest.raises(DataError, match="empty video file"):
        next(iter_video_frames(tmp_path / "empty.mp4"))
    with pytest.raises(DataError, match="junk.avi"):
        list(iter_video_frames(tmp_path / "junk.avi"))
    with pytest.raises(DataError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
