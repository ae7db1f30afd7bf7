"""Atomic file writes: a temporary file in the destination folder, renamed into place.

A write is first made to a hidden temporary file next to its destination (same folder, so the
same file system) and flushed to disk, then :func:`os.replace` puts it in place in one step.
A kill, a full disk or an exception half-way therefore never leaves a truncated file where a
good one was: the old file stays, and the temporary one is removed (or, after ``kill -9``, left
as a ``.<name>.*.tmp`` file that nothing reads).

Every file put in place follows the user's umask, as ``open()`` would have made it: the temporary
file is created 0600 (``mkstemp``) and given ``0666 & ~umask`` before the rename (issue 22 item 8:
checkpoints, ``config.yaml``, ``metrics.json`` and split lists came out 0600 beside a 0644 CSV).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the umask's bits cleared: what ``open()`` (0666) or ``mkdir()`` (0777) would give."""
    return mode & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Args:
        path: the destination file; its folder is created when missing.

    Yields:
        A path in the same folder to write the whole content to (by any writer: ``torch.save``,
        ``cv2.imwrite``, ``figure.savefig``...). It keeps ``path``'s suffix so that writers which
        choose the format by extension pick the right one.

    Raises:
        Whatever the writer raises; the destination is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as flushed:
            os.fsync(flushed.fileno())
        tmp.chmod(umask_mode())  # mkstemp's 0600 -> what a plain open() gives
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_open(path: str | Path, newline: str | None = None) -> Iterator[TextIO]:
    """A UTF-8 text handle whose content replaces ``path`` atomically when the block ends without error.

    For writers that stream into a handle (``csv.writer``, ``yaml.safe_dump``); see :func:`atomic_path`.
    """
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline=newline) as handle:
        yield handle


#: Name of the file that marks an output folder whose command has not finished (yet, or ever).
INCOMPLETE = "INCOMPLETE"


def mark_incomplete(folder: Path, command: str) -> None:
    """Mark ``folder`` as being written by ``command``; :func:`mark_complete` removes the mark.

    A command that fails or is killed half-way thus leaves a folder that says so, instead of
    one that looks finished.
    """
    atomic_write_text(Path(folder) / INCOMPLETE, f"{command} has not finished writing this folder: "
                      "it stopped or is still running; rerun it to complete the outputs\n")


def mark_complete(folder: Path) -> None:
    """Remove the mark of :func:`mark_incomplete` (the last step of a command that succeeded)."""
    (Path(folder) / INCOMPLETE).unlink(missing_ok=True)


def output_marker(command: str) -> str:
    """Name of the file that marks a folder as written by ``flanet <command>``."""
    return f".flanet-{command}"


def prepare_output_folder(
    out: str | Path, command: str, *, inputs: Sequence[str | Path] = (), force: bool = False, reuse: bool = False
) -> Path:
    """Create the output folder of ``flanet <command>``: the one guard of every command that writes a folder.

    Nothing the user gave us is touched: a folder that is, lies inside or contains one of
    ``inputs`` is refused, and so is a non-empty folder that ``flanet <command>`` did not write
    (its marker file, :func:`output_marker`, is missing), even with ``force``.

    Args:
        out: the folder (created with its parents).
        command: the command writing it (``predict``, ``evaluate``, ``demo``).
        inputs: files and folders the command reads.
        force: replace an earlier output of the command (deleted first).
        reuse: write into an earlier output of the command (resume; files are overwritten).

    Returns:
        The resolved folder, with its marker written.

    Raises:
        ValueError: the folder overlaps an input.
        FileExistsError: the folder is not empty and was not written by the command, or is an
            earlier output and neither ``force`` nor ``reuse`` is given.
    """
    resolved = Path(out).resolve()
    for source in (Path(p).resolve() for p in inputs):
        if resolved == source or source in resolved.parents:
            where = "it is the input" if resolved == source else "it lies inside the input"
        elif resolved in source.parents:
            where = "it contains the input"
        else:
            continue
        raise ValueError(f"{out}: output folder overlaps the input {source} ({where}); choose another --out")
    marker = resolved / output_marker(command)
    if resolved.exists() and (not resolved.is_dir() or any(resolved.iterdir())):
        if not (force or reuse):
            raise FileExistsError(f"{out}: output folder exists and is not empty; use --force to replace it")
        if not marker.is_file():
            raise FileExistsError(
                f"{out}: exists but was not written by `flanet {command}`; refusing to touch it even with --force"
            )
        if not reuse:
            shutil.rmtree(resolved)
    resolved.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, f"written by flanet {command}\n")
    return resolved
