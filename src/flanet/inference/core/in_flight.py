"""Several frames in flight: the streaming loop of an exported backend spread over worker threads.

On a few cores one frame at a time leaves them partly idle: many of Res2Net-50's and the decoders'
operations are too small to split well across threads (on the 2-core CPU of docs/benchmarks.md the
onnxruntime encoder took 136 ms with two threads and 188-207 ms with one, not 272). With
``frames_in_flight = N`` each of N workers runs one frame's encoder and decoder on a share of the
threads while the others run theirs, which raises throughput (frames/s) at the cost of latency
(each frame takes longer), the right trade for recorded videos and archives, not for a live
stream.

Nothing about the outputs changes. Frame ``i``'s worker encodes it, publishes its features,
waits for those of frames ``i-1`` and ``i-2`` (the causal window of
:func:`flanet.models.windows.causal_window_indices`: the first frame stands in before the video
start) and decodes; results come back in frame order. Frames are taken from the input only as
workers free up, and only the features of the last ``num_frames - 1 + N`` frames are kept, so
memory stays flat on any length of video.

No deadlock is possible: a worker waits only for encoder passes of earlier frames, whose workers
started before its own (the pool's queue is first in, first out) and wait for nothing before
publishing them. Each worker is handed its own state's future with those of its window, never a
key to look up: the table of recent states belongs to the feeding thread, which drops frame
``i-2``'s entry when it submits frame ``i``, possibly before frame ``i-2``'s worker has been
scheduled (with a lookup that worker then failed without publishing, and frames ``i-1`` and ``i``
waited for it forever: issue 22, one run in four at 4 frames in flight). A frame cancelled on an
early stop publishes a cancellation, so a started later frame waiting for it ends too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any

import torch

from flanet.models.windows import causal_window_indices

__all__ = ["pipelined_predictions"]


def pipelined_predictions(
    frames: Iterable[Any],
    encode: Callable[[Any], Any],
    decode: Callable[[list[Any]], Any],
    num_frames: int,
    in_flight: int,
) -> Iterator[tuple[Any, Any]]:
    """Yields ``(frame, decode(window))`` for every frame, in order, with up to ``in_flight`` frames at work.

    Args:
        frames: prepared inputs in video order (each passed to ``encode``), read lazily.
        encode: per-frame state of one input (thread-safe; runs in a worker).
        decode: output for the window ``[state_t, state_{t-1}, ...]`` of ``num_frames`` states
            (thread-safe; runs in a worker).
        num_frames: T, states per window.
        in_flight: N >= 1, frames processed at the same time.

    Raises:
        ValueError: ``in_flight`` < 1.
        Exception: the first error of ``encode``/``decode``, at the frame it happened to (the frames
            before it have been yielded); later frames are abandoned.
    """
    if in_flight < 1:
        raise ValueError(f"frames in flight must be >= 1, got {in_flight}")
    states: dict[int, Future] = {}  # encoder outputs of the recent frames, by frame index
    pending: deque[tuple[Any, Future, Future]] = deque()  # (frame, its output, its state)
    executor = ThreadPoolExecutor(in_flight, thread_name_prefix="flanet-frame")

    def work(own: Future, frame: Any, window: list[Future]) -> Any:
        try:
            own.set_result(encode(frame))
        except BaseException as error:  # later frames waiting for this state fail too
            own.set_exception(error)
            raise
        return decode([state.result() for state in window])

    try:
        for index, frame in enumerate(frames):
            own = states[index] = Future()
            window = causal_window_indices(torch.tensor([index]), num_frames)[0].tolist()
            pending.append((frame, executor.submit(work, own, frame, [states[i] for i in window]), own))
            states.pop(index - num_frames + 1, None)  # no later window needs it (submitted ones hold theirs)
            if len(pending) == in_flight:
                frame, result, _ = pending.popleft()
                yield frame, result.result()
        while pending:
            frame, result, _ = pending.popleft()
            yield frame, result.result()
    finally:  # stopped early (an error, or the consumer closed the stream): drop the frames not started
        for _, result, own in pending:
            if result.cancel():  # never runs: a started later frame waiting for its state ends too
                own.set_exception(CancelledError())
        executor.shutdown(wait=True)
