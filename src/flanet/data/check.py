"""``flanet data check``: read every frame and mask of a data set and report every problem.

Problems (each tied to its file; see docs/data.md for the full list): unreadable, empty or
truncated images, masks and DICOM files (every DICOM frame is decoded), image/mask size mismatch,
missing masks, non-binary masks, videos shorter than a clip, split lists naming missing videos (or
one video in two splits), malformed ``bbox.json``, boxes that disagree with their mask or lie outside
the image, unreadable video files, malformed CVAT / COCO annotation files and shapes (reported on the
annotation file, naming the frame). Stray system files
are ignored with a note; grayscale, palette and 16-bit images are noted and read correctly.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flanet.data.bboxes import box_iou, mask_bbox
from flanet.data.dicom import dicom_problems
from flanet.data.errors import DataError, Problem
from flanet.data.images import binarise_mask, decode_unchanged, read_bytes, read_mask_values
from flanet.data.labels import label_value
from flanet.data.layouts import discover
from flanet.data.rle import EncodedMask
from flanet.data.splits import split_alias
from flanet.data.videoset import BBox, Video, VideoSet

MIN_BOX_IOU = 0.5
UNLABELLED_LAYOUTS: frozenset[str] = frozenset({"video-files", "dicom", "frame-folders", "mixed"})
SEVERITIES: tuple[str, ...] = ("error", "warning", "note")


@dataclass
class FrameResult:
    """What checking one frame found."""

    size: tuple[int, int] | None = None  # (W, H)
    kind: str = ""  # "grayscale", "16-bit", "palette", "" for 8-bit colour
    has_lesion: bool = False
    problems: list[Problem] = field(default_factory=list)


@dataclass
class CheckReport:
    """Summary and problems of a data set check."""

    root: Path
    layout: str | None = None
    videos: int = 0
    frames: int = 0
    masked_frames: int = 0
    lesion_frames: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    split_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: ``{label: {split: Counter(value)}}``, split ``"all"`` for the whole set; a blank cell counts as ``"missing"``.
    label_counts: dict[str, dict[str, Counter]] = field(default_factory=dict)
    #: Ids of the videos that have no label at all (when the set has labels).
    unlabelled: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def count(self, severity: str) -> int:
        """Number of problems of one severity."""
        return sum(problem.severity == severity for problem in self.problems)

    def usable(self, strict: bool = False) -> bool:
        """True without errors (and, when ``strict``, without warnings)."""
        return self.count("error") == 0 and (not strict or self.count("warning") == 0)

    def _format_labels(self) -> str:
        """``pathology: benign 5, malignant 3 (train: benign 2, malignant 1; test: ...)`` per label, then the unlabelled."""
        def counts(counter: Counter) -> str:
            return ", ".join(f"{value} {n}" for value, n in sorted(counter.items()))

        lines = []
        for name, by_split in self.label_counts.items():
            splits = "; ".join(f"{split}: {counts(counter)}" for split, counter in by_split.items() if split != "all")
            lines.append(f"{name}: {counts(by_split['all'])}" + (f" ({splits})" if splits else ""))
        if self.label_counts and self.unlabelled:
            listed = ", ".join(self.unlabelled[:8]) + (" ..." if len(self.unlabelled) > 8 else "")
            lines.append(f"{_count(len(self.unlabelled), 'video')} without labels: {listed}")
        return "\n              ".join(lines)

    def format(self) -> str:
        """Human-readable report: summary, then every problem (errors first)."""
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.image_sizes.most_common(6)) or "-"
        splits = ", ".join(f"{name} {_count(v, 'video')} / {_count(f, 'frame')}"
                           for name, (v, f) in self.split_sizes.items())
        labels = self._format_labels()
        lines = [
            f"data set      {self.root}",
            f"layout        {self.layout or 'not recognised'}",
            f"videos        {self.videos}",
            f"frames        {self.frames} ({self.masked_frames} with a mask, {self.lesion_frames} with a lesion)",
            f"image sizes   {sizes}",
            f"splits        {splits or 'none'}",
            f"labels        {labels or 'none'}",
            f"problems      {_count(self.count('error'), 'error')}, {_count(self.count('warning'), 'warning')}, "
            f"{_count(self.count('note'), 'note')}",
        ]
        order = {severity: rank for rank, severity in enumerate(SEVERITIES)}
        lines += [f"  {problem}" for problem in sorted(self.problems, key=lambda p: order[p.severity])]
        return "\n".join(lines)


def _image_kind(array: np.ndarray, data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3:
        return "palette"
    if array.dtype == np.uint16:
        return "16-bit"
    return "grayscale" if array.ndim == 2 or array.shape[2] == 1 else ""


def _box_problem(box: BBox, mask: np.ndarray, frame: Path, mask_path: Path | EncodedMask) -> Problem | None:
    """Disagreement between a ``bbox.json`` box and its mask, if any."""
    height, width = mask.shape
    mask_box = mask_bbox(mask)
    if box[2] > width + 1 or box[3] > height + 1:
        return Problem("error", frame, f"bbox.json box {box} lies outside the {width}x{height} image")
    if mask_box is None:
        return Problem("error", frame, f"bbox.json has a box {box} but the mask {mask_path.name} is empty")
    if (iou := box_iou(box, mask_box)) < MIN_BOX_IOU:
        return Problem("error", frame, f"bbox.json box {box} disagrees with the mask's box {mask_box} "
                                       f"(IoU {iou:.2f} < {MIN_BOX_IOU})")
    return None


def check_frame(video: Video, index: int, frame_size: tuple[int, int] | None = None) -> FrameResult:
    """Read frame ``index`` of ``video`` and its mask; report what is wrong with them.

    Args:
        video: the video.
        index: frame index.
        frame_size: ``(W, H)`` when known without reading the frame (video files).
    """
    result = FrameResult(size=frame_size)
    frame = video.video_file or video.frames[index]
    if video.video_file is None:
        try:
            data = read_bytes(frame)
            array = decode_unchanged(data, frame)
            result.size, result.kind = (array.shape[1], array.shape[0]), _image_kind(array, data)
        except DataError as error:
            result.problems.append(Problem("error", frame, f"unreadable image: {error.message}"))
    mask_path = video.masks[index]
    box = video.bboxes[index] if video.bboxes is not None else None
    if mask_path is None:
        if box is not None and result.size is not None and (box[2] > result.size[0] + 1 or box[3] > result.size[1] + 1):
            result.problems.append(Problem("error", frame, f"box {box} lies outside the "
                                                           f"{result.size[0]}x{result.size[1]} image"))
        result.has_lesion = box is not None
        return result
    if isinstance(mask_path, EncodedMask):  # held in an annotation file: problems are reported on that file
        mask, where, label = mask_path.decode(), mask_path.file, f"{mask_path.frame}: mask"
    else:
        try:
            values = read_mask_values(mask_path)
        except DataError as error:
            result.problems.append(Problem("error", mask_path, f"unreadable mask: {error.message}"))
            return result
        distinct = np.unique(values)
        if distinct.size > 2:
            result.problems.append(Problem("warning", mask_path, f"mask is not binary ({distinct.size} distinct "
                                                                 f"values, {distinct.min()}..{distinct.max()}); "
                                                                 "binarised at half its maximum"))
        mask, where, label = binarise_mask(values), mask_path, "mask"
    if result.size is not None and (mask.shape[1], mask.shape[0]) != result.size:
        size = f"{mask.shape[1]}x{mask.shape[0]}"
        result.problems.append(Problem("error", where, f"{label} is {size}, its frame {frame.name} is "
                                                       f"{result.size[0]}x{result.size[1]}"))
    result.has_lesion = bool(mask.any())
    if box is not None and (problem := _box_problem(box, mask, frame, mask_path)):
        result.problems.append(problem)
    elif box is None and video.bboxes is not None and result.has_lesion:
        result.problems.append(Problem("warning", frame, "no bbox.json box for a frame whose mask has a lesion "
                                                         "(the mask's box is used)"))
    return result


def _video_problems(video: Video, results: list[FrameResult], clip_len: int, labelled: bool) -> list[Problem]:
    folder = video.video_file or (video.frames[0].parent if video.frames else Path(video.id))
    problems = []
    if video.num_frames < clip_len:
        problems.append(Problem("error", folder, f"video {video.id!r} has {video.num_frames} frame(s); "
                                                 f"a clip needs {clip_len}"))
    box_only = set(video.box_only_frames())
    if 0 < video.num_masks < video.num_frames and video.video_file is None:
        problems += [Problem("warning", frame, "missing mask: frame used as context only" if i not in box_only
                             else "missing mask: its box trains the heatmap only (models with a localisation branch)")
                     for i, (frame, mask) in enumerate(zip(video.frames, video.masks)) if mask is None]
    elif video.num_masks == 0 and video.bboxes is not None:
        problems.append(Problem("note", folder, f"video {video.id!r} has {len(box_only)} lesion box(es) and no masks "
                                                "(box-only: its boxes train the heatmap of flanet, flanet-lb and "
                                                "flanet-ffa-lb; evaluate and the other models refuse it)"))
    elif video.num_masks == 0:
        problems.append(Problem("warning" if labelled else "note", folder,
                                f"video {video.id!r} has no masks: usable for inference only"))
    sizes = Counter(result.size for result in results if result.size)
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.items())
        problems.append(Problem("warning", folder, f"frames of different sizes: {listed}"))
    for kind, count in Counter(result.kind for result in results if result.kind).items():
        problems.append(Problem("note", folder, f"{count} {kind} frame(s), read as 8-bit RGB"))
    return problems


def _count(number: int, noun: str) -> str:
    """``"1 video"``, ``"3 videos"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _alias_names(splits: dict[str, list[str]]) -> dict[str, str]:
    """Display names of the splits: ``"Train (train)"`` for a folder split, no line for its alias.

    A layout's own split names (``Train``, ``TrainDataset``, ``CVC-ClinicDB-612-Valid``) get a
    ``train``/``val``/``test`` alias holding the same videos (:func:`flanet.data.splits.with_aliases`);
    the summary lists each split once. An alias absent from the result is not listed.
    """
    names = {split: split for split in splits}
    for alias in ("train", "val", "test"):
        sources = [split for split in splits if split != alias and split_alias(split) == alias]
        if alias in splits and sources and sorted(splits[alias]) == sorted(v for s in sources for v in splits[s]):
            del names[alias]
            names.update({split: f"{split} ({alias})" for split in sources})
    return names


def _split_problems(video_set: VideoSet) -> tuple[list[Problem], dict[str, tuple[int, int]]]:
    by_id = {video.id: video for video in video_set.videos}
    problems, sizes, seen = [], {}, {}
    names = _alias_names(video_set.splits)
    for split, ids in video_set.splits.items():
        source = video_set.split_files.get(split, video_set.root)
        problems += [Problem("error", source, f"split {split!r} names video {video_id!r}, which does not exist")
                     for video_id in ids if video_id not in by_id]
        for video_id in ids:
            if video_id in seen and seen[video_id] != split and split in video_set.split_files:
                problems.append(Problem("error", source, f"video {video_id!r} is in both {seen[video_id]!r} "
                                                         f"and {split!r}"))
            seen.setdefault(video_id, split)
        if split in names:
            sizes[names[split]] = (len(ids), sum(by_id[v].num_frames for v in ids if v in by_id))
        if not ids:
            problems.append(Problem("warning", source, f"split {split!r} is empty"))
    unassigned = [video.id for video in video_set.videos if video.id not in seen]
    if video_set.splits and unassigned:
        listed = ", ".join(unassigned[:8]) + (" ..." if len(unassigned) > 8 else "")
        problems.append(Problem("note", video_set.root, f"{len(unassigned)} video(s) in no split: {listed}"))
    return problems, sizes


def check_dataset(
    root: str | Path,
    clip_len: int = 3,
    labels_csv: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check a data set folder: summary plus every problem found (never stops at the first).

    Args:
        root: the data set folder (any layout :func:`flanet.data.discover` reads).
        clip_len: frames a clip needs; shorter videos are errors.
        labels_csv: video-labels CSV (default: found at the root).
        workers: reader threads (default: CPU count, at most 8).
        progress: show a tqdm progress bar.
    """
    report = CheckReport(Path(root))
    try:
        video_set = discover(root, labels_csv=labels_csv, list_unreadable=True)
    except DataError as error:
        report.problems.append(Problem("error", error.path or Path(root), error.message))
        return report
    report.layout, report.videos = video_set.layout, len(video_set.videos)
    report.problems += video_set.notes
    jobs = []
    for video in video_set.videos:
        size = None
        if video.video_file is not None:
            info = video.info
            size = (info.width, info.height)
            report.image_sizes[size] += video.num_frames
            if video.dicom is not None:
                report.problems += dicom_problems(video.video_file)
        jobs += [(video, index, size) for index in range(video.num_frames)
                 if video.video_file is None or video.masks[index] is not None]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(lambda job: check_frame(*job), jobs), total=len(jobs),
                            desc="checking frames", disable=not progress))
    per_video: dict[str, list[FrameResult]] = {}
    for (video, _, _), result in zip(jobs, results):
        per_video.setdefault(video.id, []).append(result)
        report.problems += result.problems
        report.lesion_frames += result.has_lesion
        if result.size is not None and video.video_file is None:
            report.image_sizes[result.size] += 1
    labelled = video_set.layout not in UNLABELLED_LAYOUTS
    for video in video_set.videos:
        report.problems += _video_problems(video, per_video.get(video.id, []), clip_len, labelled)
        report.frames += video.num_frames
        report.masked_frames += video.num_masks
    split_problems, report.split_sizes = _split_problems(video_set)
    report.problems += split_problems
    report.problems += _label_problems(video_set)
    report.label_counts, report.unlabelled = label_counts(video_set)
    return report


def label_counts(video_set: VideoSet) -> tuple[dict[str, dict[str, Counter]], list[str]]:
    """Counts of each label's values over the set (``"all"``) and per split, and the videos without any label.

    A video without a value for a label counts as ``"missing"``; no labels at all give ``({}, [])``.
    """
    names = sorted({name for values in video_set.labels.values() for name in values})
    if not names:
        return {}, []
    display = _alias_names(video_set.splits)
    groups = {"all": [video.id for video in video_set.videos]}
    groups.update({display[split]: ids for split, ids in video_set.splits.items() if split in display})
    counts: dict[str, dict[str, Counter]] = {name: {} for name in names}
    for group, ids in groups.items():
        for name in names:
            counts[name][group] = Counter(video_set.labels.get(video, {}).get(name, "").strip() or "missing"
                                          for video in ids)
    unlabelled = [video.id for video in video_set.videos
                  if not any(value.strip() for value in video_set.labels.get(video.id, {}).values())]
    return counts, unlabelled


def _label_problems(video_set: VideoSet) -> list[Problem]:
    """Labels of videos that do not exist (warning), and labels the diagnosis head cannot read as binary (note)."""
    ids = {video.id for video in video_set.videos}
    problems = [Problem("warning", video_set.root, f"labels name video {video_id!r}, which does not exist")
                for video_id in video_set.labels if video_id not in ids]
    names = sorted({name for values in video_set.labels.values() for name in values})
    for name in names:
        odd = sorted({value for values in video_set.labels.values() for value in [values.get(name, "")]
                      if not _is_binary(value)})
        if odd:
            problems.append(Problem("note", video_set.root, f"label {name!r} has values that are not binary "
                                                            f"({', '.join(odd[:4])}): per-label scores only, "
                                                            "no diagnosis head"))
    return problems


def _is_binary(value: str) -> bool:
    try:
        label_value(value)
    except ValueError:
        return False
    return True
