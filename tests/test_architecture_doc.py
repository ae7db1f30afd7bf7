"""docs/architecture.md's picture of the layers is the one the import-layering test enforces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _drawer():
    spec = importlib.util.spec_from_file_location("layers_drawing", ROOT / "docs" / "images" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_layers_picture_is_up_to_date() -> None:
    drawer = _drawer()
    expected = drawer.render(drawer.read_layers())
    assert (ROOT / "docs" / "images" / "layers.svg").read_text(encoding="utf-8") == expected, (
        "docs/images/layers.svg is stale: run python docs/images/layers.py")


def test_every_layer_unit_is_described_in_the_picture_and_the_doc() -> None:
    drawer = _drawer()
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer in drawer.read_layers():
        for unit in layer:
            assert unit in drawer.OWNS, f"{unit}: add what it owns to OWNS in docs/images/layers.py"
            assert unit == "flanet.data.errors" or f"`{unit}`" in doc, f"{unit}: describe it in docs/architecture.md"
