"""Interleaved rounds of ``flanet bench``: medians over rounds and ratios paired within a round.

A shared or throttled machine's speed drifts: on the project's 2-core VM the authors' model ran
at 1.25 and at 1.82 frames/s two minutes apart, so a ratio of two measurements taken minutes apart
says little. ``flanet bench --rounds R`` therefore runs its whole list of configurations R times
round-robin (round 1 runs each configuration once, each in a fresh worker process, then round 2, ...),
so every configuration is measured R times across the same span of time. Here a configuration's
R per-round records become one: its frames/s is the median over rounds (of each round's median of
timed runs), its peak memory the largest of the rounds, and a ratio between two configurations
(``x_authors``, stream vs clips) is the median over rounds of the ratio of the two measurements of
the same round, which cancels drift slower than a round.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["combine_rounds", "paired_ratio", "with_range"]

_LARGEST = ("peak_rss_mb", "rss_after_model_mb", "cuda_peak_allocated_mb")
_DECODE = ("decode_ms", "frame_ms", "decode_share", "latency_ms_p50", "latency_ms_p95",  # stream rows
           "streaming_fps", "model_only_fps", "x_model_only")  # end-to-end rows


def combine_rounds(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's worker records, in round order, as one record.

    ``fps`` is the median over rounds and ``ms_per_frame`` its inverse; ``rounds_fps`` and
    ``rounds_run_seconds`` keep every round (``run_seconds`` goes); memory fields are the largest
    of the rounds; ``decode_ms``, ``frame_ms``, ``decode_share`` and the latency percentiles (stream rows),
    ``streaming_fps``, ``model_only_fps`` and ``x_model_only`` (end-to-end rows) are each the median over
    rounds, with every round in ``rounds_decode_ms`` etc. The rest (settings, machine) is the
    first round's.

    Args:
        records: the worker's result record of each round (at least one).

    Returns:
        The combined record.
    """
    first = records[0]
    fps = [r["fps"] for r in records]
    combined = {k: v for k, v in first.items() if k != "run_seconds"}
    combined.update(fps=statistics.median(fps), rounds_fps=fps, rounds_run_seconds=[r["run_seconds"] for r in records])
    combined["ms_per_frame"] = 1000 / combined["fps"]
    for key in (k for k in _LARGEST if k in first):
        values = [r[key] for r in records if r[key] is not None]
        combined[key] = max(values) if values else None
    for key in (k for k in _DECODE if k in first):
        combined[f"rounds_{key}"] = [r[key] for r in records]
        combined[key] = statistics.median(combined[f"rounds_{key}"])
    return combined


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, list[float]]:
    """Median over rounds of ``numerator[r] / denominator[r]``, and those per-round ratios."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return statistics.median(ratios), ratios


def with_range(median: float, values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """``"6.12 (5.80-6.40)"``: the median and, over more than one round, the min-max range."""
    text = f"{median:.{digits}f}{unit}"
    if len(values) < 2:
        return text
    return f"{text} ({min(values):.{digits}f}-{max(values):.{digits}f}{unit})"
