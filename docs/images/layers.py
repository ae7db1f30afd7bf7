"""Draws docs/images/layers.svg, the picture of docs/architecture.md, from the layers the tests enforce.

The layers are read from ``tests/test_import_layers.py`` (``LAYERS``, bottom to top), so the picture
cannot drift from what ``test_no_import_runs_back_up_a_layer`` checks; ``tests/test_architecture_doc.py``
fails when the SVG is stale. Run: ``python docs/images/layers.py``.
"""

from __future__ import annotations

import ast
import html
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images" / "layers.svg"
WIDTH, ROW, GAP, MARGIN = 760, 46, 14, 20
#: What each unit owns, in a few words (the boxes' second line).
OWNS = {
    "flanet.data.errors": "DataError",
    "flanet": "errors, fileio, threads, devices",
    "flanet.data": "layouts, frames, clips, DICOM",
    "flanet.metrics": "metric names, both protocols",
    "flanet.models": "contract, models, checkpoints",
    "flanet.losses": "paper's losses",
    "flanet.inference.runtimes": "PyTorch, onnxruntime, OpenVINO, export",
    "flanet.inference.core": "VideoSegmenter, settings, in flight",
    "flanet.training": "Lightning module, runs",
    "flanet.evaluation": "evaluate, scoring, reports",
    "flanet.inference.runs": "predict, archive, live",
    "flanet.experiments": "compare, ablation",
    "flanet.inference.bench": "flanet bench",
    "flanet.demo": "flanet demo",
}


def read_layers(test_file: Path = ROOT / "tests" / "test_import_layers.py") -> list[list[str]]:
    """``LAYERS`` of the layering test, bottom to top, without importing it."""
    for node in ast.parse(test_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "LAYERS":
            return [list(layer) for layer in ast.literal_eval(node.value)]
    raise ValueError(f"{test_file}: no LAYERS")


def render(layers: list[list[str]]) -> str:
    """The SVG text: one row per layer, top layer first, the command line above them all."""
    rows = [["commands (flanet.cli, */commands.py)"]] + [list(layer) for layer in reversed(layers)]
    height = MARGIN * 2 + len(rows) * ROW + (len(rows) - 1) * GAP + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
             f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
             f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="12" fill="#555">imports point down only; '
             'boxes side by side are siblings and import neither each other</text>']
    for number, units in enumerate(rows):
        y = MARGIN + 24 + number * (ROW + GAP)
        box = (WIDTH - 2 * MARGIN - (len(units) - 1) * GAP) / len(units)
        for k, unit in enumerate(units):
            x = MARGIN + k * (box + GAP)
            fill = "#e8eef7" if number else "#f3e8d8"
            parts.append(f'<rect x="{x:.0f}" y="{y}" width="{box:.0f}" height="{ROW}" rx="6" fill="{fill}" '
                         'stroke="#47617f"/>')
            parts.append(f'<text x="{x + box / 2:.0f}" y="{y + 19}" text-anchor="middle" font-weight="bold">'
                         f'{html.escape(unit)}</text>')
            if unit in OWNS:
                parts.append(f'<text x="{x + box / 2:.0f}" y="{y + 36}" text-anchor="middle" font-size="11" '
                             f'fill="#333">{html.escape(OWNS[unit])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(read_layers()), encoding="utf-8")
    print(f"wrote {OUT}")
