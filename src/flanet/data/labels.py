"""Video-level labels (pathology benign/malignant, ALN metastasis present/absent...) from a CSV.

The file has a header row; the first column is the video id, every other column is a label,
for example::

    video,pathology,aln_metastasis
    case001,malignant,present
    case002,benign,absent

Labels are kept as strings and carried to the evaluation reports (per-label breakdowns).
"""

from __future__ import annotations

import csv
from pathlib import Path

from flanet.csvcells import unescape_cell
from flanet.data.errors import DataError

LABEL_FILE_NAMES: tuple[str, ...] = ("video_labels.csv", "labels.csv")


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
