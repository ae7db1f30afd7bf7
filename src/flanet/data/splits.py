"""Train/val/test split lists by video: reading, making (stratified) and writing.

A split list is the authors' ``<split>_list.csv``: one video id per row, first column, no
header (a header cell named ``video``/``video_id``/``id``/``name``/``case`` is skipped).
"""

from __future__ import annotations

import csv
import math
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from natsort import natsorted

from flanet.csvcells import escape_rows, unescape_cell
from flanet.data.errors import DataError
from flanet.fileio import atomic_open

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
LIST_SUFFIX = "_list.csv"
_HEADER_WORDS = frozenset({"video", "video_id", "videoid", "id", "name", "case", "video_name"})


def split_list_path(root: Path, split: str) -> Path:
    """Where the list of ``split`` lives: ``<root>/<split>_list.csv``."""
    return root / f"{split}{LIST_SUFFIX}"


def read_split_list(path: Path) -> list[str]:
    """Read the video ids of one split list (first column, blank rows skipped).

    Raises:
        DataError: naming the file when it cannot be read.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            ids = [unescape_cell(row[0].strip()) for row in csv.reader(handle) if row and row[0].strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read split list ({error})", path) from error
    if ids and ids[0].lower() in _HEADER_WORDS:
        ids = ids[1:]
    return ids


def read_split_lists(root: Path) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """Read every ``<split>_list.csv`` in ``root``: ``({split: ids}, {split: file})``."""
    splits: dict[str, list[str]] = {}
    files: dict[str, Path] = {}
    for path in natsorted(root.glob(f"*{LIST_SUFFIX}"), key=lambda item: item.name):
        split = path.name[: -len(LIST_SUFFIX)]
        splits[split] = read_split_list(path)
        files[split] = path
    return splits, files


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse ``"4:2:4"`` (train:val:test, any positive scale) into fractions summing to 1.

    Raises:
        DataError: unless there are exactly three finite non-negative numbers with a finite positive sum.
    """
    try:
        values = [float(part) for part in text.split(":")]
    except ValueError as error:
        raise DataError(f"ratios {text!r}: expected train:val:test numbers such as 4:2:4") from error
    total = sum(values)
    if len(values) != 3 or min(values) < 0 or not math.isfinite(total) or total <= 0:  # inf:1:1 removed every list
        raise DataError(f"ratios {text!r}: expected three finite non-negative numbers train:val:test with a "
                        "positive sum, e.g. 4:2:4 (--ratios)")
    return values[0] / total, values[1] / total, values[2] / total


def make_splits(
    video_ids: Sequence[str],
    ratios: Sequence[float],
    seed: int,
    strata: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Assign whole videos to train/val/test, stratified by a per-video key.

    Videos are grouped by stratum, shuffled (seeded) within it, and dealt in that order by
    largest deficit: each next video goes to the split furthest below its share. Every stratum
    is therefore spread by the ratios and the totals match them as closely as integers allow.

    Args:
        video_ids: all video ids (each ends up in exactly one split).
        ratios: train, val, test fractions.
        seed: shuffling seed (same seed, same split).
        strata: optional stratum per video id (e.g. ``"malignant|present"``).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each list naturally sorted.
    """
    rng = random.Random(seed)
    strata = strata or {}
    groups: dict[str, list[str]] = {}
    for video_id in natsorted(set(video_ids)):
        groups.setdefault(strata.get(video_id, ""), []).append(video_id)
    order: list[str] = []
    for key in natsorted(groups):
        members = groups[key]
        rng.shuffle(members)
        order.extend(members)
    counts = [0] * len(SPLIT_NAMES)
    result: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for position, video_id in enumerate(order, start=1):
        deficits = [ratio * position - count for ratio, count in zip(ratios, counts)]
        chosen = max(range(len(SPLIT_NAMES)), key=lambda index: (deficits[index], ratios[index]))
        counts[chosen] += 1
        result[SPLIT_NAMES[chosen]].append(video_id)
    return {name: natsorted(ids) for name, ids in result.items()}


def write_split_lists(root: Path, splits: Mapping[str, Sequence[str]], force: bool = False) -> list[Path]:
    """Write ``<root>/<split>_list.csv`` for every split (one id per row, no header).

    Raises:
        DataError: when a list already exists and ``force`` is False (nothing is written then).
    """
    targets = {name: split_list_path(root, name) for name in splits}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not force:
        raise DataError(
            "split lists already exist: " + ", ".join(path.name for path in existing)
            + " (use --force to overwrite)",
            root,
        )
    for name, path in targets.items():
        with atomic_open(path, newline="") as handle:
            csv.writer(handle).writerows(escape_rows([video_id] for video_id in splits[name]))
    return list(targets.values())


#: Video-polyp test sets of the paper's Table 4 (MICCAI-VPS names): test sets, never a validation split,
#: although ``CVC-ClinicDB-612-Valid`` (CVC-612-V) says "Valid".
VPS_TEST_SETS: tuple[str, ...] = ("cvc-clinicdb-612-valid", "cvc-clinicdb-612-test", "cvc-colondb-300")


def split_alias(split_path: str) -> str | None:
    """``train``/``val``/``test`` for split folders such as ``TrainDataset``, ``VPS-TestSet/...`` or ``val``.

    A path under a test folder (``VPS-TestSet``, ``TestEasyDataset``) and a Table 4 test set
    (:data:`VPS_TEST_SETS`, e.g. ``CVC-ClinicDB-612-Valid``) are ``test``: choosing a checkpoint
    on them would make their scores optimistic.
    """
    lower = split_path.lower()
    if "test" in lower:
        return "test"
    if "train" in lower:
        return "train"
    if any(name in lower for name in VPS_TEST_SETS):
        return "test"
    if re.search(r"(^|[^a-z])(val|valid|validation)([^a-z]|$)", lower):
        return "val"
    return None


def with_aliases(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """Add ``train``/``val``/``test`` aliases of split names such as ``Train`` or ``imagenet_vid_val``."""
    aliases: dict[str, list[str]] = {}
    for split, ids in splits.items():
        alias = split_alias(split)
        if alias is not None and alias not in splits:
            aliases.setdefault(alias, []).extend(ids)
    return {**splits, **aliases}


def official_test_videos(video_ids: Sequence[str]) -> list[str]:
    """Ids under a test split folder of the data set (``Test/0004``, ``VPS-TestSet/CVC-ColonDB-300/1``).

    ``flanet data split`` keeps them as the test list: an official test split is never reshuffled
    into training.
    """
    return [i for i in video_ids if "/" in i and split_alias(i.rsplit("/", 1)[0]) == "test"]
