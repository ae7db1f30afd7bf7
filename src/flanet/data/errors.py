"""Errors raised by the data layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Bad or unusable input data; the message names the file and the problem.

    Args:
        message: what is wrong.
        path: the offending file or folder, prepended to the message when given; a URL
            (``rtsp://...``, ``https://...``) is kept as given (a ``Path`` would fold its ``//``).
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path: Path | str | None = (
            None if path is None else path if isinstance(path, str) and "://" in path else Path(path)
        )
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


@dataclass(frozen=True)
class Problem:
    """One finding about a data set, always tied to a file or folder.

    Attributes:
        severity: ``"error"`` (data unusable as is), ``"warning"`` (usable, but probably not what
            you want) or ``"note"`` (information, e.g. an ignored stray file).
        path: the file or folder concerned.
        message: what is wrong, in words.
    """

    severity: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.path}: {self.message}"
