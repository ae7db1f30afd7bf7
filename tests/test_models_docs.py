"""README and docs/model.md list every registered model with its paper rows (driven by the registry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flanet.models import list_models, model_spec

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = [name for name in list_models() if model_spec(name).builder.__module__.startswith("flanet.")]


@pytest.mark.parametrize("document", ["README.md", "docs/model.md"])
@pytest.mark.parametrize("name", BUILTIN)
def test_every_model_is_listed_with_its_paper_rows(document: str, name: str) -> None:
    lines = [line for line in (ROOT / document).read_text(encoding="utf-8").splitlines()
             if line.startswith(f"| `{name}` |")]
    assert lines, f"{document} has no table line for model {name!r}"
    for row in model_spec(name).info.rows:
        assert f'Table {row.table} "{row.label}"' in lines[0], f"{document}: {name} lacks {row}"
