"""Issue 13 item 2: every state and report file is written atomically.

A write that fails half-way (a full disk, simulated here: each write to the file stores half of
its data and then raises ENOSPC) must leave the previous good file as it was and no stray
temporary file next to it.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from flanet.data.splits import write_split_lists
from flanet.demo import report as demo_report
from flanet.demo.report import Block
from flanet.evaluation.report import write_evaluation, write_metrics_json, write_rows_csv
from flanet.evaluation.scoring import EvaluationResult
from flanet.fileio import INCOMPLETE
from flanet.inference import predict_to_folder
from flanet.models import create_model, save_checkpoint
from flanet.training.config import dump_config, load_config

FullDisk = Callable[..., None]


class _HalfWriter:
    """A file handle that stores half of each write, then fails as a full disk does."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    """``full_disk(*names)``: from now on, files opened for writing whose name holds one of ``names`` fill the disk."""
    real_open = io.open

    def start(*names: str) -> None:
        def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, mode, *args, **kwargs)
            named = isinstance(file, (str, os.PathLike)) and any(n in Path(file).name for n in names)
            return _HalfWriter(handle) if named and any(c in mode for c in "wax") else handle

        monkeypatch.setattr(builtins, "open", opener)
        monkeypatch.setattr(io, "open", opener)

    return start


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _check_kept(write: Callable[[str], None], path: Path, full_disk: FullDisk) -> None:
    write("good")
    before = path.read_bytes()
    files = _only(path.parent)
    full_disk(path.stem)
    with pytest.raises(OSError):
        write("newer")
    assert path.read_bytes() == before
    assert _only(path.parent) == files  # no stray temporary file


def test_config_yaml_survives_a_full_disk(tmp_path: Path, full_disk: FullDisk) -> None:
    path = tmp_path / "config.yaml"
    _check_kept(lambda v: dump_config(load_config("cpu-small", [f"name={v}", "data.root=" + "/x" * 50]), path), path, full_disk)


def test_split_lists_survive_a_full_disk(tmp_path: Path, full_disk: FullDisk) -> None:
    path = tmp_path / "train_list.csv"
    _check_kept(lambda v: write_split_lists(tmp_path, {"train": [f"{v}{i}" for i in range(20)]}, force=True),
                path, full_disk)


def test_metrics_json_survives_a_full_disk(tmp_path: Path, full_disk: FullDisk) -> None:
    path = tmp_path / "metrics.json"
    _check_kept(lambda v: write_metrics_json(path, {"dice": 0.5, "note": v * 40}, {}), path, full_disk)


def test_report_csv_survives_a_full_disk(tmp_path: Path, full_disk: FullDisk) -> None:
    path = tmp_path / "per_video.csv"
    _check_kept(lambda v: write_rows_csv(path, [{"video": f"{v}{i}", "dice": 0.5} for i in range(20)]), path, full_disk)


def test_evaluation_table_survives_a_full_disk(tmp_path: Path, full_disk: FullDisk) -> None:
    path = tmp_path / "table.md"
    result = EvaluationResult({"dice": 0.5, "ci": {}}, [{"video": "a"}], [{"video": "a", "frame": 0}])
    _check_kept(lambda v: write_evaluation(tmp_path, result, {}, v, "-", []), path, full_disk)


def test_demo_report_survives_a_full_disk(tmp_path: Path, full_disk: FullDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_report, "build_blocks", lambda results: [Block("p", results["text"] * 40)])
    path = tmp_path / "report.html"
    _check_kept(lambda v: demo_report.write_report({"text": v}, tmp_path), path, full_disk)


def test_checkpoint_survives_a_failing_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("unet", encoder="resnet18", encoder_weights=None)
    path = save_checkpoint(tmp_path / "best.pt", model, {"epoch": 1})
    before = path.read_bytes()

    def half_save(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        Path(file).write_bytes(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError):
        save_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before and _only(tmp_path) == ["best.pt"]


def test_predict_summary_is_never_half_written(tmp_path: Path, full_disk: FullDisk, disc_frames: Any,
                                               write_video: Any) -> None:
    video = write_video(tmp_path / "scan.mp4", disc_frames(3))
    model = create_model("unet", encoder="resnet18", encoder_weights=None)
    full_disk("summary")
    with pytest.raises(OSError):
        predict_to_folder(model, video, tmp_path / "out", image_size=64, device="cpu", progress=False)
    names = _only(tmp_path / "out")
    assert INCOMPLETE in names and "summary.json" not in names and not [n for n in names if "tmp" in n]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_file_we_write_follows_the_umask(umask: int, tmp_path: Path) -> None:
    """Issue 22 item 8: checkpoints, config.yaml, metrics.json and split lists were 0600 beside a 0644 CSV."""
    old = os.umask(umask)
    try:
        checkpoint = save_checkpoint(tmp_path / "model.pt", create_model("flanet", encoder="resnet18"))
        config = tmp_path / "config.yaml"
        dump_config(load_config("cpu-small"), config)
        metrics = tmp_path / "metrics.json"
        write_metrics_json(metrics, {"dice": 0.5}, {})
        (tmp_path / "data").mkdir()
        write_split_lists(tmp_path / "data", {"train": ["a"], "val": ["b"], "test": ["c"]})
        plain = tmp_path / "plain.csv"
        plain.write_text("a,b\n")
        written = [checkpoint, config, metrics, *sorted((tmp_path / "data").glob("*_list.csv"))]
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
            p.name: oct(0o666 & ~umask) for p in written
        }
        assert plain.stat().st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(old)


def test_a_staged_folder_appears_whole_or_not_at_all_and_keeps_a_finished_one(tmp_path):
    from flanet.fileio import staged_folder

    target = tmp_path / "cache" / "entry"
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "part.onnx").write_text("half")
            raise RuntimeError("export failed")
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []  # nothing half-written left
    with staged_folder(target) as staging:
        (staging / "flanet.json").write_text("first")
    assert (target / "flanet.json").read_text() == "first"
    with staged_folder(target) as staging:  # another process finished the same entry first: theirs is kept
        (staging / "flanet.json").write_text("second")
    assert (target / "flanet.json").read_text() == "first" and [p.name for p in target.parent.iterdir()] == ["entry"]
    from flanet.fileio import current_umask

    assert target.stat().st_mode & 0o777 == 0o777 & ~current_umask()
