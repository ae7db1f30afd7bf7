"""The ablation table of the paper (Table 3): which parts each row has, and its scores.

Rows are the five Table 3 models (:data:`flanet.models.TABLE3_ROWS`) in the paper's order,
then any image baseline that was compared with them. The ✓/× columns say what the run
actually had: FLA (FFA fusion), the localisation branch, and the contrastive loss of eq. (1)
with the weight the run trained with (recorded in its ``config.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from flanet.evaluation.report import TABLE2_COLUMNS, format_cell
from flanet.models.registry import list_models, model_spec
from flanet.models.variants import TABLE3_ROWS, VARIANTS

#: Models of ``flanet compare --ablation``: Table 3's rows, then the image baselines of Table 2.
ABLATION_MODELS: tuple[str, ...] = (*(name for name, _ in TABLE3_ROWS), "unet", "unetplusplus")
TABLE3_NOTE = (
    "Columns as the paper's Table 3: FLA = frequency-based feature aggregation (FFA) fusion, "
    "Loc-Branch = localisation branch, Contrastive loss = eq. (1) with the weight the run trained with. "
    "Scores: standard protocol (threshold 0.5, frame means; F1 = harmonic mean of mean precision and mean "
    "recall); brackets: 95% bootstrap interval over videos. Definitions: docs/metrics.md."
)


class AblationEntry(NamedTuple):
    """One compared model: its name, the eq. (1) weight it trained with, its metrics.json dict."""

    model: str
    contrastive_weight: float
    metrics: dict[str, Any]


def _mark(flag: bool) -> str:
    return "✓" if flag else "×"


def table3_markdown(entries: Sequence[AblationEntry], with_ci: bool = True) -> str:
    """Markdown of Table 3's layout for ``entries`` (any order; rows follow the paper).

    Args:
        entries: compared models; Table 3's in the paper's order, then the other registered models in ``flanet models`` order.
        with_ci: append the 95% interval to each score.

    Returns:
        The table with a header row, one row per entry and a note on the columns.
    """
    by_name = {entry.model: entry for entry in entries}
    table3 = [name for name, _ in TABLE3_ROWS]
    others = [name for name in list_models() if name in by_name and name not in VARIANTS]
    labels = dict(TABLE3_ROWS) | {name: _label(name) for name in others}
    header = "| Method | model | FLA | Loc-Branch | Contrastive loss | " + " | ".join(h for _, h in TABLE2_COLUMNS) + " |"
    lines = [header, "|---|---|---|---|---|" + "---|" * len(TABLE2_COLUMNS)]
    for name in (*(n for n in table3 if n in by_name), *others):
        entry = by_name[name]
        if name in VARIANTS:
            variant = VARIANTS[name]
            parts = [_mark(variant.fusion == "ffa"), _mark(variant.localisation),
                     _mark(variant.localisation and entry.contrastive_weight > 0)]
        else:
            parts = ["-", "-", "-"]
        scores = [format_cell(entry.metrics, key, with_ci) for key, _ in TABLE2_COLUMNS]
        lines.append(f"| {labels[name]} | `{name}` | " + " | ".join(parts + scores) + " |")
    return "\n".join(lines + ["", TABLE3_NOTE, ""])


def _label(name: str) -> str:
    """A compared model's label: its row in Table 2 (else 4), else its name."""
    spec = model_spec(name)
    row = spec.row(2) or spec.row(4)
    return row.label if row is not None else name
