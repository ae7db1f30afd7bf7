"""Overlapping the stages of a video run: one stage reads ahead in a thread, another maps over worker threads.

``flanet predict`` decodes a frame, prepares it, runs the model, resizes its outputs, measures and draws
them, and encodes the mask PNG and the overlay video. Run one after the other on one thread, everything but
the model leaves the cores idle while the model waits, and the model leaves them idle while the rest runs
(docs/benchmarks.md). Most of that work releases the GIL (OpenCV, PNG and JPEG encoding, PyAV's encoder,
torch's and numpy's array operations), so threads overlap it:

* :func:`read_ahead` runs an iterator in a background thread, at most ``depth`` items ahead of its consumer
  (decoding and preparing frames ahead of the model; the model ahead of the writers);
* :func:`ordered_map` applies a function to the items of an iterator on ``workers`` threads and yields the
  results in the items' order (per-frame post-processing).

Both keep what a sequential loop guarantees: items come out in their order; an error raised for an item
(decoding a damaged frame, a frame of another size, a non-finite output, a full disk) is raised to the
consumer at that item, after every earlier item has come out, and nothing after it is taken further;
memory is bounded (``depth`` items in a queue, ``depth`` futures in flight); closing the consumer's iterator
(an early stop, an error downstream) stops the thread or workers and closes the source iterator, so files
the source holds open are released before the caller finishes its own files. ``depth = 0`` /
``workers = 0`` run the stage inline, in the consumer's thread: the sequential loop itself.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ordered_map", "read_ahead"]

T = TypeVar("T")
R = TypeVar("R")

_END = object()


def _close(items: Iterator[object]) -> None:
    """Close a generator (runs its ``finally`` blocks: open files, capture handles, worker threads)."""
    if isinstance(items, Generator):
        items.close()


def read_ahead(items: Iterable[T], depth: int, name: str = "flanet-read-ahead") -> Iterator[T]:
    """Yield the items of ``items``, produced by a background thread up to ``depth`` items ahead.

    Args:
        items: any iterable; it is iterated (and closed, when it is a generator) in the background thread only.
        depth: items buffered between the thread and the consumer (0: no thread, ``items`` as they are).
        name: the thread's name (for profiles and debuggers).

    Raises:
        BaseException: whatever iterating ``items`` raised, at the position it was raised.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                buffer.put((True, item))
                if stop.is_set():
                    return
            buffer.put((False, _END))
        except BaseException as error:  # handed to the consumer, raised at this position
            buffer.put((False, error))
        finally:
            _close(iterator)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = buffer.get()
            if not ok:
                if item is _END:
                    return
                raise item  # type: ignore[misc]
            yield item  # type: ignore[misc]
    finally:  # normal end, an error, or the consumer closed us: the thread ends after its current item
        stop.set()
        while thread.is_alive():
            try:
                buffer.get(timeout=0.05)  # unblock a put on a full buffer
            except queue.Empty:
                pass
        thread.join()


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, depth: int | None = None,
                name: str = "flanet-post") -> Iterator[R]:
    """Yield ``function(item)`` for each item, in order, computed by ``workers`` threads.

    Args:
        function: applied to each item (thread-safe; it runs in a worker).
        items: iterated lazily in the consumer's thread, at most ``depth`` items ahead of the one yielded.
        workers: worker threads (0: ``function`` runs inline, in the consumer's thread).
        depth: items in flight (default ``2 * workers``).
        name: prefix of the workers' names.

    Raises:
        BaseException: the first error of ``function`` or of ``items``, at its item (earlier results yielded).
    """
    iterator = iter(items)
    if workers <= 0:
        try:
            for item in iterator:
                yield function(item)
        finally:
            _close(iterator)
        return
    depth = max(1, depth if depth is not None else 2 * workers)
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    failure: Exception | None = None
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as error:  # the input failed at this item: the items before it come out first
                failure = error
                break
            pending.append(pool.submit(function, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        if failure is not None:
            raise failure
    finally:  # an error or an early stop: later items are dropped, the running ones finish
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        _close(iterator)
