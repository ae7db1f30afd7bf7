"""One settings object for :class:`~flanet.inference.VideoSegmenter`.

As nnU-Net's predictor, the knobs of a segmenter (device, backend, precision, threshold, frames in flight,
...) are one :class:`SegmenterSettings` that ``flanet predict`` (files, archives, live sources), ``flanet
bench`` and Python callers fill once. What a checkpoint says about its input (size, edge policy,
normalisation) is :mod:`flanet.models.trained`'s (:func:`resolve_image_size`, :func:`trained_edge`, kept
importable from here).
"""

from __future__ import annotations

from dataclasses import dataclass

from flanet.inference.runtimes.base import RuntimeOptions
from flanet.models.trained import resolve_image_size, trained_edge

__all__ = ["SegmenterSettings", "resolve_image_size", "trained_edge"]


@dataclass(frozen=True)
class SegmenterSettings(RuntimeOptions):
    """Every setting of a :class:`~flanet.inference.VideoSegmenter` (the runtime's ones: :class:`RuntimeOptions`).

    Attributes:
        image_size: side S of the square model input; None: the size the checkpoint's model was trained
            at (:func:`resolve_image_size`), else :data:`flanet.defaults.IMAGE_SIZE`.
        threshold: probability threshold of :attr:`~flanet.inference.FrameResult.mask`.
        adaptive_threads: give torch only the CPUs other processes leave free while streaming; None: on for
            the CPU unless the step is compiled (a compiled step is guarded on torch's thread count).
    """

    image_size: int | None = None
    threshold: float = 0.5
    adaptive_threads: bool | None = None
