"""Video-level labels (pathology benign/malignant, ALN metastasis present/absent...): the paper's Section 2.

The paper's data set gives every video a benign/malignant label and an axillary lymph node (ALN)
metastasis label (Section 2, Table 1: columns BM and PA). flanet reads them from a CSV in any layout
(``labels.csv`` or ``video_labels.csv`` at the data set root, or ``--labels FILE``): a header row,
the video id first, then one column per label, for example::

    video,pathology,aln_metastasis
    case001,malignant,present
    case002,benign,
    case003,1,0

A blank cell (or ``?``, ``na``, ``unknown``) is a missing value. Layouts that encode the pathology in
folder names (``benign/`` and ``malignant/`` folders above the videos, as the BUV data set of
CVA-Net, Lin et al. 2022) give a ``pathology`` label per video (:func:`folder_labels`); the CSV wins
where both name a video.

Labels are kept as strings (per-label breakdowns of the segmentation scores); the diagnosis head and
its evaluation read them as binary targets (:func:`binary_targets`: ``malignant``, ``present``,
``positive``, ``yes``, ``true`` and ``1`` are positive, ``benign``, ``absent``, ``negative``, ``no``,
``false`` and ``0`` negative).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flanet.csvcells import unescape_cell
from flanet.data.errors import DataError

LABEL_FILE_NAMES: tuple[str, ...] = ("video_labels.csv", "labels.csv")
#: Folder names that give a video's pathology (lower case): ``<layout>/benign/<video>/``.
CLASS_FOLDERS: dict[str, str] = {"benign": "benign", "malignant": "malignant"}
#: The label a class folder gives.
FOLDER_LABEL = "pathology"
POSITIVE_VALUES: frozenset[str] = frozenset({"1", "1.0", "malignant", "present", "positive", "pos", "yes", "y", "true"})
NEGATIVE_VALUES: frozenset[str] = frozenset({"0", "0.0", "benign", "absent", "negative", "neg", "no", "n", "false"})
MISSING_VALUES: frozenset[str] = frozenset({"", "?", "na", "n/a", "nan", "none", "unknown", "-"})


def find_label_file(root: Path) -> Path | None:
    """The labels CSV at the data set root, if any (``video_labels.csv`` or ``labels.csv``)."""
    for name in LABEL_FILE_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def read_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a video-labels CSV into ``{video_id: {label_name: value}}``.

    Raises:
        DataError: naming the file, for an unreadable file, a missing header, rows of the wrong
            length or a video listed twice.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [[unescape_cell(cell) for cell in row] for row in csv.reader(handle) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read labels CSV ({error})", path) from error
    if len(rows) < 1 or len(rows[0]) < 2:
        raise DataError("labels CSV needs a header row 'video,<label>,...' and one row per video", path)
    header = [cell.strip() for cell in rows[0]]
    labels: dict[str, dict[str, str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"line {line} has {len(row)} columns, the header has {len(header)}", path)
        video_id = row[0].strip()
        if video_id in labels:
            raise DataError(f"line {line}: video {video_id!r} is listed twice", path)
        labels[video_id] = {name: value.strip() for name, value in zip(header[1:], row[1:])}
    return labels


def label_value(value: str) -> float | None:
    """A label cell as a binary target: 1.0 (malignant, present, ...), 0.0 (benign, absent, ...), None (missing).

    Raises:
        ValueError: a value that is neither (the message names it).
    """
    key = value.strip().lower()
    if key in MISSING_VALUES:
        return None
    if key in POSITIVE_VALUES:
        return 1.0
    if key in NEGATIVE_VALUES:
        return 0.0
    raise ValueError(f"{value!r} is not a binary label (1/0, malignant/benign, present/absent, yes/no, "
                     "true/false; blank when unknown)")


def binary_targets(
    labels: dict[str, dict[str, str]], names: Sequence[str], videos: Sequence[str], source: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets of ``videos`` for the labels ``names``: ``(values (V, L) float32, known (V, L) bool)``.

    A video without a row, or with a missing cell, has ``known`` False there (value 0).

    Raises:
        DataError: a cell that is not a binary label, naming the video, the label and ``source``.
    """
    values = np.zeros((len(videos), len(names)), np.float32)
    known = np.zeros((len(videos), len(names)), bool)
    for row, video in enumerate(videos):
        cells = labels.get(video, {})
        for column, name in enumerate(names):
            try:
                value = label_value(cells.get(name, ""))
            except ValueError as error:
                raise DataError(f"video {video!r}, label {name!r}: {error}", source) from error
            if value is not None:
                values[row, column], known[row, column] = value, True
    return values, known


def folder_labels(videos: Sequence[tuple[str, Sequence[str]]]) -> dict[str, dict[str, str]]:
    """``{video: {"pathology": "benign" | "malignant"}}`` from class folder names on each video's path.

    Args:
        videos: ``(video id, path parts)`` per video: the parts of its id (``benign/case1``) and of
            its frames' (or file's) folder relative to the data set root. The class folder nearest
            the video wins; a video without one is left out.
    """
    found = {}
    for video_id, parts in videos:
        classes = [CLASS_FOLDERS[part.lower()] for part in parts if part.lower() in CLASS_FOLDERS]
        if classes:
            found[video_id] = {FOLDER_LABEL: classes[-1]}
    return found


def merged_labels(from_csv: dict[str, dict[str, str]], from_folders: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Folder labels completed by the CSV: a CSV cell wins over a folder label of the same video and name,
    unless the cell is blank."""
    merged = {video: dict(values) for video, values in from_folders.items()}
    for video, values in from_csv.items():
        row = merged.setdefault(video, {})
        row.update({name: value for name, value in values.items() if value.strip() or name not in row})
    return merged
