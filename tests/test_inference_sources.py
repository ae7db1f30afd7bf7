"""What ``flanet predict`` accepts as INPUT: one set of video suffixes for files and folders alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flanet.data.layouts import VIDEO_EXTENSIONS
from flanet.inference.sources import resolve_sources


@pytest.mark.parametrize("suffix", sorted(VIDEO_EXTENSIONS))
def test_a_video_file_is_accepted_with_every_suffix_a_folder_accepts(
    tmp_path: Path, suffix: str, write_video, solid_frames
) -> None:
    # Before: `flanet predict scan.mpg` was refused while a folder holding scan.mpg was read.
    written = write_video(tmp_path / "scan.avi", solid_frames([20, 120, 220]), fourcc="MJPG")
    video = tmp_path / f"scan{suffix}"
    if video != written:
        shutil.copy(written, video)  # FFmpeg reads by content, whatever the suffix
    (source,) = resolve_sources(video)
    assert source.location == video and source.frame_count == 3
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(video, folder / video.name)
    assert [s.location.name for s in resolve_sources(folder)] == [video.name]
