"""Segmentation metrics under the two published protocols (see docs/metrics.md).

* :mod:`flanet.metrics.standard`: threshold-0.5 Dice, Jaccard, precision, recall, F1 and MAE
  (the breast table, Table 2 of the paper).
* :mod:`flanet.metrics.vps`: the video-polyp toolbox protocol: S-alpha, E-phi, weighted F,
  maxDice, maxIoU, MAE per sequence (the polyp table, Table 4).
* :mod:`flanet.metrics.bootstrap`: 95% bootstrap confidence intervals over videos.
"""

from flanet.metrics.bootstrap import bootstrap_intervals, percentile_interval, resample_counts
from flanet.metrics.standard import frame_scores, summarise, summary_from_sums, video_sums
from flanet.metrics.vps import (
    FrameScores,
    SequenceScores,
    prepare_predictions,
    score_frames,
    score_sequence,
    sequence_scores,
    stack_sequences,
    summarise_sequences,
    summary_from_sequences,
)

__all__ = [
    "FrameScores",
    "SequenceScores",
    "bootstrap_intervals",
    "frame_scores",
    "percentile_interval",
    "prepare_predictions",
    "resample_counts",
    "score_frames",
    "score_sequence",
    "sequence_scores",
    "stack_sequences",
    "summarise",
    "summarise_sequences",
    "summary_from_sequences",
    "summary_from_sums",
    "video_sums",
]
