"""Every ``flanet ...`` command line in the README parses with the real CLI (docs stay true)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from flanet.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_commands() -> list[str]:
    lines, in_block = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        command = line.split("#")[0].strip()
        if in_block and command.startswith("flanet "):
            lines.append(command)
    return lines


def test_readme_has_commands() -> None:
    assert len(_readme_commands()) >= 10


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(args.func)
