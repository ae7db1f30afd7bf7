"""Archive-scale prediction: many videos, resumable, sharded across ``torchrun`` ranks.

Input: a folder of videos (any layout ``flanet.data.discover`` reads: video files, frame
folders, dataset roots) or a manifest CSV with a ``path`` column (video file or frame folder;
relative paths are relative to the CSV) and an optional ``id`` column (output folder name;
default the path's stem). Output::

    <out>/<video id>/{masks/, overlay.mp4, frames.csv, summary.json}   one folder per video
    <out>/index.csv      one row per video: status (done / failed), counts, timing, error
    <out>/summary.json   totals and the per-video entries of this archive

A video is written into ``<out>/.<id>.partial`` (``<out>/<split>/.<video>.partial`` for a nested id
such as ``Test/0004``) and renamed to ``<out>/<id>`` only when it is complete, so a folder ``<out>/<id>`` is always a finished video. A rerun with the same ``--out``
skips finished videos, redoes interrupted or failed ones and rewrites the index; ``--force``
starts from scratch. Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r takes videos r, r + W,
r + 2W, ... of the list, on ``cuda:<LOCAL_RANK>`` when GPUs are present; the ranks meet once
at the end (gloo) and rank 0 writes the one merged index. A video that cannot be read is
recorded as failed (the run goes on) and reported at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from flanet.csvcells import escape_row
from flanet.data import DataError
from flanet.fileio import INCOMPLETE, atomic_write_text, file_sha256, prepare_output_folder, release_output_folder
from flanet.inference.core.segmenter import VideoSegmenter
from flanet.inference.core.settings import SegmenterSettings
from flanet.inference.runs.annotation_export import export_video
from flanet.inference.runs.burned_in import DEFAULT_POLICY, BurnedInPolicy, policy_from_settings
from flanet.inference.runs.predict import _predict_video, run_settings
from flanet.inference.runs.sources import VideoSource, resolve_sources
from flanet.models.contract import VideoSegmentationModel

__all__ = ["ArchiveError", "ArchiveItem", "INDEX_COLUMNS", "archive_items", "is_archive_input", "predict_archive",
           "read_archive_manifest"]

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("video", "status", "input", "output", "frames", "frames_with_lesion", "largest_area_px",
                 "largest_area_frame", "frames_with_full_context", "width", "height", "input_fps",
                 "fps_achieved", "seconds", "error")


#: A finished video is reused only if these match (issue 22 item 5: the checkpoint's content, not only its path;
#: --full-frame; the input's size, mtime and first bytes).
RESUME_KEYS = ("checkpoint", "checkpoint_sha256", "image_size", "threshold", "full_frame", "export",
               "allow_burned_in", "blank_outside_regions", "keep_region", "input_fingerprint")
FINGERPRINT_BYTES = 1 << 20  # the input's first MiB is hashed
#: Names the archive writes in ``<out>`` itself: no video id may take one (``summary.json`` failed at the end
#: and poisoned every rerun, issue 22 item 10); compared without case, for case-insensitive file systems.
RESERVED_IDS = frozenset({"index.csv", "summary.json", INCOMPLETE.lower()})


class ArchiveError(RuntimeError):
    """Some videos of an archive could not be segmented (the index names them)."""


@dataclass(frozen=True)
class ArchiveItem:
    """One video of an archive, opened lazily (a bad file fails only its own row)."""

    id: str
    location: Path
    open: Callable[[], VideoSource]


def is_archive_input(path: str | Path) -> bool:
    """A manifest CSV, or a folder that is not itself one video's frames."""
    from flanet.inference.runs.sources import is_frame_folder

    path = Path(path)
    return (path.is_file() and path.suffix.lower() == ".csv") or (path.is_dir() and not is_frame_folder(path))


def read_archive_manifest(path: Path) -> list[tuple[str, Path]]:
    """(id, path) of every row of a manifest CSV (columns ``path``, optional ``id``).

    Raises:
        ValueError: no ``path`` column, an empty path, an id that is not a plain folder name, or
            two rows with one id (naming the rows).
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: manifest needs a 'path' column (optional: 'id'), found {reader.fieldnames}")
        rows = list(reader)
    entries, seen = [], {}
    for line, row in enumerate(rows, start=2):
        value = (row.get("path") or "").strip()
        if not value:
            raise ValueError(f"{path}: line {line}: empty path")
        location = Path(value) if Path(value).is_absolute() else Path(path).parent / value
        video_id = (row.get("id") or "").strip() or location.stem
        if video_id in (".", "..") or "/" in video_id or "\\" in video_id or video_id.startswith("."):
            raise ValueError(f"{path}: line {line}: id {video_id!r} is not a plain folder name")
        if video_id in seen:
            raise ValueError(f"{path}: lines {seen[video_id]} and {line} both give id {video_id!r}; add an 'id' column")
        seen[video_id] = line
        entries.append((video_id, location))
    if not entries:
        raise ValueError(f"{path}: manifest lists no videos")
    return entries


def _open_one(video_id: str, location: Path, fps: float) -> VideoSource:
    sources = resolve_sources(location, fps=fps)
    if len(sources) != 1:
        raise ValueError(f"{location}: a manifest row must be one video file or frame folder, found {len(sources)} videos")
    source = sources[0]
    return replace(source, id=video_id)


def archive_items(input_path: Path, fps: float = 25.0, split: str | None = None) -> list[ArchiveItem]:
    """The videos of a manifest CSV or a folder, in order.

    Raises:
        ValueError: a video id that names a file of the archive itself (:data:`RESERVED_IDS`).
    """
    if input_path.is_file():
        items = [ArchiveItem(i, p, lambda i=i, p=p: _open_one(i, p, fps)) for i, p in read_archive_manifest(input_path)]
    else:
        items = [ArchiveItem(s.id, s.location, lambda s=s: s) for s in resolve_sources(input_path, fps=fps, split=split)]
    for item in items:
        if item.id.split("/")[0].lower() in RESERVED_IDS:
            raise ValueError(f"{item.location}: video id {item.id!r} is the name of a file the archive writes in its "
                             f"output folder ({', '.join(sorted(RESERVED_IDS))}); give it another id")
    return items


def input_fingerprint(location: Path) -> dict[str, Any] | None:
    """What identifies a video's input cheaply: size, mtime and SHA-256 of the first MiB (of each frame for a folder).

    A rerun reuses a finished video only when its input still has this fingerprint, so another
    video put under the same path or id is segmented again. None when the input cannot be read
    (its own row fails).
    """
    try:
        if location.is_dir():
            entries = sorted(p for p in location.iterdir() if p.is_file() and not p.name.startswith("."))
            digest = hashlib.sha256()
            for entry in entries:
                info = entry.stat()
                digest.update(f"{entry.name}|{info.st_size}|{info.st_mtime_ns}|{file_sha256(entry, 4096)}\n".encode())
            return {"files": len(entries), "sha256": digest.hexdigest()}
        info = location.stat()
        return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256_first_mib": file_sha256(location, FINGERPRINT_BYTES)}
    except OSError:
        return None


def _complete(folder: Path, entry: dict) -> bool:
    """A finished video's folder holds what its summary says: one ``frames.csv`` row per frame."""
    try:
        with (folder / "frames.csv").open(newline="", encoding="utf-8") as handle:
            rows = sum(1 for _ in csv.reader(handle)) - 1
    except OSError:
        return False
    return isinstance(entry.get("frames"), int) and rows == entry["frames"]


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _segment(item: ArchiveItem, segmenter: VideoSegmenter, out: Path, settings: dict, progress: bool,
             overlap: bool = True) -> dict:
    """Segment one video into ``.<name>.partial`` beside its folder, then rename it to ``out/<id>``.

    A nested id (``Test/0004``, ``CVC-300/seq1``: a data set's split folders) gets nested folders:
    ``out/Test/.0004.partial`` becomes ``out/Test/0004``.
    """
    final = out / item.id
    partial = final.parent / f".{final.name}.partial"
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        source = item.open()
        fingerprint = input_fingerprint(item.location)  # before reading: a change while it runs is caught next time
        entry = _predict_video(segmenter, source, partial, progress, settings.get("full_frame", False),
                               burned_in=policy_from_settings(settings), overlap=overlap)
        entry["input_fingerprint"] = fingerprint
        entry["exports"] = export_video(source, partial, entry["frames"], settings.get("export") or ())
        entry["output"] = str(final)
        atomic_write_text(partial / "summary.json", json.dumps({**settings, **entry}, indent=2, default=str))
        if final.exists():  # only a folder of an older, non-archive run can be here unfinished
            shutil.rmtree(final)
        partial.rename(final)
    except (DataError, ValueError, OSError, FileNotFoundError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        log.error("%s: %s", item.location, error)
        return {"video": item.id, "status": "failed", "input": str(item.location), "error": str(error)}
    return {**entry, "status": "done"}


def predict_archive(
    model: VideoSegmentationModel | str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    fps: float = 25.0,
    split: str | None = None,
    progress: bool = True,
    full_frame: bool = False,
    export: Sequence[str] = (),
    burned_in: BurnedInPolicy = DEFAULT_POLICY,
    settings: SegmenterSettings | None = None,
    overlap: bool = True,
    **options: Any,
) -> Path:
    """Segment every video of a folder or manifest into ``out_dir`` (resumable, sharded).

    Arguments as :func:`~flanet.inference.predict_to_folder`; an existing ``out_dir`` written by
    ``flanet predict`` is resumed unless ``force``.

    Returns:
        The output folder (``index.csv`` and ``summary.json`` are written by rank 0).

    Raises:
        ArchiveError: some videos failed (after the index is written).
        FileExistsError / ValueError: a foreign output folder, or one that overlaps the input, or settings
            the segmenter refuses (before any output exists).
    """
    start = time.perf_counter()
    rank, world, local_rank = _distributed()
    settings = dataclasses.replace(settings or SegmenterSettings(), **options)
    if settings.device is None and torch.cuda.is_available() and world > 1 and settings.backend != "openvino":
        settings = dataclasses.replace(settings, device=f"cuda:{local_rank % torch.cuda.device_count()}")  # OpenVINO: CPU
    checkpoint = str(Path(model).resolve()) if isinstance(model, (str, Path)) else None
    checkpoint_sha256 = file_sha256(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else None
    # rank 0 refuses bad settings before anything else; an exported backend exports once, here
    segmenter = VideoSegmenter.create(model, settings) if rank == 0 else None
    input_path, out = Path(input_path), Path(out_dir)
    items = archive_items(input_path, fps=fps, split=split)
    group = world > 1 and _init_group()
    try:
        if rank == 0:
            _open_output(out, [input_path, checkpoint, *(item.location for item in items)], force)
        if group:
            torch.distributed.barrier()
        segmenter = segmenter or VideoSegmenter.create(model, settings)
        run = {**run_settings(segmenter, checkpoint), "checkpoint_sha256": checkpoint_sha256, "full_frame": full_frame,
               "export": sorted(export) or None, **burned_in.settings}
        records = _run_share(items[rank::world], segmenter, out, progress, run,
                             f"videos (rank {rank}/{world})" if world > 1 else "videos", overlap)
        if group:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, records)
            records = [r for part in gathered for r in part]
    finally:
        if group:
            torch.distributed.destroy_process_group()
    failed = [r for r in records if r["status"] == "failed"]
    if rank == 0:
        order = {item.id: n for n, item in enumerate(items)}
        records.sort(key=lambda r: order[r["video"]])
        _write_index(out, records, {**run_settings(segmenter, checkpoint), "device": str(settings.device or "auto"),
                                    "input": str(input_path), "ranks": world}, time.perf_counter() - start)
        release_output_folder(out)
    if failed and rank == 0:
        raise ArchiveError(f"{len(failed)} of {len(records)} videos failed, first: {failed[0]['error']} "
                           f"({out / 'index.csv'})")
    return out


def _init_group() -> bool:
    """Join torchrun's process group over gloo (CPU barrier and gather only; no tensors move)."""
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return True


def _open_output(out: Path, inputs: list[Path | str | None], force: bool) -> None:
    """A new output folder, or an existing archive to resume (never a folder of the user's).

    ``inputs``: the folder or manifest, the checkpoint and every video's file or frame folder (a
    manifest row may point anywhere, inside ``out`` too).
    """
    resuming = not force and out.is_dir() and any(out.iterdir())
    prepare_output_folder(out, "predict", inputs=inputs, force=force, reuse=not force)
    if not resuming:
        return
    log.info("%s: resuming (finished videos are kept; --force starts again)", out)


def _run_share(items: list[ArchiveItem], segmenter: VideoSegmenter, out: Path, progress: bool, settings: dict,
               label: str, overlap: bool = True) -> list[dict]:
    """Segment this rank's videos; finished ones are read back, not redone."""
    records = []
    for item in tqdm(items, desc=label, unit="video", disable=not progress):
        done = out / item.id / "summary.json"
        if done.is_file():
            entry = _read_summary(done)
            wanted = {**settings, "input_fingerprint": input_fingerprint(item.location)}
            changed = [k for k in RESUME_KEYS if k != "input_fingerprint" and entry.get(k) != wanted[k]]
            if entry and changed:
                raise ValueError(f"{done}: segmented with other settings ({', '.join(changed)}: "
                                 f"{[entry.get(k) for k in changed]}); use --force or another --out")
            if not entry:
                log.warning("%s: unreadable: segmenting the video again", done)
            elif entry.get("input_fingerprint") != wanted["input_fingerprint"]:
                log.warning("%s: the input changed since it was segmented (size, time or content): segmenting it again",
                            item.location)
            elif not _complete(out / item.id, entry):
                log.warning("%s: frames.csv does not hold the %s frames its summary.json counts (damaged by another "
                            "writer?): segmenting it again", out / item.id, entry.get("frames"))
            else:
                records.append({**{k: entry.get(k) for k in INDEX_COLUMNS}, "status": "done", "resumed": True})
                continue
        start = time.perf_counter()
        records.append({**_segment(item, segmenter, out, settings, progress, overlap),
                        "wall_s": time.perf_counter() - start})
    return records


def _read_summary(path: Path) -> dict:
    """A finished video's ``summary.json``; an unreadable one counts as not finished (empty)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entry if isinstance(entry, dict) else {}


def _write_index(out: Path, records: list[dict], settings: dict, seconds: float) -> None:
    """``index.csv`` (one row per video) and the archive's ``summary.json``, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=INDEX_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(escape_row({k: ("" if record.get(k) is None else record.get(k)) for k in INDEX_COLUMNS}))
    atomic_write_text(out / "index.csv", buffer.getvalue())
    done = [r for r in records if r["status"] == "done"]
    new = [r for r in done if not r.get("resumed")]
    frames_new = sum(int(r["frames"]) for r in new)
    summary = {
        **settings, "videos_total": len(records), "videos_done": len(done),
        "videos_resumed": len(done) - len(new), "videos_failed": len(records) - len(done),
        "frames": sum(int(r["frames"]) for r in done),
        "frames_with_lesion": sum(int(r["frames_with_lesion"]) for r in done),
        "largest_area_px": max((int(r["largest_area_px"]) for r in done), default=0),
        "frames_this_run": frames_new,
        "seconds_this_run": seconds,
        "fps_achieved": frames_new / seconds if frames_new and seconds > 0 else None,
        "videos": records,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
