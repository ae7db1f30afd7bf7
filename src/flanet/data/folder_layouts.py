"""Layouts of frame folders paired with mask folders: ``authors``, ``buv2022``, ``vtus`` and ``video-polyp``.

Each reader is registered in :data:`flanet.data.layouts.LAYOUTS` and returns None for a root that is not its layout
(docs/data.md):

- ``authors``: ``img_list/<video>/<frame>``, ``mask_list/<video>/<frame>``, optional ``bbox.json``.
- ``buv2022``: ``images/<video>/<frame>``, ``labels/<video>/<frame>.png``.
- ``vtus``: ``<split>/<video>/<frame>`` with masks in ``<split>_GT/<video>/`` (VTUS thyroid videos).
- ``video-polyp``: ``<split>/Frame/<case>/`` + ``<split>/GT/<case>/`` at any depth up to 5 (CVC-300-TV,
  CVC-612, SUN-SEG, MICCAI-VPS test), or ``<split>/<case>/{Frame,GT}/`` (one MICCAI-VPS train variant).
"""

from __future__ import annotations

from pathlib import Path

from natsort import natsorted

from flanet.data.errors import Problem
from flanet.data.listing import list_dir, match_masks, paired_videos
from flanet.data.splits import with_aliases
from flanet.data.videoset import LayoutRead, Video

_MAX_POLYP_DEPTH = 5


def read_authors(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """The authors' release: ``img_list/<video>/`` frames, ``mask_list/<video>/`` masks."""
    if not (root / "img_list").is_dir():
        return None
    videos = paired_videos(root / "img_list", root / "mask_list", notes)
    if not (root / "mask_list").is_dir():
        notes.append(Problem("warning", root / "mask_list", "no mask_list folder: frames have no masks"))
    return LayoutRead("authors", videos)


def read_buv2022(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """BUV2022: ``images/<video>/`` frames, ``labels/<video>/`` masks."""
    if not ((root / "images").is_dir() and (root / "labels").is_dir()):
        return None
    return LayoutRead("buv2022", paired_videos(root / "images", root / "labels", notes))


def read_vtus(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """VTUS: ``<split>/<video>/`` frames with ``<split>_GT/<video>/`` masks; ids ``<split>/<video>``."""
    names = {folder.name for folder in list_dir(root, [])[0]}
    splits = natsorted(name for name in names if f"{name}_GT" in names)
    if not splits:
        return None
    found = [(split, paired_videos(root / split, root / f"{split}_GT", notes)) for split in splits]
    return LayoutRead("vtus", *_read_polyp(found), keep_order=True)


def read_video_polyp(root: Path, notes: list[Problem]) -> LayoutRead | None:
    """Video polyp sets: ``Frame``/``GT`` folder pairs up to depth 5; ids prefixed with their split folder."""
    found = _find_polyp_splits(root, notes)
    return LayoutRead("video-polyp", *_read_polyp(found), keep_order=True) if found else None


def _find_polyp_splits(root: Path, notes: list[Problem]) -> list[tuple[str, list[Video]]]:
    """Search ``Frame``/``GT`` folder pairs up to depth 5; returns ``(split path, videos)`` pairs."""
    found: list[tuple[str, list[Video]]] = []
    per_sequence: dict[Path, list[Video]] = {}

    def walk(folder: Path, depth: int) -> None:
        frame_dir = folder / "Frame"
        if frame_dir.is_dir() and (folder / "GT").is_dir():
            subfolders, images = list_dir(frame_dir, notes)
            if images:  # <split>/<case>/{Frame,GT}/<frame>
                video = Video(folder.name, images, match_masks(folder.name, images, folder / "GT", notes))
                if folder == root:
                    found.append(("", [video]))
                else:
                    per_sequence.setdefault(folder.parent, []).append(video)
            elif subfolders:  # <split>/{Frame,GT}/<case>/<frame>
                split = folder.relative_to(root).as_posix()
                found.append((split if split != "." else "", paired_videos(frame_dir, folder / "GT", notes)))
            return
        if depth < _MAX_POLYP_DEPTH:
            for sub in list_dir(folder, [])[0]:
                walk(sub, depth + 1)

    walk(root, 0)
    for parent, videos in per_sequence.items():
        split = parent.relative_to(root).as_posix()
        found.append((split if split != "." else "", natsorted(videos, key=lambda v: v.id)))
    return found


def _read_polyp(found: list[tuple[str, list[Video]]]) -> tuple[list[Video], dict[str, list[str]]]:
    """Prefix video ids with their split folder; add ``train``/``val``/``test`` aliases of split folders."""
    videos: list[Video] = []
    splits: dict[str, list[str]] = {}
    for split, split_videos in found:
        for video in split_videos:
            video.id = f"{split}/{video.id}" if split else video.id
        videos.extend(split_videos)
        if split:
            splits.setdefault(split, []).extend(video.id for video in split_videos)
    return videos, with_aliases(splits)


def _vtus_splits(root: Path) -> list[str]:
    """Split folders ``<split>`` of ``root`` that have a mask folder ``<split>_GT`` beside them."""
    names = {folder.name for folder in list_dir(root, [])[0]}
    return natsorted(name for name in names if f"{name}_GT" in names)


def _read_vtus(root: Path, splits: list[str], notes: list[Problem]) -> tuple[list[Video], dict[str, list[str]]]:
    """``<split>/<video>/`` frames with ``<split>_GT/<video>/`` masks; ids ``<split>/<video>``."""
    found = [(split, paired_videos(root / split, root / f"{split}_GT", notes)) for split in splits]
    return _read_polyp(found)
