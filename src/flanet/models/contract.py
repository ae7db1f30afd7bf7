"""The one interface every registered model (:func:`flanet.models.create_model`) meets.

As smp's ``SegmentationModel`` and timm's uniform model API, training, evaluation,
streaming, export and cost counting talk to any model through these members only, never
by probing for attributes or reaching into a model's parts.

A video is streamed through one per-video state (:class:`~flanet.models.state.StreamState`) that
the model makes (:meth:`VideoSegmentationModel.init_state`): the causal window of ``num_frames``
frames by default (FLA-Net, the image models), a bounded memory of past frames and their predicted
masks for a memory network (:mod:`flanet.models.memory`). :meth:`VideoSegmentationModel.step` is
the one way a frame goes through it: ``decode(state.read(features))``, then ``state.write(output)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor, nn

from flanet.models.outputs import SegmentationOutput
from flanet.models.state import StreamState
from flanet.models.windows import CausalWindows


class VideoSegmentationModel(nn.Module, ABC):
    """A model that segments the current frame I_t of a clip ``[t, t-1, ...]``.

    Attributes:
        num_frames: T, frames per clip the model reads in training (1 for an image baseline; FLA-Net
            reads I_t, I_{t-1}, I_{t-2}, Section 3.1), which is also its streaming window unless
            :meth:`init_state` gives another state (a memory model's clip is the length its paper
            trains with).
        has_heatmap: whether the model predicts the lesion-centre heatmap H_t
            (the localisation branch, Section 3.2).
        config: ``{"name": ..., "options": {...}}``, set by :func:`~flanet.models.create_model`:
            the registered name and every option of its options dataclass, which rebuild it
            (:func:`~flanet.models.rebuild_model`).
        encoder: the per-frame encoder that :meth:`encode` runs.
        trained_image_size: the input side S the weights were trained at, when known
            (:func:`~flanet.models.load_checkpoint` sets it from the checkpoint); None otherwise.
    """

    num_frames: int
    has_heatmap: bool
    config: dict
    encoder: nn.Module
    trained_image_size: int | None = None

    @property
    @abstractmethod
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""

    @abstractmethod
    def encode(self, frames: Tensor) -> list[Tensor]:
        """Encodes frames independently: ``(N, 3, H, W)`` -> per-level feature maps ``(N, C_l, h_l, w_l)``."""

    @abstractmethod
    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """Predicts frame t from what the state read for it, t first: the features of ``num_frames``
        frames (as :meth:`encode` gave them) for a window model, the current frame's features and the
        memory's entries for a memory model."""

    def init_state(self) -> StreamState:
        """A new per-video state: by default the causal window of ``num_frames`` frames.

        A model that reads more than a fixed window (a memory of past frames and predictions)
        overrides this; its state is bounded (an option of the model's options dataclass).
        """
        return CausalWindows(self.num_frames)

    def step(self, state: StreamState, frame_features: Sequence[Tensor]) -> tuple[SegmentationOutput, StreamState]:
        """The output for the next frame of a stream, and the state after it.

        Args:
            state: from :meth:`init_state`, fed every earlier frame of the video in order.
            frame_features: :meth:`encode`'s levels for the next frame, ``(1, ...)`` each (a recurrent
                state also takes one frame of each of ``N`` videos, ``(N, ...)``).

        Returns:
            ``decode(state.read(frame_features))`` and ``state``, which has then been written with it.
        """
        output = self.decode(state.read(frame_features))
        state.write(output)
        return output, state

    @abstractmethod
    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)``, current frame first -> :class:`SegmentationOutput` for frame t."""
