"""The ablation of the paper (Table 3): which parts each row has, as the ✓/× columns of ``flanet compare --table 3``.

Rows are the registered models with a Table 3 row (:func:`flanet.experiments.paper_tables.table_models`),
in the paper's order. The ✓/× columns say what the run actually had: FLA (FFA fusion), the localisation
branch, and the contrastive loss of eq. (1) with the weight the run trained with (recorded in its
``config.yaml``).
"""

from __future__ import annotations

from flanet.models.variants import VARIANTS

#: Headers of the ✓/× columns of Table 3.
TABLE3_MARK_HEADERS: tuple[str, ...] = ("FLA", "Loc-Branch", "Contrastive loss")


def _mark(flag: bool) -> str:
    return "✓" if flag else "×"


def table3_marks(model: str, contrastive_weight: float) -> tuple[str, ...]:
    """FLA, Loc-Branch and Contrastive loss of ``model`` trained with eq. (1) at ``contrastive_weight``.

    ``-`` for a model that is not one of FLA-Net's variants.
    """
    variant = VARIANTS.get(model)
    if variant is None:
        return ("-",) * len(TABLE3_MARK_HEADERS)
    return (_mark(variant.fusion == "ffa"), _mark(variant.localisation),
            _mark(variant.localisation and contrastive_weight > 0))
