"""The packages form layers (docs/architecture.md): no import runs back up a layer, siblings stay apart,
and the library never imports a command module.

Every ``import`` of a flanet module counts, at module level or inside a function (a lazy import is
still a dependency), read from the source with ``ast`` so nothing is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "flanet"

#: Bottom to top. A module may import its own unit and the units of lower layers; two units of one
#: layer are siblings and import neither each other. The root modules (errors, fileio, threads, ...)
#: are one unit.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("flanet.data.errors",),  # DataError, standard library only: the error contract classifies it
    ("flanet",),
    ("flanet.data", "flanet.metrics"),
    ("flanet.losses",),  # tensor functions of the paper's eqs. 1-2; the registry names each model's default loss
    ("flanet.models",),
    ("flanet.inference.runtimes",),
    ("flanet.inference.core",),
    ("flanet.training", "flanet.evaluation"),
    ("flanet.inference.runs",),
    ("flanet.experiments", "flanet.inference.bench"),
    ("flanet.demo",),
)
#: The command line: above every layer, imported by nothing but itself.
COMMANDS = ("flanet.cli", "flanet.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_command(module: str) -> bool:
    return module in COMMANDS or module.endswith(".commands")


def _unit(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the longest unit prefix that names it."""
    best: tuple[int, str] | None = None
    for layer, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best[1])):
                best = (layer, unit)
    if best is None or (best[1] == "flanet" and module.count(".") > 1):
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS (docs/architecture.md)")
    return best


def _imports(path: Path, module: str) -> set[str]:
    """flanet modules ``path`` imports (``from flanet.x import y`` counts as ``flanet.x.y`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}"))
    return {name for name in found if name == "flanet" or name.startswith("flanet.")}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    for path in SOURCES:
        module = _module_name(path)
        if not _is_command(module):
            _unit(module)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up_a_layer(path: Path) -> None:
    module = _module_name(path)
    wrong = []
    for imported in sorted(_imports(path, module)):
        if _is_command(imported):
            if not _is_command(module):
                wrong.append(f"{imported} (a command module)")
            continue
        if _is_command(module):
            continue
        (layer, unit), (their_layer, their_unit) = _unit(module), _unit(imported)
        if their_layer > layer or (their_layer == layer and their_unit != unit):
            wrong.append(f"{imported} (layer {their_layer} {their_unit}; this is layer {layer} {unit})")
    assert not wrong, f"{module} imports " + ", ".join(wrong)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The test has teeth: an import of evaluation from training is found and refused."""
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from flanet.evaluation.viewer import ViewerCollector\n")
    imported = _imports(source, "flanet.training.module")
    assert "flanet.evaluation.viewer" in imported
    (layer, unit), (their_layer, their_unit) = _unit("flanet.training.module"), _unit("flanet.evaluation.viewer")
    assert their_layer == layer and their_unit != unit
