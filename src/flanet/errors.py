"""One error contract for every command: ``flanet <command>: error: <what> (<file or key>)``.

Commands let exceptions reach :func:`flanet.cli.main`, which prints one line through
:func:`report` and exits with :data:`BAD_INPUT` (2) for bad input or usage and
:data:`FAILED_RUN` (1) for a run that failed; the traceback only with ``flanet -v``.
Standard library only: ``flanet --help`` must stay light.
"""

from __future__ import annotations

import errno
import re
import sys
import traceback
from pathlib import Path

from flanet.data.errors import DataError

BAD_INPUT = 2
FAILED_RUN = 1

#: Names of exception classes (from flanet or the libraries it drives) that mean "a run failed".
_FAILED_RUN_CLASSES = frozenset({"TrainingError", "NonFiniteLossError", "NonFiniteOutputError", "ExportError",
                                 "SourceLostError", "PacsError"})
#: Lightning's "this trainer setting is impossible" (e.g. a GPU accelerator without a GPU).
_BAD_SETTING_CLASSES = frozenset({"MisconfigurationException"})
_INPUT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ELOOP, errno.EACCES,
                           errno.ENAMETOOLONG})
_KEY = re.compile(r"config key '([^']+)'")


class UsageError(ValueError):
    """The command line is incomplete or contradictory (exit status 2)."""


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def exit_status(error: BaseException) -> int:
    """:data:`BAD_INPUT` or :data:`FAILED_RUN` for an exception that ended a command."""
    names = _class_names(error)
    if names & _FAILED_RUN_CLASSES:
        return FAILED_RUN
    if names & _BAD_SETTING_CLASSES:
        return BAD_INPUT
    if isinstance(error, OSError):
        by_class = isinstance(error, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                                      PermissionError))
        return BAD_INPUT if by_class or error.errno in _INPUT_ERRNOS else FAILED_RUN
    return BAD_INPUT if isinstance(error, ValueError) else FAILED_RUN


def _where_first(text: str) -> tuple[str, str] | None:
    """``("what", "where")`` for a message written ``"<path>: <what>"``."""
    head, sep, tail = text.partition(": ")
    if not sep or not tail or "\n" in head:
        return None
    looks_like_path = "/" in head or "\\" in head or (" " not in head and bool(Path(head).suffix))
    return (tail, head) if looks_like_path or Path(head).exists() else None


def describe(error: BaseException) -> str:
    """``<what> (<file or key>)`` on one line."""
    where: str | None = None
    if isinstance(error, OSError) and error.strerror:
        what = error.strerror
        where = error.filename if error.filename is not None else None
        if error.errno == errno.ELOOP:
            what = "symbolic link loop"
        if error.errno == errno.ENOSPC:
            what = "no space left on device: free some space, then resume or rerun"
    else:
        text = str(error).strip() or type(error).__name__
        if isinstance(error, DataError) and error.path is not None:
            what, where = error.message, str(error.path)
        elif (split := _where_first(text)) is not None:
            what, where = split
        else:
            what = text
            key = _KEY.search(text)
            if key:
                where = key.group(1)
        if exit_status(error) == FAILED_RUN and not _class_names(error) & _FAILED_RUN_CLASSES:
            what = f"{type(error).__name__}: {what} (run with -v for the traceback)"
    what = "; ".join(line.strip() for line in what.splitlines() if line.strip())
    return f"{what} ({where})" if where and f"({where})" not in what else what


def report(command: str | None, error: BaseException, verbose: bool) -> int:
    """Print the error line (and with ``verbose`` the traceback first); return the exit status."""
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    print(f"flanet {command or ''}: error: {describe(error)}".replace("flanet : ", "flanet: "), file=sys.stderr)
    return exit_status(error)
