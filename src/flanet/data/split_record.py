"""Which videos a run trained on, chose its checkpoint on and held out: the run's split record.

A number is only a test score if none of its videos was seen in training or in model selection.
Training writes a :class:`SplitRecord` into the run folder (``splits.json``) and into every
checkpoint's metadata (``data_split``); evaluation reads it to score only held-out videos, to
refuse a checkpoint chosen or trained on the videos it is asked to score, and to state in every
table exactly which videos it scored (:func:`video_list_hash`). See docs/training.md "Splits".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Key of the record in a checkpoint's metadata.
METADATA_KEY = "data_split"
#: File of the record in a run folder.
RECORD_FILE = "splits.json"


def video_list_hash(video_ids: Iterable[str]) -> str:
    """First 12 hex digits of the SHA-256 of the sorted, newline-joined video ids (order-free)."""
    text = "\n".join(sorted(video_ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def describe_videos(video_ids: Iterable[str]) -> str:
    """``"12 videos (list hash 0123456789ab)"``: the exact videos a table scored."""
    ids = list(video_ids)
    return f"{len(ids)} video{'s' if len(ids) != 1 else ''} (list hash {video_list_hash(ids)})"


@dataclass(frozen=True)
class SplitRecord:
    """The videos of one training run, by role.

    Attributes:
        root: the data set folder (absolute), so that ids are only compared on the same set.
        source: where the split came from: ``"split lists"`` / ``"split folders"`` of the data set,
            or ``"held out by flanet (seed S, ...)"`` for videos flanet set aside itself.
        train_split: name of the training split (or ``"held out"``).
        selection_split: name of the split ``best.pt`` was chosen on; ``None`` when the run trained
            without validation (only ``last.pt`` is meaningful then).
        train, val, test: the video ids of each role (``test``: held out by flanet when the data set
            has no split lists, else empty: the data set's own test split applies).
    """

    root: str
    source: str
    train_split: str
    selection_split: str | None
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (with the hash of each list, for reading by eye)."""
        payload = asdict(self)
        payload["hashes"] = {role: video_list_hash(getattr(self, role)) for role in ("train", "val", "test")}
        return payload

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> SplitRecord:
        """Inverse of :meth:`to_dict` (the hashes are recomputed, not read)."""
        return cls(
            root=str(payload["root"]), source=str(payload["source"]), train_split=str(payload["train_split"]),
            selection_split=None if payload.get("selection_split") is None else str(payload["selection_split"]),
            train=[str(i) for i in payload.get("train", [])], val=[str(i) for i in payload.get("val", [])],
            test=[str(i) for i in payload.get("test", [])],
        )

    def same_root(self, root: str | Path) -> bool:
        """Whether ``root`` is the data set this record was made on (resolved paths)."""
        return Path(self.root).expanduser().resolve() == Path(root).expanduser().resolve()

    def seen(self, video_ids: Iterable[str]) -> dict[str, list[str]]:
        """Of ``video_ids``, those trained on (``"train"``) and those the checkpoint was chosen on (``"val"``)."""
        ids = list(video_ids)
        train, val = set(self.train), set(self.val) if self.selection_split is not None else set()
        return {"train": [i for i in ids if i in train], "val": [i for i in ids if i in val]}


def record_from_metadata(metadata: Mapping[str, Any] | None) -> SplitRecord | None:
    """The split record a checkpoint carries, or None (older checkpoints, models not trained by flanet)."""
    payload = (metadata or {}).get(METADATA_KEY)
    return SplitRecord.from_dict(payload) if isinstance(payload, Mapping) else None
