"""FLA-Net's Tables 2, 3 and 4: their rows, columns and published numbers, and our rows beside them.

``flanet compare --table N`` trains and evaluates the rows of Table N that are registered models
(:meth:`flanet.models.registry.ModelSpec.row`) and writes the table in the paper's layout with
:func:`table_markdown`: our scores with 95% intervals, the row's cost (parameters and GFLOPs at
352, frames/s measured) and, in a second column group headed "paper", the numbers the paper
prints. Rows the registry has no model for keep their published numbers and say so.

The numbers are copied from the paper (Lin et al., MICCAI 2023): Table 2 and Table 3 on its BUV
test set, Table 4 on CVC-300-TV and CVC-612-V. The paper prints Table 4 with methods as columns;
here every table has one row per method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flanet.evaluation.report import TABLE2_COLUMNS, TABLE4_COLUMNS, format_cell


@dataclass(frozen=True)
class PublishedRow:
    """One row as printed: its label, image/video, and its numbers per data set (in the table's column order)."""

    label: str
    kind: str
    numbers: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: its columns (``metrics.json`` key, header), data sets and rows in order."""

    number: int
    title: str
    protocol: str
    columns: tuple[tuple[str, str], ...]
    datasets: tuple[str, ...]
    rows: tuple[PublishedRow, ...] = field(default_factory=tuple)

    def row(self, label: str) -> PublishedRow:
        return next(r for r in self.rows if r.label == label)


def _rows(kinds: Mapping[str, str], numbers: Mapping[str, Mapping[str, tuple[float, ...]]]) -> tuple[PublishedRow, ...]:
    return tuple(PublishedRow(label, kinds[label], {d: v[label] for d, v in numbers.items()}) for label in kinds)


_BUV = "BUV"
TABLES: dict[int, PaperTable] = {
    2: PaperTable(2, "Table 2: breast lesion segmentation in ultrasound videos", "standard", TABLE2_COLUMNS, (_BUV,), _rows(
        {"UNet": "image", "UNet++": "image", "TransUNet": "image", "SETR": "image", "STM": "video",
         "AFB-URR": "video", "PNS+": "video", "DPSTT": "video", "DCFNet": "video", "Our FLA-Net": "video"},
        {_BUV: {"UNet": (0.745, 0.636, 0.777, 0.043), "UNet++": (0.749, 0.633, 0.780, 0.039),
                "TransUNet": (0.733, 0.637, 0.784, 0.042), "SETR": (0.709, 0.588, 0.748, 0.045),
                "STM": (0.741, 0.634, 0.782, 0.041), "AFB-URR": (0.750, 0.635, 0.781, 0.038),
                "PNS+": (0.754, 0.648, 0.783, 0.036), "DPSTT": (0.755, 0.649, 0.785, 0.036),
                "DCFNet": (0.762, 0.659, 0.799, 0.037), "Our FLA-Net": (0.789, 0.687, 0.815, 0.033)}})),
    3: PaperTable(3, "Table 3: ablation study", "standard", TABLE2_COLUMNS, (_BUV,), _rows(
        {"Basic": "video", "Basic+FLA": "video", "Basic+LB": "video", "Basic+FLA+LB": "video", "Our method": "video"},
        {_BUV: {"Basic": (0.747, 0.641, 0.777, 0.037), "Basic+FLA": (0.777, 0.669, 0.806, 0.035),
                "Basic+LB": (0.751, 0.646, 0.781, 0.037), "Basic+FLA+LB": (0.780, 0.675, 0.809, 0.034),
                "Our method": (0.789, 0.687, 0.815, 0.033)}})),
    4: PaperTable(4, "Table 4: video polyp segmentation", "VPS", TABLE4_COLUMNS, ("CVC-300-TV", "CVC-612-V"), _rows(
        {"UNet": "image", "UNet++": "image", "ResUNet": "image", "ACSNet": "image", "PraNet": "image",
         "PNSNet": "video", "Ours": "video"},
        {"CVC-300-TV": {"UNet": (0.639, 0.525, 0.793, 0.826, 0.027), "UNet++": (0.649, 0.539, 0.796, 0.831, 0.024),
                        "ResUNet": (0.535, 0.412, 0.703, 0.718, 0.052), "ACSNet": (0.738, 0.632, 0.837, 0.871, 0.016),
                        "PraNet": (0.739, 0.645, 0.833, 0.852, 0.016), "PNSNet": (0.840, 0.745, 0.909, 0.921, 0.013),
                        "Ours": (0.874, 0.789, 0.907, 0.969, 0.010)},
         "CVC-612-V": {"UNet": (0.725, 0.610, 0.826, 0.855, 0.023), "UNet++": (0.684, 0.570, 0.805, 0.830, 0.025),
                       "ResUNet": (0.752, 0.648, 0.829, 0.877, 0.023), "ACSNet": (0.804, 0.712, 0.847, 0.887, 0.054),
                       "PraNet": (0.869, 0.799, 0.915, 0.936, 0.013), "PNSNet": (0.873, 0.800, 0.923, 0.944, 0.012),
                       "Ours": (0.885, 0.814, 0.920, 0.963, 0.012)}})),
}


@dataclass(frozen=True)
class TableEntry:
    """One of our rows: the registered model, its ``metrics.json`` dict and what it costs.

    Attributes:
        model: registered model name.
        metrics: the evaluation's metrics (scores and ``ci``).
        params_m: parameters, millions (the trained model's options).
        gflops: GFLOPs of one output frame at 352 x 352, streaming (one new frame encoded + one step: the decode, and a memory model's write).
        fps: frames/s of :class:`~flanet.inference.VideoSegmenter` streaming, measured (None: not measured).
        marks: extra cells before the scores (Table 3: FLA, Loc-Branch, Contrastive loss).
    """

    model: str
    metrics: dict[str, Any]
    params_m: float
    gflops: float
    fps: float | None = None
    marks: tuple[str, ...] = ()


def table_models(number: int) -> list[str]:
    """Registered models with a row in Table ``number``, in the paper's row order."""
    from flanet.models.registry import list_models, model_spec

    order = [row.label for row in TABLES[number].rows]
    named = {model_spec(n).row(number).label: n for n in reversed(list_models(table=number))}  # first registered wins
    return [named[label] for label in order if label in named]


def _number(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def table_markdown(number: int, entries: Sequence[TableEntry], mark_headers: Sequence[str] = (), fps_device: str = "",
                   with_ci: bool = True) -> str:
    """Table ``number`` in the paper's row order: our columns, cost, then the paper's numbers per data set.

    Every row the paper prints is there; a row with no registered model (or not in ``entries``) has
    ``-`` in our columns and says why in the ``model`` cell.
    """
    from flanet.models.registry import list_models, model_spec

    table = TABLES[number]
    ours = {model_spec(e.model).row(number).label: e for e in entries if model_spec(e.model).row(number)}
    registered = {model_spec(n).row(number).label for n in list_models(table=number)}
    score_headers = [h for _, h in table.columns]
    paper_headers = [f"paper {d}: {h}" if len(table.datasets) > 1 else f"paper: {h}"
                     for d in table.datasets for h in score_headers]
    headers = ["Method", "image/video", "model", *mark_headers, *score_headers, "Params (M)", "GFLOPs @352",
               f"frames/s{f' ({fps_device})' if fps_device else ''}", *paper_headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.rows:
        entry = ours.get(row.label)
        if entry is not None:
            cells = [f"`{entry.model}`", *entry.marks, *(format_cell(entry.metrics, k, with_ci) for k, _ in table.columns),
                     f"{entry.params_m:.1f}", f"{entry.gflops:.1f}", "-" if entry.fps is None else f"{entry.fps:.1f}"]
        else:
            why = "not run" if row.label in registered else "not in flanet"
            cells = [why, *["-"] * len(mark_headers), *["-"] * len(table.columns), "-", "-", "-"]
        published = [_number(v) for d in table.datasets for v in row.numbers[d]]
        lines.append(f"| {row.label} | {row.kind} | " + " | ".join([*cells, *published]) + " |")
    return "\n".join(lines) + "\n"


def table_note(number: int) -> str:
    """What the columns of Table ``number`` are, for the line under it."""
    table = TABLES[number]
    protocol = ("standard protocol (threshold 0.5, frame means; F1 = harmonic mean of mean precision and mean recall)"
                if table.protocol == "standard" else
                "video-polyp (VPS) protocol (first/last frame of each video dropped, per-video means then the mean "
                "over videos; Dice/IoU = maxDice/maxIoU, Eϕ = mean E-measure)")
    where = " and ".join(table.datasets)
    return (f"Our scores: {protocol}; brackets: 95% bootstrap interval over videos (docs/metrics.md). Params and "
            "GFLOPs: the trained model at 352x352, one output frame streamed (a new frame encoded, one decode; a memory model also writes its memory, which is full). "
            f"frames/s: streaming on the device named, measured in this run. Columns headed 'paper' are the numbers "
            f"the paper prints for its own runs on {where}, not ours."
            + (" The paper prints Table 4 with one column per method." if number == 4 else ""))
