"""CSV cells that a spreadsheet cannot run: text starting like a formula is escaped (OWASP CSV injection).

A video id or frame name such as ``=HYPERLINK("http://x", "open")`` or ``@SUM(A1)`` written into a
CSV cell is run as a formula by Excel, LibreOffice and Google Sheets when the file is opened.
Every CSV flanet writes passes its cells through :func:`escape_cell`: text starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return, unless it reads as a number (``-0.25``), gets a
leading apostrophe, which spreadsheets show as text. Files flanet reads back (split lists, label
files) pass their cells through :func:`unescape_cell`, so an id survives the round trip.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FORMULA_STARTS", "escape_cell", "escape_row", "escape_rows", "unescape_cell"]

#: First characters that make a spreadsheet read a cell as a formula (or strip into one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def escape_cell(value: Any) -> Any:
    """``value``, or ``"'" + value`` for text a spreadsheet would run as a formula; numbers are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def escape_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dict row with every cell escaped (:func:`escape_cell`)."""
    return {key: escape_cell(value) for key, value in row.items()}


def escape_rows(rows: Iterable[Iterable[Any]]) -> list[list[Any]]:
    """List rows (``csv.writer``) with every cell escaped."""
    return [[escape_cell(value) for value in row] for row in rows]


def unescape_cell(text: str) -> str:
    """The text :func:`escape_cell` was given: a leading apostrophe before a formula start is dropped."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) and not _is_number(text[1:]) else text
