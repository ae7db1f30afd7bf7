"""Issue 22 item 10: names that cannot break the output (reserved archive ids, CSV formula injection)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.csvcells import escape_cell, unescape_cell
from flanet.data.splits import read_split_lists, write_split_lists
from flanet.evaluation.report import write_rows_csv
from flanet.inference.runs.archive import predict_archive
from flanet.models import create_model, save_checkpoint

SIZE = 32
FORMULAS = ["=HYPERLINK(\"http://x\",\"open\")", "+1+2", "-2+3", "@SUM(A1)", "\tcmd", "=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", create_model("flanet", encoder="resnet18"),
                           {"image_size": SIZE})


def _frames(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for k, name in enumerate(names):
        cv2.imwrite(str(folder / f"{name}.png"), np.full((SIZE, SIZE, 3), 40 * k, np.uint8))
    return folder


def _cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_are_escaped_and_numbers_are_not(text: str) -> None:
    assert escape_cell(text) == "'" + text and unescape_cell(escape_cell(text)) == text
    for number in ("-0.25", "+3", "-1e-3", -2.5, 7):
        assert escape_cell(number) == number
    assert escape_cell("case1") == "case1" and unescape_cell("'quoted") == "'quoted"


@pytest.mark.parametrize("reserved", ["summary.json", "index.csv", "INCOMPLETE", "Summary.JSON"])
def test_an_archive_id_naming_an_archive_file_is_refused_before_writing(
    reserved: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``summary.json`` as an id failed at the end and poisoned every rerun."""
    _frames(tmp_path / "in" / "clip", ["a", "b"])
    (tmp_path / "in" / "manifest.csv").write_text(f"path,id\nclip,{reserved}\n")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in" / "manifest.csv"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"video id {reserved!r} is the name of a file the archive writes" in err
    assert not out.exists()


def test_ids_and_frame_names_are_escaped_in_index_and_frames_csv(checkpoint: Path, tmp_path: Path) -> None:
    """An id or frame name starting with =, +, -, @ went unescaped into the CSVs (formula injection)."""
    _frames(tmp_path / "in" / "clip", ["-cmd", "@x", "=1+1", "plain"])
    (tmp_path / "in" / "manifest.csv").write_text('path,id\nclip,"=HYPERLINK(""x"")"\n')
    out = predict_archive(checkpoint, tmp_path / "in" / "manifest.csv", tmp_path / "out", device="cpu", progress=False)
    index = _cells(out / "index.csv")
    assert index[1][0] == "'=HYPERLINK(\"x\")"
    frames = _cells(out / "=HYPERLINK(\"x\")" / "frames.csv")
    column = frames[0].index("source")
    assert sorted(row[column] for row in frames[1:]) == ["'-cmd", "'=1+1", "'@x", "plain"]
    assert all(not cell.startswith(("=", "+", "@")) for row in index + frames for cell in row)


def test_split_lists_and_report_csvs_escape_and_read_back(tmp_path: Path) -> None:
    ids = ["=cmd", "@evil", "case1"]
    write_split_lists(tmp_path, {"train": ids, "val": ["-x"], "test": ["+y"]})
    assert _cells(tmp_path / "train_list.csv") == [["'=cmd"], ["'@evil"], ["case1"]]
    assert read_split_lists(tmp_path)[0] == {"train": ids, "val": ["-x"], "test": ["+y"]}
    write_rows_csv(tmp_path / "per_video.csv", [{"video": "=cmd", "dice": -0.5}, {"video": "ok", "dice": 0.25}])
    assert _cells(tmp_path / "per_video.csv")[1:] == [["'=cmd", "-0.5"], ["ok", "0.25"]]
