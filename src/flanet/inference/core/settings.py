"""One settings object for :class:`~flanet.inference.VideoSegmenter`, and what a checkpoint says about its input.

As nnU-Net's predictor, the knobs of a segmenter (device, backend, precision, threshold, frames in flight,
...) are one :class:`SegmenterSettings` that ``flanet predict`` (files, archives, live sources), ``flanet
bench`` and Python callers fill once. A checkpoint runs as it was trained without the caller restating
it: the input size (paper, Sec. 4: 352 x 352 unless the recipe said otherwise) comes with the loaded model
(``trained_image_size``, :func:`resolve_image_size`), the temporal edge policy and the input normalisation
(ImageNet statistics, the only one the data layer applies) from its metadata (:func:`trained_edge`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flanet.data.images import input_normalisation
from flanet.defaults import IMAGE_SIZE
from flanet.inference.runtimes.base import RuntimeOptions

__all__ = ["SegmenterSettings", "resolve_image_size", "trained_edge"]

log = logging.getLogger(__name__)


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


def trained_edge(metadata: dict[str, Any] | None, source: str = "checkpoint") -> str | None:
    """The temporal edge policy a checkpoint's model was trained with, or None when it is not recorded.

    A recorded input normalisation must be the one the data layer applies (ImageNet mean and standard
    deviation of RGB / 255): a checkpoint that says otherwise is refused rather than run on wrong inputs.

    Raises:
        ValueError: a recorded normalisation other than ImageNet's (``source`` named).
    """
    metadata = metadata or {}
    train_config = metadata.get("train_config") if isinstance(metadata.get("train_config"), dict) else {}
    data = train_config.get("data") if isinstance(train_config.get("data"), dict) else {}
    recorded, applied = metadata.get("input_normalisation"), input_normalisation()
    if recorded is not None and not (isinstance(recorded, dict) and recorded.get("scale", applied["scale"]) == applied["scale"]
                                     and _same(recorded.get("mean"), applied["mean"])
                                     and _same(recorded.get("std"), applied["std"])):
        raise ValueError(f"{source}: trained with input normalisation {recorded!r}; flanet applies {applied!r} only")
    return next((e for e in (metadata.get("edge"), data.get("edge")) if isinstance(e, str)), None)


def _same(values: Any, expected: Any) -> bool:
    try:
        return len(values) == len(expected) and all(abs(float(v) - e) < 1e-6 for v, e in zip(values, expected))
    except (TypeError, ValueError):
        return False


def resolve_image_size(asked: int | None, trained: int | None, source: str = "the model") -> int:
    """The input size to run at: ``asked``, else the training size, else the paper's :data:`IMAGE_SIZE`.

    A size asked for that differs from the training size is allowed (the weights do run) but logged as a
    warning: the outputs then differ from the model's own (a 128-px model run at 352 flips about a quarter
    of the mask pixels).
    """
    if asked is None:
        return trained or IMAGE_SIZE
    if trained is not None and asked != trained:
        log.warning("%s was trained at image size %d but runs at %d: its outputs will differ from those at its "
                    "own size (leave the size unset to use %d)", source, trained, asked, trained)
    return asked
