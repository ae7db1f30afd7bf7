"""Did temporal context help? Paired FLA-Net vs image-baseline Dice, by frame kind, with intervals.

Both models are scored on the same test frames, so the comparison is *paired*: for every frame
we take ``dice_video_model - dice_image_model``; the data-set difference is the mean over frames.
Its 95% interval is a cluster bootstrap over videos (:mod:`flanet.metrics.bootstrap`): a resample
draws videos with replacement and keeps all of their frames, for both models at once. For a group
of frames (e.g. the hard ones), resamples that drew none of the group's videos are left out.

Frames are also split by the synthetic generator's ``frame_info.csv`` into ``normal`` frames and
``hard`` ones (motion blur, almost iso-echoic lesion, probe-contact dropout), where the lesion is
hard to see in the frame alone but visible in the frames before it: this is where temporal context
should pay off.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flanet.metrics.bootstrap import DEFAULT_LEVEL, percentile_interval, resample_counts

NORMAL = "normal"
HARD = "hard"


@dataclass(frozen=True)
class PairedDice:
    """Mean Dice of both models on one group of frames, and their difference, with 95% intervals.

    Attributes:
        frames: frames in the group; videos: videos contributing at least one frame.
        video_model / image_model: mean Dice of each model; ``*_ci`` their intervals.
        difference: ``video_model - image_model``; ``difference_ci`` its paired interval.
    """

    frames: int
    videos: int
    video_model: float
    video_model_ci: tuple[float, float]
    image_model: float
    image_model_ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (intervals as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def read_frame_kinds(frame_info_csv: Path) -> dict[tuple[str, str], str]:
    """``(video, frame stem) -> hard kind`` (``"none"`` for normal frames) from the generator's CSV."""
    with frame_info_csv.open(newline="", encoding="utf-8") as handle:
        return {(row["video"], Path(row["frame"]).stem): row["hard"] for row in csv.DictReader(handle)}


def aligned_dice(
    video_rows: Sequence[dict[str, Any]], image_rows: Sequence[dict[str, Any]]
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Pair the per-frame rows of two evaluations by ``(video, frame)``.

    Returns:
        ``(videos, frames, dice_video_model (N,), dice_image_model (N,))`` in the video model's order.

    Raises:
        ValueError: when the two evaluations did not score the same frames.
    """
    image_dice = {(row["video"], row["frame"]): float(row["dice"]) for row in image_rows}
    keys = [(row["video"], row["frame"]) for row in video_rows]
    if set(keys) != set(image_dice) or len(keys) != len(image_dice):
        raise ValueError("the two evaluations scored different frames; cannot pair them")
    video_dice = np.array([float(row["dice"]) for row in video_rows])
    return [k[0] for k in keys], [k[1] for k in keys], video_dice, np.array([image_dice[k] for k in keys])


def paired_dice(
    videos: Sequence[str],
    video_dice: np.ndarray,
    image_dice: np.ndarray,
    selected: np.ndarray | None = None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> PairedDice | None:
    """Mean Dice of both models and their paired difference on the ``selected`` frames.

    Args:
        videos: (N,) video id of every frame.
        video_dice / image_dice: (N,) per-frame Dice of the temporal model and the image baseline.
        selected: (N,) bool mask of the frames in the group; all frames when None.
        resamples: bootstrap resamples (over videos).
        seed: bootstrap seed.
        level: confidence level.

    Returns:
        The group's scores, or None when no frame is selected.
    """
    selected = np.ones(len(videos), bool) if selected is None else np.asarray(selected, bool)
    if not selected.any():
        return None
    ids, inverse = np.unique(np.asarray(videos, dtype=str), return_inverse=True)
    inverse = inverse.reshape(-1)
    weights_per_frame = selected.astype(float)
    counts = np.bincount(inverse, weights_per_frame, minlength=len(ids))  # (V,) selected frames per video
    sums = np.stack([np.bincount(inverse, weights_per_frame * d, minlength=len(ids)) for d in (video_dice, image_dice)], 1)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        frames = weights @ counts  # (B,); 0 when a resample holds no selected frame
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (weights @ sums) / frames[..., None]  # (B, 2), NaN for empty resamples
        return {"video": means[..., 0], "image": means[..., 1], "difference": means[..., 0] - means[..., 1]}

    point = {k: float(v) for k, v in statistic(np.ones(len(ids))).items()}
    samples = statistic(resample_counts(len(ids), resamples, seed))
    # Resamples that drew none of the group's videos say nothing about the group: left out.
    intervals = {k: percentile_interval(v[np.isfinite(v)], level) for k, v in samples.items()}
    return PairedDice(
        frames=int(selected.sum()),
        videos=int((counts > 0).sum()),
        video_model=point["video"],
        video_model_ci=intervals["video"],
        image_model=point["image"],
        image_model_ci=intervals["image"],
        difference=point["difference"],
        difference_ci=intervals["difference"],
    )


def compare_by_frame_kind(
    video_rows: Sequence[dict[str, Any]],
    image_rows: Sequence[dict[str, Any]],
    kinds: dict[tuple[str, str], str],
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Paired Dice on all frames, normal frames, hard frames and each hard kind.

    Returns:
        ``{"all": ..., "normal": ..., "hard": ..., "<kind>": ...}`` of :meth:`PairedDice.as_dict`
        (groups without frames are left out).
    """
    videos, frames, video_dice, image_dice = aligned_dice(video_rows, image_rows)
    kind = np.array([kinds.get((v, f), "none") for v, f in zip(videos, frames)])
    groups = {"all": None, NORMAL: kind == "none", HARD: kind != "none"}
    groups.update({str(name): kind == name for name in sorted(set(kind.tolist()) - {"none"})})
    out = {}
    for name, selected in groups.items():
        scores = paired_dice(videos, video_dice, image_dice, selected, resamples, seed)
        if scores is not None:
            out[name] = scores.as_dict()
    return out
