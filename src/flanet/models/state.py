"""The per-video state of a streaming model: what it keeps of the frames it has seen.

Every model predicts frame ``t`` from its own features and what it kept of the earlier frames:
FLA-Net from the features of ``t-1`` and ``t-2`` (paper, Sec. 3, Fig. 2: the causal window,
:class:`flanet.models.windows.CausalWindows`), a memory network such as STM (Oh et al., ICCV 2019)
from a memory of past frames encoded with its own predicted masks
(:class:`flanet.models.memory.FrameMemory`). A :class:`StreamState` is that store, one per video,
made by :meth:`flanet.models.contract.VideoSegmentationModel.init_state`. Every frame goes through
it the same way, by the model's :meth:`~flanet.models.contract.VideoSegmentationModel.step` and by
every runtime and loop that streams (:class:`flanet.inference.VideoSegmenter`, the ``stream`` mode of
``flanet evaluate``)::

    inputs = state.read(model.encode(frame))   # decode's input: the current frame first, then context
    output = model.decode(inputs)
    state.write(output)                        # a memory keeps what it needs of the prediction

No ground truth enters a state: a memory holds the model's own predictions, at test time as in
training (fully automatic segmentation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor

from flanet.models.outputs import SegmentationOutput

__all__ = ["StreamState"]


class StreamState(ABC):
    """What a model keeps of one video's frames between :meth:`read` calls (one instance per video).

    Attributes:
        recurrent: the next frame's input depends on this frame's output (:meth:`write` stores something
            made from the prediction): frames are decoded one after the other, each :meth:`read` followed
            by its :meth:`write`, and :meth:`read` takes one frame of each of ``N`` videos side by side.
        window: the state is the causal window of this many frames (each frame's input is its last
            ``window`` frames, the first frame repeated before the video start), so clip evaluation,
            several frames in flight and an exported fixed-input decoder reproduce it; None when the
            input reaches further back (a memory, an anchor frame): such a model streams in PyTorch and
            is refused by ``flanet export``.
        frames_seen: frames read so far (per video).
    """

    recurrent: bool = False
    window: int | None = None
    frames_seen: int = 0

    @abstractmethod
    def read(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[list[Tensor]]:
        """Add the next frame(s) and return the input of ``decode`` for them.

        Args:
            levels: per level, what ``model.encode`` gave for the new frames, ``(N, ...)``. A
                non-recurrent state takes the next ``N`` consecutive frames of its one video (in video
                order); a recurrent one takes one frame of each of ``N`` videos (``N = 1`` in a stream).
            targets: non-recurrent states only: ``(M,)`` positions among the ``N`` frames whose inputs
                are wanted (default: all).

        Returns:
            ``decode``'s input: entries, the current frame first, each a list of tensors with the
            frames (or videos) in the leading dimension.
        """

    def write(self, output: SegmentationOutput) -> None:  # noqa: B027 (a hook with a default: most states keep nothing)
        """Keep what the state needs of the output of the frame(s) just read (default: nothing)."""

    @property
    @abstractmethod
    def context_frames(self) -> int:
        """Distinct real frames the last :meth:`read` gave ``decode`` for its last frame (1 at a video's start)."""

    @property
    @abstractmethod
    def held_frames(self) -> int:
        """Frames whose values the state holds now: bounded, so a stream runs in flat memory."""
