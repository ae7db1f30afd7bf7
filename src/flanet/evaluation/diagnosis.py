"""Evaluating the video-level diagnosis head: per-video probabilities, scores with intervals, the reliability plot.

Each scored video is diagnosed from ``frames`` clips spread evenly over all its frames (annotated or
not), each clip ``[t, t-1, t-2]`` with the causal edge; the head's attention says which frames weighed
most. The scores (:mod:`flanet.metrics.diagnosis`) compare the probabilities with the labels of the
videos that have one, at the threshold chosen on the validation videos when the checkpoint records
it (else 0.5, and the table says so). Without a head, or without labels, the section says why it
does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from flanet.data import Video, to_model_input
from flanet.data.bags import spread
from flanet.data.clips import clip_frame_indices
from flanet.data.labels import binary_targets
from flanet.data.video_io import VideoFrameReader
from flanet.fileio import atomic_path
from flanet.metrics import diagnosis as scores
from flanet.metrics import names
from flanet.models.contract import VideoSegmentationModel
from flanet.models.diagnosis import DiagnosisHead, clip_inputs

#: Frames per video the head reads in ``flanet evaluate`` (spread over the video).
EVAL_FRAMES = 32
#: Frames per video listed as the ones that weighed most.
TOP_FRAMES = 5
RELIABILITY_PLOT = "reliability.png"


@dataclass(frozen=True)
class VideoDiagnosis:
    """The head's estimate for one video: ``probs`` per label, the frames read and their attention weights."""

    video: str
    probs: np.ndarray  # (L,)
    frames: list[int]
    attention: list[float]

    def top_frames(self, count: int = TOP_FRAMES) -> list[tuple[int, float]]:
        """``(frame index, attention weight)`` of the frames that weighed most, heaviest first."""
        order = np.argsort(-np.asarray(self.attention), kind="stable")[:count]
        return [(self.frames[i], float(self.attention[i])) for i in order]


def diagnose_videos(model: VideoSegmentationModel, head: DiagnosisHead, videos: list[Video], image_size: int,
                    device: torch.device, frames: int = EVAL_FRAMES, progress: bool = False) -> list[VideoDiagnosis]:
    """The head's estimate for every video (one batch of ``frames`` clips per video)."""
    model, head = model.to(device).eval(), head.to(device).eval()
    reader, length, found = VideoFrameReader(), int(model.num_frames), []
    with torch.inference_mode():
        for video in tqdm(videos, desc="diagnose", unit="video", disable=not progress):
            if video.num_frames == 0:
                continue
            chosen = spread(video.num_frames, frames)
            windows = np.stack([clip_frame_indices(int(t), video.num_frames, length, "causal") for t in chosen])
            unique = np.unique(windows)
            images = {int(i): to_model_input(video.read_frame(int(i), reader), image_size) for i in unique}
            clips = torch.stack([torch.stack([images[int(i)] for i in row]) for row in windows]).to(device)
            inputs, _ = clip_inputs(model, clips, head.pool)
            out = head(inputs, torch.zeros(len(chosen), dtype=torch.long, device=device), 1)
            found.append(VideoDiagnosis(video.id, torch.sigmoid(out.logits[0]).float().cpu().numpy(),
                                        [int(t) for t in chosen], out.attention.float().cpu().tolist()))
    return found


def not_applicable(reason: str) -> dict[str, Any]:
    """The ``metrics.json`` diagnosis section of an evaluation it does not apply to."""
    return {"not_applicable": reason}


def diagnosis_section(diagnoses: list[VideoDiagnosis], labels: dict[str, dict[str, str]], head_labels: list[str],
                      thresholds: dict[str, float | None], resamples: int, seed: int) -> dict[str, Any]:
    """``metrics.json["diagnosis"]``: per label the scores of :func:`flanet.metrics.diagnosis.summarise`, the
    threshold and where it came from, or why the label cannot be scored; per video the probabilities and top frames."""
    ids = [d.video for d in diagnoses]
    probs = np.stack([d.probs for d in diagnoses]) if diagnoses else np.zeros((0, len(head_labels)))
    values, known = binary_targets(labels, head_labels, ids)
    section: dict[str, Any] = {"labels": {}, "frames_per_video": max((len(d.frames) for d in diagnoses), default=0)}
    for column, label in enumerate(head_labels):
        mask = known[:, column]
        y = values[mask, column] > 0.5
        if not mask.any():
            section["labels"][label] = not_applicable(f"no scored video has a {label!r} label")
            continue
        if y.all() or not y.any():
            section["labels"][label] = not_applicable(f"the {int(mask.sum())} labelled videos are all "
                                                      f"{'positive' if y.all() else 'negative'}: no AUROC")
            continue
        threshold = thresholds.get(label)
        source = "chosen on the validation videos (Youden's J)" if threshold is not None else \
            "0.5: the checkpoint records no validation threshold"
        summary = scores.summarise(probs[mask, column], y, 0.5 if threshold is None else threshold, resamples, seed=seed)
        section["labels"][label] = {**summary, "threshold_source": source}
    section["per_video"] = [
        {"video": d.video, **{label: float(d.probs[c]) for c, label in enumerate(head_labels)},
         "truth": {label: labels.get(d.video, {}).get(label, "") for label in head_labels},
         "top_frames": [{"frame": f, "weight": w} for f, w in d.top_frames()]}
        for d in diagnoses
    ]
    return section


def diagnosis_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``diagnosis.csv``: video, probability and label per head label, the frames that weighed most
    (``frame:weight``, 0-based frame index)."""
    rows = []
    for entry in section.get("per_video", []):
        row: dict[str, Any] = {"video": entry["video"]}
        for label in section["labels"]:
            row[f"{label}_probability"] = f"{entry[label]:.4f}"
            row[label] = entry["truth"][label]
        row["top_frames"] = " ".join(f"{t['frame']}:{t['weight']:.3f}" for t in entry["top_frames"])
        rows.append(row)
    return rows


def _cell(summary: dict[str, Any], score: str) -> str:
    value, interval = summary.get(score), summary.get(f"{score}_ci")
    if value is None:
        return "-"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f}"


def diagnosis_table(section: dict[str, Any] | None) -> str:
    """The diagnosis part of ``table.md`` (one row per label), or a line saying why it does not apply."""
    lines = ["### Diagnosis (one estimate per video)", ""]
    if not section or "not_applicable" in section:
        reason = (section or {}).get("not_applicable", "no diagnosis was made")
        return "\n".join(lines + [f"Not applicable: {reason}.", ""])
    headers = ("AUROC ↑", "Sensitivity ↑", "Specificity ↑", "Balanced acc. ↑", "ECE ↓")
    lines.append("| Label | videos (pos/neg) | threshold | " + " | ".join(headers) + " |")
    lines.append("|---|---|---|" + "---|" * len(headers))
    notes = []
    for label, summary in section["labels"].items():
        if "not_applicable" in summary:
            lines.append(f"| {label} | - | - | " + " | ".join("n/a" for _ in headers) + " |")
            notes.append(f"{label}: not applicable ({summary['not_applicable']}).")
            continue
        counts = f"{summary['videos']} ({summary['positives']}/{summary['negatives']})"
        cells = " | ".join(_cell(summary, score) for score in names.DIAGNOSIS)
        lines.append(f"| {label} | {counts} | {summary['threshold']:.3f} | {cells} |")
        notes.append(f"{label}: threshold {summary['threshold_source']}.")
    lines += ["", f"Each video read from {section['frames_per_video']} frames spread over it; brackets: 95% "
              "bootstrap interval over videos; sensitivity and specificity at the threshold; ECE over 10 bins "
              f"(reliability plot: {RELIABILITY_PLOT}). Definitions: docs/metrics.md.", *notes, ""]
    return "\n".join(lines)


def write_reliability_plot(section: dict[str, Any], path: Path) -> bool:
    """The reliability diagram of every scored label (share of positives against mean probability per bin); False when none."""
    scored = {label: s for label, s in section.get("labels", {}).items() if "reliability" in s}
    if not scored:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flanet.colours import SERIES_COLOURS

    figure, axes = plt.subplots(figsize=(4.5, 4.2))
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for colour, (label, summary) in zip(SERIES_COLOURS, scored.items()):
        bins = summary["reliability"]
        axes.plot([b["mean_probability"] for b in bins], [b["positive_rate"] for b in bins], "o-", color=colour,
                  label=f"{label} (ECE {summary['ece']:.3f}, {summary['videos']} videos)")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability (bin)", ylabel="share of positive videos",
             title="Reliability of the video diagnosis")
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return True
