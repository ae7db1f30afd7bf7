"""Prediction folders: naming, checking and reading ``<pred>/<video id>/<frame stem>.png``.

A prediction is an 8-bit grey PNG holding the lesion probability x 255 (binary 0/255 masks are
fine too), at the size of the ground-truth mask, named after the frame file's stem (``000123.png``
for frames decoded from a video file). The folders written by ``flanet predict``
(``<pred>/<video id>/masks/<frame>.png``) are accepted as well, and so are those written by
``flanet evaluate --save-pred``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from flanet.data import Video, read_mask
from flanet.data.images import binarise_mask, is_palette_png, read_bytes, read_mask_values
from flanet.data.rle import EncodedMask
from flanet.evaluation.detection import annotated_boxes, box_masks

PREDICTION_SUFFIX = ".png"
CHUNK_FRAMES = 16


def frame_name(video: Video, index: int) -> str:
    """Name (without suffix) of the prediction of frame ``index``: :func:`flanet.data.videoset.frame_name`."""
    return video.frame_name(index)


def scored_indices(video: Video, boxes: bool = False) -> list[int]:
    """Indices of the frames that are scored: those with a ground-truth mask; with ``boxes`` (detection
    only, a box-only set) those with a lesion box or annotated lesion-free."""
    if not boxes:
        return [i for i, mask in enumerate(video.masks) if mask is not None]
    box = video.bboxes or [None] * len(video.masks)
    return [i for i in range(len(video.masks)) if video.known_mask(i) or box[i] is not None]


def prediction_folder(pred_dir: Path, video: Video) -> Path:
    """``<pred>/<video>/masks`` when it exists (``flanet predict`` output), else ``<pred>/<video>``."""
    nested = pred_dir / video.id / "masks"
    return nested if nested.is_dir() else pred_dir / video.id


def image_size(path: Path | EncodedMask) -> tuple[int, int]:
    """(H, W) of an image, read from the PNG header when possible (no full decode), or of a held mask."""
    if isinstance(path, EncodedMask):
        return path.height, path.width
    with path.open("rb") as handle:
        head = handle.read(24)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    return tuple(read_mask(path).shape)  # type: ignore[return-value]


@dataclass
class PredictionCheck:
    """Problems of a prediction folder, each naming the file.

    Attributes:
        missing: expected prediction files that do not exist.
        wrong_size: ``(file, (H, W) found, (H, W) of the ground truth)``.
        extra: files (or video folders) that match no frame of the evaluated videos; ignored.
        outside_split: video folders of the data set that are not in the evaluated split; ignored.
    """

    missing: list[Path] = field(default_factory=list)
    wrong_size: list[tuple[Path, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    extra: list[Path] = field(default_factory=list)
    outside_split: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every scored frame has a prediction of the right size."""
        return not self.missing and not self.wrong_size

    def report(self, limit: int | None = 20) -> str:
        """Human-readable listing (at most ``limit`` names per kind; None lists all)."""
        def names(items: list, render) -> list[str]:
            shown = items if limit is None else items[:limit]
            more = [] if limit is None or len(items) <= limit else [f"  ... and {len(items) - limit} more"]
            return [f"  {render(item)}" for item in shown] + more

        lines: list[str] = []
        if self.missing:
            lines += [f"{len(self.missing)} prediction file(s) missing:"] + names(self.missing, str)
        if self.wrong_size:
            lines += [f"{len(self.wrong_size)} prediction file(s) of the wrong size:"] + names(
                self.wrong_size, lambda x: f"{x[0]}: {x[1][0]}x{x[1][1]} (HxW), ground truth is {x[2][0]}x{x[2][1]}"
            )
        if self.extra:
            lines += [f"{len(self.extra)} extra file(s) matching no scored frame (ignored):"] + names(self.extra, str)
        if self.outside_split:
            lines.append(f"{len(self.outside_split)} video folder(s) outside the evaluated split (ignored)")
        return "\n".join(lines)


def truth_size(video: Video, index: int) -> tuple[int, int]:
    """(H, W) a prediction of frame ``index`` must have: its mask's, else (a box-only frame) the frame's."""
    mask = video.masks[index]
    if mask is not None:
        return image_size(mask)
    if video.video_file is not None:
        return tuple(video.read_frame(index).shape[:2])  # type: ignore[return-value]
    return image_size(video.frames[index])


def check_predictions(pred_dir: Path, videos: list[Video], all_video_ids: set[str], boxes: bool = False) -> PredictionCheck:
    """Compare a prediction folder with the frames to score, by file name and image size.

    Args:
        pred_dir: the prediction folder.
        videos: the evaluated videos.
        all_video_ids: ids of every video of the data set (to tell other splits from stray files).
        boxes: the scored frames are those of :func:`scored_indices` with ``boxes`` (detection only).
    """
    check = PredictionCheck()
    for video in videos:
        folder = prediction_folder(pred_dir, video)
        names = {frame_name(video, i) for i in range(video.num_frames)}
        for index in scored_indices(video, boxes):
            path = folder / f"{frame_name(video, index)}{PREDICTION_SUFFIX}"
            if not path.is_file():
                check.missing.append(path)
                continue
            found, wanted = image_size(path), truth_size(video, index)
            if found != wanted:
                check.wrong_size.append((path, found, wanted))
        if folder.is_dir():
            check.extra += [
                path for path in sorted(folder.iterdir())
                if not (path.is_file() and path.suffix == PREDICTION_SUFFIX and path.stem in names)
                and not (path.is_dir() and path.name == "masks")
            ]
    evaluated = {video.id for video in videos}
    outside: set[str] = set()
    for path in sorted(pred_dir.rglob(f"*{PREDICTION_SUFFIX}")):
        owners = [parent.as_posix() for parent in path.relative_to(pred_dir).parents]
        if any(owner in evaluated for owner in owners):
            continue  # inside an evaluated video's folder: checked above
        other = [owner for owner in owners if owner in all_video_ids]
        if other:
            outside.add(other[0])
        else:
            check.extra.append(path)
    check.outside_split = sorted(outside)
    return check


def prediction_values(values: np.ndarray, palette: bool = False) -> np.ndarray:
    """Probabilities x 255 as uint8 from a prediction image's values, read as :func:`flanet.data.read_mask` reads masks.

    ``values`` come from :func:`flanet.data.images.read_mask_values` (palette index for palette
    PNGs, the largest colour channel otherwise, so a red or white mask on black counts as the
    lesion). A palette image is a mask (index above half the largest: 255). A {0, 1} image of
    any depth is a binary mask (1 -> 255); a 16-bit image whose values stay within 0..255 holds
    8-bit values (a 0/255 mask saved 16-bit); any other 16-bit image is scaled from 0..65535;
    floating-point values are probabilities in 0..1.
    """
    if palette:
        return binarise_mask(values).astype(np.uint8) * np.uint8(255)
    top = float(values.max()) if values.size else 0.0
    if top == 1 and np.isin(values, (0, 1)).all():  # {0, 1}: a binary mask, not probabilities of at most 1/255
        return (values > 0).astype(np.uint8) * np.uint8(255)
    if np.issubdtype(values.dtype, np.floating):
        return (np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if values.dtype == np.uint8 or top <= 255:
        return values.astype(np.uint8)
    return ((values.astype(np.float64) * (255.0 / 65535.0)) + 0.5).astype(np.uint8)


def read_prediction(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a prediction image as uint8 (H, W) probabilities x 255; resized (bilinear) to ``size`` (H, W) when given.

    8-bit grey values are ``round(255 p)``; 16-bit, RGB(A) and palette images are read as
    :func:`flanet.data.read_mask` reads masks (see :func:`prediction_values`), so a 16-bit 0/255 or
    0/1, a coloured or a palette mask scores what it shows (issue 22: they scored Dice 0).

    Raises:
        DataError: naming the file, when it is missing, empty, truncated or not an image.
    """
    data = read_bytes(path)
    grey = prediction_values(read_mask_values(path, data), palette=is_palette_png(data))
    if size is not None and grey.shape != size:
        grey = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return grey


def iter_prediction_folder(
    pred_dir: Path, videos: list[Video], resize: bool = False, boxes: bool = False,
) -> Iterator[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """Yield ``(video id, frame names, prob uint8 (N, H, W), gt bool (N, H, W))`` chunks in frame order.

    Args:
        pred_dir: prediction folder (checked with :func:`check_predictions` first).
        videos: the evaluated videos.
        resize: resize predictions to the ground-truth size (like the VPS toolbox) instead of failing.
        boxes: detection only (a box-only set): the frames with a box or annotated lesion-free, and
            ``gt`` is each frame's box, filled (:func:`flanet.evaluation.detection.box_masks`).
    """
    for video in videos:
        folder = prediction_folder(pred_dir, video)
        names: list[str] = []
        probs: list[np.ndarray] = []
        gts: list[np.ndarray] = []
        for index in scored_indices(video, boxes):
            if boxes:
                gt = box_masks(annotated_boxes(video, [index]), *truth_size(video, index))[0]
            else:
                gt = read_mask(video.masks[index])  # type: ignore[arg-type]
            path = folder / f"{frame_name(video, index)}{PREDICTION_SUFFIX}"
            prob = read_prediction(path, gt.shape if resize else None)
            if prob.shape != gt.shape:
                raise ValueError(f"{path}: prediction is {prob.shape}, ground truth {video.masks[index]} is {gt.shape}")
            if probs and (prob.shape != probs[0].shape or len(probs) == CHUNK_FRAMES):
                yield video.id, names, np.stack(probs), np.stack(gts)
                names, probs, gts = [], [], []
            names.append(frame_name(video, index))
            probs.append(prob)
            gts.append(gt)
        if probs:
            yield video.id, names, np.stack(probs), np.stack(gts)
