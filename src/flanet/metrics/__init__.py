"""Segmentation metrics under the two published protocols (see docs/metrics.md).

* :mod:`flanet.metrics.standard`: threshold-0.5 Dice, Jaccard, precision, recall, F1 and MAE
  (the breast table, Table 2 of the paper).
* :mod:`flanet.metrics.vps`: the video-polyp toolbox protocol: S-alpha, E-phi, weighted F,
  maxDice, maxIoU, MAE per sequence (the polyp table, Table 4).
* :mod:`flanet.metrics.bootstrap`: 95% bootstrap confidence intervals over videos.
* :mod:`flanet.metrics.names`: the metric names every table, summary and log reads.
* :mod:`flanet.metrics.video`: video behaviour (flicker, detection, lesion-centre error, heatmap peaks).
* :mod:`flanet.metrics.detection`: one box per frame from a segmentation, COCO AP / AP50 / AP75.
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.metrics.bootstrap": ("bootstrap_intervals", "percentile_interval", "resample_counts"),
        "flanet.metrics.standard": ("frame_scores", "summarise", "summary_from_sums", "video_sums"),
        "flanet.metrics.vps": ("FrameScores", "SequenceScores", "prepare_predictions", "score_frames", "score_sequence", "sequence_scores", "stack_sequences", "summarise_sequences", "summary_from_sequences"),
    },
)
