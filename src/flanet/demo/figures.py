"""Figures of the demo report (matplotlib, Agg backend) and the GIF of the overlay video."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from flanet.colours import HEATMAP_RGB, MODEL_COLOURS, OTHER_MODEL_COLOUR, PREDICTION_RGB, TRUTH_RGB  # noqa: E402
from flanet.fileio import atomic_path  # noqa: E402


@dataclass(frozen=True)
class CaseFrame:
    """One frame shown in the cases figure.

    Attributes:
        title: row title (why it was picked, video/frame, frame kind, Dice of both models).
        rgb: the frame, (H, W, 3) uint8.
        gt: ground truth, (H, W) bool.
        probs: per model label, lesion probability (H, W) float in [0, 1].
        heatmap: the temporal model's localisation heatmap (H, W) float, or None.
    """

    title: str
    rgb: np.ndarray
    gt: np.ndarray
    probs: dict[str, np.ndarray]
    heatmap: np.ndarray | None


def _colour(label: str) -> str:
    return MODEL_COLOURS.get(label, OTHER_MODEL_COLOUR)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return path


def read_step_losses(run_dir: Path) -> list[dict[str, float]]:
    """Per-step training mask loss of a run: ``{"step", "mask_loss"}`` rows from Lightning's CSV log.

    ``logs/csv/metrics.csv`` holds the terms logged every ``trainer.log_every_n_steps`` steps;
    ``mask_loss`` is ``bce + iou``, the terms every model shares. Empty when the log is missing.
    """
    path = Path(run_dir) / "logs" / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/bce") and r.get("train/iou")]
    return [{"step": float(r["step"]), "mask_loss": float(r["train/bce"]) + float(r["train/iou"])} for r in rows]


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float | None]]],
    step_losses: Mapping[str, Sequence[Mapping[str, float]]],
    out: Path,
) -> Path:
    """Training mask loss (BCE + IoU, the terms both models share) and validation Dice, per step.

    Args:
        histories: model name -> rows of its run's ``metrics.csv`` (parsed; one per epoch, ``step``
            is the optimisation step at the epoch's end, where validation ran).
        step_losses: model name -> :func:`read_step_losses` rows (every few steps).
        out: PNG path.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, rows in histories.items():
        steps = [r["step"] for r in step_losses.get(label, ())]
        left.plot(steps, [r["mask_loss"] for r in step_losses.get(label, ())], color=_colour(label), alpha=0.35, lw=0.8)
        if len(steps) >= 5:  # moving mean over 5 logged points
            kernel = np.ones(5) / 5
            smooth = np.convolve([r["mask_loss"] for r in step_losses[label]], kernel, mode="valid")
            left.plot(steps[2:-2], smooth, color=_colour(label), lw=1.6, label=label)
        epoch_rows = [r for r in rows if r.get("train_bce") is not None]
        left.plot([r["step"] for r in epoch_rows], [r["train_bce"] + r["train_iou"] for r in epoch_rows], "o",
                  markersize=3, color=_colour(label), label=f"{label} (epoch mean)")
        val = [(r["step"], r["val_dice"]) for r in rows if r.get("val_dice") is not None]
        right.plot([v[0] for v in val], [v[1] for v in val], marker="o", markersize=3, color=_colour(label), label=label)
    left.set(xlabel="optimisation step", ylabel="BCE + IoU loss", title="training loss (mask terms)")
    right.set(xlabel="optimisation step", ylabel="Dice", title="validation Dice (after each epoch)", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=8)
    return _save(figure, out)


def plot_per_video_dice(
    videos: Sequence[str], dice: Mapping[str, Sequence[float]], hard_frames: Sequence[int], out: Path
) -> Path:
    """Grouped bars of mean Dice per test video for every model; hard-frame counts under the names."""
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(videos) + 2), 3.8))
    x = np.arange(len(videos))
    width = 0.8 / max(1, len(dice))
    for k, (label, values) in enumerate(dice.items()):
        axis.bar(x + (k - (len(dice) - 1) / 2) * width, values, width, color=_colour(label), label=label)
    axis.set_xticks(x, [f"{v}\n{h} hard" for v, h in zip(videos, hard_frames)], fontsize=7)
    axis.set(ylabel="mean Dice", ylim=(0, 1.12), title="Dice per test video")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper center", ncols=len(dice), fontsize=8)
    return _save(figure, out)


def plot_frame_kind_dice(groups: Mapping[str, Mapping[str, Any]], labels: tuple[str, str], out: Path) -> Path:
    """Mean Dice of both models per frame group (all, normal, hard, each hard kind) with 95% intervals.

    Args:
        groups: output of :func:`flanet.demo.compare.compare_by_frame_kind`.
        labels: (temporal model label, image model label).
        out: PNG path.
    """
    names = list(groups)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 1.5), 3.8))
    x = np.arange(len(names))
    for k, (key, label) in enumerate((("video_model", labels[0]), ("image_model", labels[1]))):
        values = np.array([groups[n][key] for n in names])
        ci = np.array([groups[n][f"{key}_ci"] for n in names])
        errors = np.stack([values - ci[:, 0], ci[:, 1] - values]).clip(min=0)
        axis.bar(x + (k - 0.5) * 0.4, values, 0.4, yerr=errors, capsize=3, color=_colour(label), label=label)
    axis.set_xticks(x, [f"{n}\n({groups[n]['frames']} frames)" for n in names], fontsize=8)
    axis.set(ylabel="mean Dice", ylim=(0, 1.12), title="Dice by frame kind (95% bootstrap intervals over videos)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper center", ncols=2, fontsize=8)
    return _save(figure, out)


def _contours(rgb: np.ndarray, masks: Sequence[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    canvas = rgb.copy()
    thickness = max(1, round(min(rgb.shape[:2]) / 128))
    for mask, colour in masks:
        found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, found, -1, colour, thickness)
    return canvas


def heatmap_rgba(heatmap: np.ndarray, opacity: float = 0.75) -> np.ndarray:
    """(H, W, 4) float image: the heatmap colour (yellow) with opacity ``opacity * clip(h, 0, 1)``."""
    rgba = np.empty((*heatmap.shape, 4), np.float32)
    rgba[..., :3] = np.asarray(HEATMAP_RGB, np.float32) / 255
    rgba[..., 3] = opacity * np.clip(heatmap, 0, 1)
    return rgba


def plot_cases(cases: Sequence[CaseFrame], out: Path) -> Path:
    """One row per case: frame + truth, each model's prediction (contours), the temporal heatmap."""
    labels = list(cases[0].probs) if cases else []
    columns = 1 + len(labels) + 1
    figure, axes = plt.subplots(len(cases), columns, figsize=(2.3 * columns + 1.6, 2.35 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        row[0].imshow(_contours(case.rgb, [(case.gt, TRUTH_RGB)]))
        row[0].set_title("frame + truth (green)", fontsize=8)
        for axis, label in zip(row[1:], labels):
            axis.imshow(_contours(case.rgb, [(case.gt, TRUTH_RGB), (case.probs[label] > 0.5, PREDICTION_RGB)]))
            axis.set_title(f"{label} (red)", fontsize=8)
        heat = row[-1]
        heat.imshow(case.rgb)
        if case.heatmap is not None:
            heat.imshow(heatmap_rgba(case.heatmap))
            heat.set_title(f"{labels[0]} heatmap (yellow)", fontsize=8)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
        row[0].set_ylabel(case.title, fontsize=7.5, rotation=0, ha="right", va="center", labelpad=6)
    return _save(figure, out)


def overlay_video_to_gif(video: Path, gif: Path, min_side: int = 256, fps: float = 8.0) -> Path:
    """Re-encode an overlay video as an animated GIF (plays in every browser, unlike mp4v)."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        scale = max(1.0, min_side / min(bgr.shape[:2]))
        if scale > 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        frames.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    capture.release()
    if not frames:
        raise OSError(f"{video}: no frame could be decoded for the GIF")
    with atomic_path(gif) as tmp:
        frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return gif
