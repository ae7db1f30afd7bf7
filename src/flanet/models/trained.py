"""What a checkpoint says about how its model runs: the input size, the temporal edge policy, the normalisation.

A checkpoint runs as it was trained without the caller restating it (issue 24 item 2): the input size
(paper, Sec. 4: 352 x 352 unless the recipe said otherwise) comes with the loaded model
(``trained_image_size``, :func:`resolve_image_size`), the temporal edge policy and the input normalisation
(ImageNet statistics, the only one the data layer applies) from its metadata (:func:`trained_edge`).
:func:`load_trained` is the one loader of a checkpoint to run: :meth:`flanet.inference.VideoSegmenter.from_checkpoint`
(``flanet predict``), ``flanet evaluate`` and ``flanet export`` build through it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

from flanet.data.images import input_normalisation
from flanet.defaults import IMAGE_SIZE
from flanet.models.checkpoint import LoadedCheckpoint, load_checkpoint
from flanet.models.encoder import check_image_size

__all__ = ["TrainedCheckpoint", "load_trained", "resolve_image_size", "trained_edge"]

log = logging.getLogger(__name__)


class TrainedCheckpoint(NamedTuple):
    """A checkpoint loaded to run: the model as rebuilt, and how it was trained.

    Attributes:
        loaded: the model, its configuration and metadata (:func:`flanet.models.load_checkpoint`).
        edge: the temporal edge policy it was trained with, or None when not recorded.
        source: the checkpoint's path, for messages.
    """

    loaded: LoadedCheckpoint
    edge: str | None
    source: str

    def image_size(self, asked: int | None = None) -> int:
        """The size to run at (:func:`resolve_image_size`: ``asked``, else the training size), checked.

        Raises:
            ValueError: a size the model cannot take (not a multiple of its ``size_multiple``).
        """
        size = resolve_image_size(asked, self.loaded.model.trained_image_size, self.source)
        check_image_size(self.loaded.model, size)
        return size


def load_trained(path: str | Path) -> TrainedCheckpoint:
    """Load a flanet checkpoint safely on the CPU, refusing a normalisation flanet does not apply.

    Raises:
        flanet.models.CheckpointError: a missing, unsafe or damaged checkpoint.
        ValueError: a recorded input normalisation other than ImageNet's.
    """
    loaded = load_checkpoint(path, map_location="cpu")
    return TrainedCheckpoint(loaded, trained_edge(loaded.metadata, str(path)), str(path))


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
