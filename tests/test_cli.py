"""The command line as a user meets it: ``python -m flanet`` and the top-level help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flanet import __version__


def test_python_dash_m_flanet_is_the_flanet_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flanet", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flanet {__version__}"


HEAVY_MODULES = ("torch", "lightning", "timm", "cv2", "segmentation_models_pytorch", "onnxruntime")


def test_help_of_every_command_imports_no_heavy_library() -> None:
    """``flanet --help`` and each ``flanet <command> --help`` answer without torch, Lightning, timm or OpenCV."""
    script = (
        "import contextlib, io, sys\n"
        "from flanet.cli import build_parser\n"
        "parser = build_parser()\n"
        "commands = parser._subparsers._group_actions[0].choices\n"
        "for argv in [['--help']] + [[name, '--help'] for name in commands] + [['data', 'check', '--help']]:\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(io.StringIO()):\n"
        "            parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('imported:', *[m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported:"


def test_code_passes_the_ruff_configuration() -> None:
    """The lint rules in pyproject.toml ([tool.ruff]) hold for src/, tests/ and benchmarks/."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks"],
        capture_output=True, text=True, timeout=120, check=False, cwd=root,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_library_never_imports_a_command_module() -> None:
    """Only ``flanet.cli`` imports ``*.commands`` modules: the library is usable without the command line."""
    import ast

    package = Path(__file__).resolve().parents[1] / "src" / "flanet"
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(package)}: {n}" for n in names if n.split(".")[-1] == "commands"]
    assert offenders == []


def test_every_command_has_a_description_and_every_option_a_help() -> None:
    """`--help` a person can read (issue 27 item 7): `flanet smoke --help` said nothing of what it does."""
    import argparse

    from flanet.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command, sub in action.choices.items():
                    if not sub.description:
                        missing.append(f"{name} {command}: no description")
                    walk(sub, f"{name} {command}")
            elif action.help is None and action.option_strings:
                missing.append(f"{name} {'/'.join(action.option_strings)}: no help")

    walk(build_parser(), "flanet")
    assert missing == []
