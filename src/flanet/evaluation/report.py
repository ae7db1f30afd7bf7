"""Writing an evaluation: metrics.json, per_video.csv, per_frame.csv, table.md and worst-frame overlays."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flanet import colours
from flanet.csvcells import escape_row
from flanet.evaluation.diagnosis import RELIABILITY_PLOT, diagnosis_rows, diagnosis_table, write_reliability_plot
from flanet.evaluation.scoring import EvaluationResult, ScoredFrame
from flanet.fileio import atomic_open, atomic_path, atomic_write_text
from flanet.metrics import names

# (metrics.json key, column header) of the paper's tables.
TABLE2_COLUMNS: tuple[tuple[str, str], ...] = tuple(zip(names.TABLE2, ("Dice ↑", "Jaccard ↑", "F1-score ↑", "MAE ↓")))
TABLE4_COLUMNS: tuple[tuple[str, str], ...] = (
    ("max_dice", "Dice ↑"), ("max_iou", "IoU ↑"), ("s_alpha", "Sα ↑"), ("e_phi_mean", "Eϕ ↑"), (names.VPS_MAE, "MAE ↓"),
)
BEHAVIOUR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("flicker", "Flicker ↓"), ("mask_change_pred", "Mask change"), ("mask_change_gt", "GT change"),
    ("sensitivity", "Sensitivity ↑"), ("specificity", "Specificity ↑"), ("fp_frames_per_video", "FP frames / video ↓"),
    ("fp_area_px", "FP area px ↓"), ("auroc", "AUROC ↑"), ("loc_error_px", "Centre error px ↓"),
    ("loc_error_mm", "Centre error mm ↓"),
)
DETECTION_KEYS = ("specificity", "fp_frames_per_video", "fp_area_px", "auroc")
BOX_COLUMNS: tuple[tuple[str, str], ...] = tuple(zip(
    (*names.DETECTION, *names.PEAK_DETECTION),
    ("AP ↑", "AP50 ↑", "AP75 ↑", "Peak-box AP ↑", "Peak-box AP50 ↑", "Peak-box AP75 ↑"),
))
BOX_NOTE = (
    "Detection: one box per frame, the largest connected component of the prediction (threshold 0.5) scored by its "
    "maximum probability; peak box: that extent centred at the heatmap peak (models with the localisation branch). "
    "COCO AP (IoU 0.50:0.05:0.95), AP50, AP75 against the annotated boxes (bbox.json, COCO), else the masks' boxes; "
    "no interval. n/a: no lesion box among the frames, or no heatmap. Definitions: docs/metrics.md."
)
BEHAVIOUR_NOTE = (
    "Video behaviour: flicker = mean over consecutive scored frames of max(0, mask change of the prediction - "
    "mask change of the ground truth), mask change = 1 - Dice between consecutive masks; sensitivity / "
    "specificity of frame-level lesion detection (a frame is predicted positive when any pixel is); "
    "AUROC from each frame's maximum probability; centre error = distance from the predicted centre (heatmap "
    "peak, else mask centroid) to the ground-truth bbox centre. n/a: the test set has no lesion-free frame "
    "(or no pixel spacing for mm). Definitions: docs/metrics.md."
)
TABLE_NOTE = (
    "Table 2 columns: standard protocol (threshold 0.5, frame means; F1 = harmonic mean of mean precision "
    "and mean recall). Table 4 columns: VPS protocol (first/last frame of each video dropped, per-video "
    "means then mean over videos; Dice/IoU = maxDice/maxIoU, Eϕ = mean E-measure). Brackets: 95% bootstrap "
    "interval over videos. Definitions: docs/metrics.md."
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_metrics_json(path: Path, metrics: dict[str, Any], context: dict[str, Any]) -> None:
    """metrics.json: headline scores, intervals, protocol summaries and the run's context (NaN -> null)."""
    payload = _json_safe({**metrics, "context": context})
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows as CSV (columns of the first row, then any new ones in order of appearance; cells escaped)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(escape_row(row) for row in rows)  # ids and names never run as spreadsheet formulas


def format_cell(metrics: dict[str, Any], key: str, with_ci: bool = True) -> str:
    """``0.789 [0.770, 0.805]``, ``0.578 n/a (1 video)`` (no interval from one video), or ``-`` when missing."""
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    interval = metrics.get("ci", {}).get(key)
    if with_ci and interval and metrics.get("num_videos") == 1:
        return f"{value:.3f} n/a (1 video)"  # a bootstrap over one video repeats it: [x, x] is no interval
    if with_ci and interval:
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"{value:.3f}"


def table_rows(entries: list[tuple[str, str, dict[str, Any]]], with_ci: bool = True) -> str:
    """Markdown of Table 2 (breast) and Table 4 (polyp) style rows for ``(method, kind, metrics)`` entries."""
    lines = ["### Table 2 format (standard protocol)", ""]
    lines.append("| Method | image/video | " + " | ".join(h for _, h in TABLE2_COLUMNS) + " |")
    lines.append("|---|---|" + "---|" * len(TABLE2_COLUMNS))
    for method, kind, metrics in entries:
        lines.append(f"| {method} | {kind} | " + " | ".join(format_cell(metrics, k, with_ci) for k, _ in TABLE2_COLUMNS) + " |")
    lines += ["", "### Table 4 format (VPS protocol)", ""]
    lines.append("| Method | " + " | ".join(h for _, h in TABLE4_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(TABLE4_COLUMNS))
    for method, _, metrics in entries:
        lines.append(f"| {method} | " + " | ".join(format_cell(metrics, k, with_ci) for k, _ in TABLE4_COLUMNS) + " |")
    lines += ["", "### Video behaviour (temporal stability, lesion-free frames, localisation)", ""]
    lines.append("| Method | " + " | ".join(h for _, h in BEHAVIOUR_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(BEHAVIOUR_COLUMNS))
    for method, _, metrics in entries:
        cells = []
        for key, _ in BEHAVIOUR_COLUMNS:
            cell = format_cell(metrics, key, with_ci)
            cells.append("n/a" if cell == "-" and (key in DETECTION_KEYS or key == "loc_error_mm") else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "### Detection (COCO AP of one box per frame)", ""]
    lines.append("| Method | " + " | ".join(h for _, h in BOX_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(BOX_COLUMNS))
    for method, _, metrics in entries:
        cells = [format_cell(metrics, key, with_ci) for key, _ in BOX_COLUMNS]
        lines.append(f"| {method} | " + " | ".join("n/a" if cell == "-" else cell for cell in cells) + " |")
    lines += ["", TABLE_NOTE, "", BEHAVIOUR_NOTE, "", BOX_NOTE]
    for method, _, metrics in entries:
        if note := metrics.get("segmentation", {}).get("note"):
            lines += ["", f"{method}: segmentation {note}."]
    for method, _, metrics in entries:
        if note := spacing_note(method, metrics):
            lines += ["", note]
    return "\n".join(lines + [""])


def spacing_note(method: str, metrics: dict[str, Any]) -> str:
    """Which videos the millimetre centre error covers (pixel spacing per video: per_video.csv), or ``""``."""
    localisation = metrics.get("video_behaviour", {}).get("localisation", {})
    sources = localisation.get("spacing_sources")
    if not sources or metrics.get("loc_error_mm") is None:
        return ""
    with_spacing = {source: count for source, count in sources.items() if source != "none"}
    counted = ", ".join(f"{count} {source}" for source, count in with_spacing.items())
    return (f"Centre error mm of {method}: {sum(with_spacing.values())} of {sum(sources.values())} videos carry a "
            f"pixel spacing ({counted}); the others count in px only (per_video.csv: spacing_source).")


def overlay(rgb: np.ndarray, frame: ScoredFrame, min_side: int = 320) -> np.ndarray:
    """BGR picture: the frame with ground-truth (green) and predicted (red) contours, scores in a banner.

    Frames smaller than ``min_side`` are enlarged so that contours and text stay readable.
    """
    scale = max(1, int(np.ceil(min_side / min(rgb.shape[:2]))))
    size = (rgb.shape[1] * scale, rgb.shape[0] * scale)
    bgr = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_LINEAR)
    thickness = max(1, round(min(size) / 250))
    for mask, colour in ((frame.gt, colours.bgr(colours.TRUTH_RGB)), (frame.prob > 127, colours.bgr(colours.PREDICTION_RGB))):
        big = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(bgr, contours, -1, colour, thickness)
    texts = (f"{frame.video} / {frame.frame}", f"Dice {frame.dice:.3f}  MAE {frame.mae:.3f}  green: truth  red: pred")
    widest = max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0] for text in texts)
    font_scale = min(1.0, (size[0] - 8) / widest)
    line = int(30 * font_scale) + 4
    banner = np.zeros((2 * line + 6, size[0], 3), np.uint8)
    for row, text in enumerate(texts, start=1):
        cv2.putText(banner, text, (4, row * line), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([banner, bgr], axis=0)


def write_worst_frames(folder: Path, worst: list[ScoredFrame], images: list[np.ndarray]) -> list[Path]:
    """Write ``worst/<rank>_<video>_<frame>.png`` overlays; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    paths = []
    for rank, (frame, rgb) in enumerate(zip(worst, images), start=1):
        name = f"{rank:02d}_{frame.video}_{frame.frame}".replace("/", "_")
        path = folder / f"{name}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), overlay(rgb, frame)):
                raise OSError(f"{path}: could not write the overlay")
        paths.append(path)
    return paths


def scored_header(scored: dict[str, Any] | None, edge: str | None = None, training_edge: str | None = None) -> str:
    """First lines of a table: the exact videos scored (split, count, list hash), the window edge used,
    and, in bold, why the videos are not held out when they are not."""
    if not scored:
        return ""
    lines = []
    if scored.get("not_held_out"):
        lines.append(f"**NOT A HELD-OUT SCORE: {scored['not_held_out']}.**")
    videos = f"{scored['count']} video{'s' if scored['count'] != 1 else ''}"
    line = f"Scored split `{scored['split']}`: {videos} (list hash `{scored['hash']}`, ids in metrics.json)."
    if edge:
        trained = f", the model was trained with `{training_edge}`" if training_edge else ""
        line += f" Window edge at a video's start: `{edge}`{trained}."
    return "\n\n".join([*lines, line]) + "\n\n"


def write_evaluation(
    out: Path, result: EvaluationResult, context: dict[str, Any], method: str, kind: str, images: list[np.ndarray]
) -> None:
    """Write every report file of one evaluation into ``out``."""
    write_metrics_json(out / "metrics.json", result.metrics, context)
    write_rows_csv(out / "per_video.csv", result.per_video)
    write_rows_csv(out / "per_frame.csv", result.per_frame)
    header = scored_header(context.get("scored_videos"), context.get("edge"), context.get("training_edge"))
    section = result.metrics.get(names.DIAGNOSIS_KEY)
    atomic_write_text(out / "table.md", header + table_rows([(method, kind, result.metrics)]) + "\n"
                      + diagnosis_table(section))
    if section and "per_video" in section:
        write_rows_csv(out / "diagnosis.csv", diagnosis_rows(section))
        write_reliability_plot(section, out / RELIABILITY_PLOT)
    write_worst_frames(out / "worst_frames", result.worst, images)
