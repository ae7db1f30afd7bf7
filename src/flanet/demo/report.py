"""The demo report: one list of blocks rendered twice, as ``report.md`` and a self-contained ``report.html``.

Every number in both files is formatted by :func:`fmt` from the dict that is also written to
``metrics.json``, so the three always agree. The HTML embeds the PNG figures and the GIF of the
overlay video as base64 data URIs (it can be mailed as one file); the mp4 is linked.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flanet.fileio import atomic_write_text
from flanet.metrics.names import TABLE2

TARGET_GAIN = 0.02  # Dice gain over the image baseline the demo report calls a clear win (docs/demo.md)


@dataclass(frozen=True)
class Block:
    """One piece of the report.

    ``kind`` is ``h1``, ``h2``, ``p`` (text, may hold ``**bold**``), ``table`` (``rows[0]`` is the
    header), ``image`` (``path`` relative to the report, ``text`` = caption) or ``link``.
    """

    kind: str
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()
    path: str = ""


def fmt(value: float | None, digits: int = 3) -> str:
    """A score as printed in the report: 3 decimals, ``-`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_ci(interval: Sequence[float] | None) -> str:
    """``[low, high]`` with 3 decimals."""
    return "-" if not interval else f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def signed(value: float) -> str:
    """A difference with its sign, e.g. ``+0.031``."""
    return f"{value:+.3f}"


def verdict(comparison: dict[str, Any], names: tuple[str, str]) -> dict[str, Any]:
    """Honest answer to "did temporal context help?" from the paired difference on all test frames."""
    everything, hard = comparison["all"], comparison.get("hard")
    diff, (low, high) = everything["difference"], everything["difference_ci"]
    if low > 0:
        helped, answer = True, f"Yes: {names[0]} beats {names[1]}"
    elif high < 0:
        helped, answer = False, f"No: {names[0]} is worse than {names[1]}"
    else:
        helped, answer = None, f"Not clearly: the 95% interval of the difference includes 0, so this run cannot tell {names[0]} from {names[1]}"
    text = (f"{answer} on this data: Dice difference {signed(diff)} (95% interval {fmt_ci(everything['difference_ci'])}, "
            f"{everything['frames']} test frames of {everything['videos']} videos). "
            f"The target is a gain of at least +{TARGET_GAIN:.2f}: {'met' if diff >= TARGET_GAIN else 'not met'}.")
    if hard is not None:
        text += (f" On the {hard['frames']} hard frames (lesion hard to see in the frame alone) the difference is "
                 f"{signed(hard['difference'])} {fmt_ci(hard['difference_ci'])}.")
    return {"helped": helped, "target": TARGET_GAIN, "target_met": bool(diff >= TARGET_GAIN), "text": text}


def build_blocks(results: dict[str, Any]) -> list[Block]:
    """The report's content from the demo results (the dict written to ``metrics.json``)."""
    settings, models, comparison = results["settings"], results["models"], results["comparison"]
    labels = list(models)
    names = tuple(models[label]["display_name"] for label in labels)
    stream, timing = results["streaming"], results["timing"]
    training = f"{settings['steps']} optimisation steps (same data order)"
    blocks = [
        Block("h1", "flanet demo: FLA-Net vs an image-only UNet on synthetic breast-ultrasound videos"),
        Block("p", f"{settings['videos']} synthetic videos of {settings['frames']} frames ({settings['frame_size']} px; "
                   f"{settings['split_sizes']['train']} train / {settings['split_sizes']['val']} validation / "
                   f"{settings['split_sizes']['test']} test videos), both models with a randomly initialised "
                   f"`{settings['encoder']}` encoder at {settings['image_size']} px, the same recipe, seed "
                   f"{settings['seed']} and {training} each, "
                   f"on {results['machine']['description']}. Whole demo: {fmt(timing['total_s'], 0)} s."),
        Block("h2", "Did temporal context help?"),
        Block("p", "**" + results["verdict"]["text"] + "**"),
        Block("table", rows=(("Frames", "Count", f"{names[0]} Dice", f"{names[1]} Dice", "Difference"),) + tuple(
            (group, str(g["frames"]), f"{fmt(g['video_model'])} {fmt_ci(g['video_model_ci'])}",
             f"{fmt(g['image_model'])} {fmt_ci(g['image_model_ci'])}", f"{signed(g['difference'])} {fmt_ci(g['difference_ci'])}")
            for group, g in comparison.items())),
        Block("p", "Paired over the same test frames; brackets are 95% bootstrap intervals over videos. Hard frames "
                   "(motion blur, almost iso-echoic lesion, probe-contact dropout) are marked by the generator."),
        Block("image", "Dice by frame kind", path=results["figures"]["frame_kinds"]),
        Block("h2", "Test metrics (standard protocol, threshold 0.5)"),
        Block("table", rows=(("Model", "Input", "Epochs / steps", "Training s", "Dice", "Jaccard", "F1", "MAE"),) + tuple(
            (m["display_name"], m["input"], f"{m['epochs']} / {m['steps']}", fmt(m["train_s"], 0),
             *(f"{fmt(m['metrics'][k])} {fmt_ci(m['ci'].get(k))}" for k in TABLE2))
            for m in models.values())),
        Block("p", "Brackets: 95% bootstrap intervals over test videos. Full evaluation reports (both protocols, "
                   "per-video and per-frame CSV, worst frames) are in `evaluation/<model>/`."),
        *(Block("link", f"interactive viewer of {m['display_name']}'s test predictions (play, scrub, toggle overlays)",
                path=m["viewer"]) for m in models.values()),
        *_diagnosis_blocks(results.get("diagnosis"), names[0]),
        Block("h2", "Training"),
        Block("image", "Training loss (mask terms shared by both models) per logged step with its moving mean, "
                       "and validation Dice after each epoch, against the optimisation step",
              path=results["figures"]["curves"]),
        Block("h2", "Dice per test video"),
        Block("image", "Mean Dice per test video (number of hard frames under each name)",
              path=results["figures"]["per_video"]),
        Block("h2", "Good and bad cases"),
        Block("image", f"Green: ground truth; red: prediction; last column: {names[0]}'s localisation heatmap (yellow)",
              path=results["figures"]["cases"]),
        Block("h2", "Streaming inference"),
        Block("p", f"{names[0]} segmented test video `{stream['video']}` ({stream['frames']} frames, "
                   f"{stream['hard_frames']} hard) frame by frame with `VideoSegmenter` (each frame encoded once, "
                   f"features of the two previous frames reused): **{fmt(stream['fps'], 1)} frames/s** on "
                   f"{results['machine']['description']} at {settings['image_size']} px, including reading the frames and "
                   f"writing masks and the overlay video."),
        Block("image", "Overlay video (red: predicted lesion contour; yellow cross: heatmap peak)", path=stream["gif"]),
        Block("link", "overlay video (mp4)", path=stream["overlay_video"]),
        Block("link", "interactive viewer of the streamed video", path=stream["viewer"]),
        Block("h2", "Settings and timing"),
        Block("table", rows=(("Setting", "Value"),) + tuple((k, _setting(v)) for k, v in settings.items())
              + tuple((f"time: {k}", fmt(v, 1)) for k, v in timing.items())),
    ]
    return blocks


def _diagnosis_blocks(diagnosis: dict[str, Any] | None, model: str) -> list[Block]:
    """The report's diagnosis section: the head's test AUROC with its interval, or why there is none."""
    if not diagnosis:
        return []
    scores = diagnosis["scores"]
    blocks = [Block("h2", "Diagnosis: benign or malignant, per video")]
    intro = (f"A diagnosis head (attention over the frames of {model}'s features pooled under its predicted mask; "
             f"docs/training.md, \"Diagnosis\") trained for {diagnosis['epochs']} epochs on the frozen {model} "
             "(its segmentation unchanged), one probability per test video.")
    if "not_applicable" in scores:
        return [*blocks, Block("p", f"{intro} Not applicable on these test videos: {scores['not_applicable']}.")]
    blocks.append(Block("p", f"{intro} Test AUROC **{fmt(scores['auroc'])} {fmt_ci(scores['auroc_ci'])}** over "
                             f"{scores['videos']} test videos ({scores['positives']} malignant); at the threshold "
                             f"{fmt(scores['threshold'])} ({scores['threshold_source']}) sensitivity "
                             f"{fmt(scores['sensitivity'])} {fmt_ci(scores['sensitivity_ci'])}, specificity "
                             f"{fmt(scores['specificity'])} {fmt_ci(scores['specificity_ci'])}; expected calibration "
                             f"error {fmt(scores['ece'])}. Brackets: 95% bootstrap intervals over test videos."))
    if diagnosis.get("reliability"):
        blocks.append(Block("image", "Reliability of the diagnosis (share of malignant videos against the mean "
                                     "predicted probability, per bin)", path=diagnosis["reliability"]))
    return blocks


def _setting(value: Any) -> str:
    """A setting as shown in the report: ``-`` for unset, ``k v, ...`` for mappings."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _md_text(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown of the blocks; images and links point to files next to the report."""
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2"):
            lines += [("# " if block.kind == "h1" else "## ") + block.text, ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "table":
            header, *rows = block.rows
            lines.append("| " + " | ".join(map(_md_text, header)) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(map(_md_text, row)) + " |" for row in rows]
            lines.append("")
        elif block.kind == "image":
            lines += [f"![{block.text}]({block.path})", "", f"*{block.text}*", ""]
        elif block.kind == "link":
            lines += [f"[{block.text}]({block.path})", ""]
    return "\n".join(lines)


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_text(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<b>{part}</b>" if i % 2 else part for i, part in enumerate(parts))


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{color:#555;font-size:13px}"""


def render_html(blocks: Sequence[Block], root: Path) -> str:
    """Self-contained HTML: images embedded as base64 (paths resolved against ``root``)."""
    body: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "p"):
            tag = block.kind
            body.append(f"<{tag}>{_html_text(block.text)}</{tag}>")
        elif block.kind == "table":
            header, *rows = block.rows
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
            body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            body.append("</table>")
        elif block.kind == "image":
            body.append(f'<figure><img src="{_data_uri(root / block.path)}" alt="{html.escape(block.text)}">'
                        f"<figcaption>{html.escape(block.text)}</figcaption></figure>")
        elif block.kind == "link":
            body.append(f'<p><a href="{html.escape(block.path)}">{html.escape(block.text)}</a> '
                        f"(next to this report)</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flanet demo report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(results: dict[str, Any], root: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``root``; returns both paths."""
    blocks = build_blocks(results)
    markdown, page = root / "report.md", root / "report.html"
    atomic_write_text(markdown, render_markdown(blocks))
    atomic_write_text(page, render_html(blocks, root))
    return markdown, page
