"""Figures of the demo report (matplotlib, Agg backend) and the GIF of the overlay video."""

from __future__ import annotations

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

COLOURS = {"FLA-Net": "#d62728", "UNet": "#1f77b4"}  # by display name; others grey
GT_RGB = (0, 200, 0)
PRED_RGB = (255, 40, 40)


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
    return COLOURS.get(label, "#555555")


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, float | None]]], out: Path) -> Path:
    """Training mask loss (BCE + IoU, the terms both models share) and validation Dice per epoch.

    Args:
        histories: model name -> rows of its run's ``metrics.csv`` (parsed).
        out: PNG path.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, rows in histories.items():
        epochs = [int(r["epoch"]) + 1 for r in rows if r.get("train_bce") is not None]
        mask_loss = [r["train_bce"] + r["train_iou"] for r in rows if r.get("train_bce") is not None]
        left.plot(epochs, mask_loss, marker="o", markersize=3, color=_colour(label), label=label)
        val = [(int(r["epoch"]) + 1, r["val_dice"]) for r in rows if r.get("val_dice") is not None]
        right.plot([v[0] for v in val], [v[1] for v in val], marker="o", markersize=3, color=_colour(label), label=label)
    left.set(xlabel="epoch", ylabel="BCE + IoU loss", title="training loss (mask terms)")
    right.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
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


def plot_cases(cases: Sequence[CaseFrame], out: Path) -> Path:
    """One row per case: frame + truth, each model's prediction (contours), the temporal heatmap."""
    labels = list(cases[0].probs) if cases else []
    columns = 1 + len(labels) + 1
    figure, axes = plt.subplots(len(cases), columns, figsize=(2.3 * columns + 1.6, 2.35 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        row[0].imshow(_contours(case.rgb, [(case.gt, GT_RGB)]))
        row[0].set_title("frame + truth (green)", fontsize=8)
        for axis, label in zip(row[1:], labels):
            axis.imshow(_contours(case.rgb, [(case.gt, GT_RGB), (case.probs[label] > 0.5, PRED_RGB)]))
            axis.set_title(f"{label} (red)", fontsize=8)
        heat = row[-1]
        heat.imshow(case.rgb)
        if case.heatmap is not None:
            heat.imshow(np.clip(case.heatmap, 0, 1), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            heat.set_title(f"{labels[0]} heatmap", fontsize=8)
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
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return gif
