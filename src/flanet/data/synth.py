"""Synthetic breast-ultrasound video sets in the authors' layout (``flanet data synth``).

Writes ``img_list/<video>/<frame>.jpg``, ``mask_list/<video>/<frame>.png`` (0/255),
``bbox.json`` (boxes from the masks), ``train_list.csv``/``val_list.csv``/``test_list.csv``
(4:2:4 by video, stratified by pathology), ``video_labels.csv`` (pathology benign/malignant,
aln_metastasis present/absent), ``frame_info.csv`` (which frames are hard, and why) and
``contact_sheet.png`` (frames with mask contours). The images come from
:mod:`flanet.data.synth_render`. Same seed, same files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from flanet import colours
from flanet.csvcells import escape_rows
from flanet.data.bboxes import mask_bbox
from flanet.data.errors import DataError
from flanet.data.splits import make_splits, write_split_lists
from flanet.data.synth_render import plan_video, render_frame
from flanet.fileio import atomic_open, atomic_write_text
from flanet.limits import MAX_SYNTH_SIZE

CONTACT_SHEET = "contact_sheet.png"


def video_name(index: int) -> str:
    """Id of the synthetic video ``index``."""
    return f"video{index:03d}"


def _contact_sheet(rows: list[list[tuple[np.ndarray, np.ndarray, str]]], path: Path) -> None:
    """Grid of frames (one row per video): the ground-truth contour in :data:`flanet.colours.TRUTH_RGB`, hard-frame tags in white."""
    tiles = []
    for row in rows:
        drawn = []
        for gray, mask, tag in row:
            tile = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(tile, contours, -1, colours.bgr(colours.TRUTH_RGB), 1)
            if tag:
                cv2.putText(tile, tag, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            drawn.append(cv2.copyMakeBorder(tile, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(60, 60, 60)))
        tiles.append(np.concatenate(drawn, axis=1))
    width = max(tile.shape[1] for tile in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, 0, 0, width - t.shape[1], cv2.BORDER_CONSTANT) for t in tiles]
    cv2.imwrite(str(path), np.concatenate(tiles, axis=0))


def generate_dataset(
    out: str | Path,
    videos: int = 6,
    frames: int = 12,
    size: int = 128,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic breast-ultrasound video set in the authors' layout.

    Args:
        out: output folder; must be missing or empty unless ``force``.
        videos: number of videos (>= 1; >= 3 gives non-empty train/val/test lists).
        frames: frames per video (>= 1).
        size: square frame side in pixels (32 to :data:`flanet.limits.MAX_SYNTH_SIZE`).
        seed: random seed; the same seed writes identical files.
        force: allow writing into a non-empty folder (existing files are overwritten).
        progress: show a tqdm progress bar.

    Returns:
        The output folder.

    Raises:
        DataError: for a non-empty ``out`` without ``force`` or invalid sizes.
    """
    out = Path(out)
    if videos < 1 or frames < 1 or not 32 <= size <= MAX_SYNTH_SIZE:
        raise DataError(f"need videos >= 1, frames >= 1 and 32 <= size <= {MAX_SYNTH_SIZE} "
                        f"(got {videos}, {frames}, {size}) (--videos, --frames, --size)")
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError("output folder is not empty (use --force to write into it)", out)
    boxes: dict[str, dict[str, list[float] | None]] = {}
    labels, frame_rows, sheet_rows = [], [], []
    shown = sorted({round(i * (frames - 1) / 7) for i in range(8)}) if frames > 8 else list(range(frames))
    for index in tqdm(range(videos), desc="synthetic videos", disable=not progress):
        name = video_name(index)
        rng = np.random.default_rng([seed, index])
        plan = plan_video(rng, frames, size)
        image_dir, mask_dir = out / "img_list" / name, out / "mask_list" / name
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        boxes[name], sheet_row = {}, []
        for frame in range(frames):
            gray, mask = render_frame(plan, frame, size, rng)
            stem = f"{frame:05d}"
            rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            cv2.imwrite(str(image_dir / f"{stem}.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(mask_dir / f"{stem}.png"), mask.astype(np.uint8) * 255)
            box = mask_bbox(mask)
            boxes[name][f"{stem}.jpg"] = list(box) if box else None
            frame_rows.append([name, f"{stem}.jpg", plan.hard[frame] or "none", int(mask.any())])
            if frame in shown:
                sheet_row.append((gray, mask, plan.hard[frame]))
        labels.append([name, "malignant" if plan.malignant else "benign", "present" if plan.aln else "absent"])
        if index < 8:
            sheet_rows.append(sheet_row)
    atomic_write_text(out / "bbox.json", json.dumps(boxes))
    with atomic_open(out / "video_labels.csv", newline="") as handle:
        csv.writer(handle).writerows(escape_rows([["video", "pathology", "aln_metastasis"], *labels]))
    with atomic_open(out / "frame_info.csv", newline="") as handle:
        csv.writer(handle).writerows(escape_rows([["video", "frame", "hard", "has_lesion"], *frame_rows]))
    splits = make_splits([row[0] for row in labels], (0.4, 0.2, 0.4), seed, {row[0]: row[1] for row in labels})
    write_split_lists(out, splits, force=True)
    _contact_sheet(sheet_rows, out / CONTACT_SHEET)
    return out
