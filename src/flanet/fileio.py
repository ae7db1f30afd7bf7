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
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)


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
        Whatever the writer raises; the destination is then left as it was. An ``OSError``
        that names no file (a full disk seen by ``write()``) is raised again naming ``path``.
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
    except OSError as error:
        raise named_os_error(error, path) from error
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(folder: str | Path, prefix: str = ".staging-") -> Iterator[Path]:
    """Yield an empty folder next to ``folder`` to write into; on success it becomes ``folder`` in one rename.

    Readers never see a half-written ``folder`` (a cache entry, an export). When another process
    published the same ``folder`` first, its copy is kept and this one dropped. The staging folder
    is removed whatever happens; it has the permissions ``mkdir`` gives under the user's umask.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    staging.chmod(umask_mode(0o777))  # mkdtemp's 0700 -> what mkdir gives
    try:
        yield staging
        try:
            staging.rename(folder)
        except OSError:  # another process finished the same folder first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def named_os_error(error: OSError, path: str | Path) -> OSError:
    """``error`` itself when it names a file, else the same error naming ``path`` (for the error line)."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def file_sha256(path: str | Path, limit: int | None = None) -> str:
    """SHA-256 (hex) of a file's bytes, or of its first ``limit`` bytes."""
    digest, left = hashlib.sha256(), limit if limit is not None else -1
    with Path(path).open("rb") as handle:
        while left != 0 and (block := handle.read(1 << 20 if left < 0 else min(1 << 20, left))):
            digest.update(block)
            left = left - len(block) if left > 0 else left
    return digest.hexdigest()


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
    """Remove the mark of :func:`mark_incomplete` and release the folder's lock (the last step of a command that succeeded)."""
    (Path(folder) / INCOMPLETE).unlink(missing_ok=True)
    release_output_folder(folder)


#: The lock file of an output folder: ``flock``-ed by the one process writing the folder, holding its PID.
LOCK_NAME = ".flanet-lock"
_HELD: dict[Path, int] = {}  # folder -> descriptor of its locked file, for the folders this process writes


class OutputBusyError(ValueError):
    """Another process is writing the output folder (exit status 2: choose another --out, or wait)."""


def lock_output_folder(folder: str | Path) -> None:
    """Make this process the one writer of ``folder``: an exclusive ``flock`` on its :data:`LOCK_NAME`.

    Two commands writing one folder corrupted it (issue 22 item 4: a summary claiming 12 frames
    beside an 11-row CSV). The lock is held until :func:`release_output_folder` (or the process
    ends: the kernel releases an ``flock`` with its holder, so a lock left by a killed process is
    free, and is taken over with a note naming the dead PID). Locking a folder this process
    already holds does nothing.

    Raises:
        OutputBusyError: another process holds the lock (its PID is named).
    """
    folder = Path(folder).resolve()
    if folder in _HELD:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, umask_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise OutputBusyError(f"{folder}: output folder is being written by another flanet process (PID {holder}, "
                              f"lock {path}); wait for it to finish or choose another --out") from None
    previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
    if previous.isdigit() and int(previous) != os.getpid():
        log.info("%s: taking over the lock of PID %s, which is no longer running", folder, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[folder] = fd


def release_output_folder(folder: str | Path) -> None:
    """Release this process's lock of ``folder`` (:func:`lock_output_folder`); nothing when it holds none.

    The lock file stays (deleting it would let a waiting process and a new one both lock); its PID is cleared.
    """
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.close(fd)


def output_marker(command: str) -> str:
    """Name of the file that marks a folder as written by ``flanet <command>``."""
    return f".flanet-{command}"


def refuse_overlap(out: str | Path, inputs: Sequence[str | Path | None], flag: str = "--out") -> Path:
    """Refuse an output folder that is, lies inside or contains an input; returns it resolved.

    Every command calls this (through :func:`prepare_output_folder`, or alone) before it writes or
    deletes anything: an input inside the output would be deleted by ``--force`` (a checkpoint in
    ``--out``), written into (an archive row's frames) or read as data (a comparison trained
    into its own data set), issue 22 item 3.

    Args:
        out: the folder the command writes.
        inputs: every file and folder it reads (data, checkpoint, manifest and its rows); None skipped.
        flag: the option that named ``out``, for the message.

    Raises:
        ValueError: naming the output and the input it overlaps.
    """
    resolved = Path(out).resolve()
    for source in (Path(p).resolve() for p in inputs if p is not None):
        if resolved == source or source in resolved.parents:
            where = "it is the input" if resolved == source else "it lies inside the input"
        elif resolved in source.parents:
            where = "it contains the input"
        else:
            continue
        raise ValueError(f"{out}: output folder overlaps the input {source} ({where}); choose another {flag}")
    return resolved


def prepare_output_folder(
    out: str | Path, command: str, *, inputs: Sequence[str | Path | None] = (), force: bool = False, reuse: bool = False
) -> Path:
    """Create the output folder of ``flanet <command>``: the one guard of every command that writes a folder.

    Nothing the user gave us is touched: a folder that is, lies inside or contains one of
    ``inputs`` is refused, and so is a non-empty folder that ``flanet <command>`` did not write
    (its marker file, :func:`output_marker`, is missing), even with ``force``. The folder is
    locked for this process (:func:`lock_output_folder`) before anything in it is deleted or
    reused; :func:`mark_complete` releases it.

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
        OutputBusyError: another process is writing the folder.
    """
    resolved = refuse_overlap(out, inputs)
    marker = resolved / output_marker(command)
    if resolved.exists() and (not resolved.is_dir() or any(p.name != LOCK_NAME for p in resolved.iterdir())):
        if not (force or reuse):
            raise FileExistsError(f"{out}: output folder exists and is not empty; use --force to replace it")
        if not marker.is_file():
            raise FileExistsError(
                f"{out}: exists but was not written by `flanet {command}`; refusing to touch it even with --force"
            )
        lock_output_folder(resolved)  # before anything is deleted or reused
        if not reuse:
            for entry in resolved.iterdir():  # everything but the lock we hold
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    lock_output_folder(resolved)
    atomic_write_text(marker, f"written by flanet {command}\n")
    return resolved
