"""The one interface every registered model (:func:`flanet.models.create_model`) meets.

As smp's ``SegmentationModel`` and timm's uniform model API, training, evaluation,
streaming, export and cost counting talk to any model through these members only, never
by probing for attributes or reaching into a model's parts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor, nn

from flanet.models.outputs import SegmentationOutput


class VideoSegmentationModel(nn.Module, ABC):
    """A model that segments the current frame I_t of a clip ``[t, t-1, ...]``.

    Attributes:
        num_frames: T, frames per clip the model reads (1 for an image baseline; FLA-Net
            reads I_t, I_{t-1}, I_{t-2}, Section 3.1).
        has_heatmap: whether the model predicts the lesion-centre heatmap H_t
            (the localisation branch, Section 3.2).
        config: ``{"name": ..., "options": {...}}``, set by :func:`~flanet.models.create_model`:
            the registered name and every option of its options dataclass, which rebuild it
            (:func:`~flanet.models.rebuild_model`).
        encoder: the per-frame encoder that :meth:`encode` runs.
    """

    num_frames: int
    has_heatmap: bool
    config: dict
    encoder: nn.Module

    @property
    @abstractmethod
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""

    @abstractmethod
    def encode(self, frames: Tensor) -> list[Tensor]:
        """Encodes frames independently: ``(N, 3, H, W)`` -> per-level feature maps ``(N, C_l, h_l, w_l)``."""

    @abstractmethod
    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """Predicts frame t from the features of ``num_frames`` frames, t first (as :meth:`encode` gave them)."""

    @abstractmethod
    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)``, current frame first -> :class:`SegmentationOutput` for frame t."""
