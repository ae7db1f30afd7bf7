"""Models with a memory: a bounded store of past frames encoded with their predicted masks.

Memory networks for video object segmentation (STM, Oh et al., ICCV 2019, Sec. 3; AFB-URR, Liang
et al., NeurIPS 2020) predict frame ``t`` by reading a memory of earlier frames, each stored with its
mask. Here no mask is ever given (fully automatic segmentation, FLA-Net's setting): every entry is made
from the model's own prediction for its frame (:meth:`MemoryVideoModel.memorize`), at test time and in
training alike, and the first frame of a video is predicted from an empty memory.

:class:`FrameMemory` is the :class:`~flanet.models.state.StreamState` of such a model. It keeps STM's
choice of frames (Sec. 3.3: the first frame, the previous frame, and every ``every``-th frame), bounded
to ``size`` entries (the oldest sampled frame goes first), so a 3000-frame video streams in flat
memory; STM's unbounded memory is the limit ``size`` -> infinity.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from flanet.models.contract import VideoSegmentationModel
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelOptions
from flanet.models.state import StreamState

__all__ = ["FrameMemory", "MemoryOptions", "MemoryVideoModel"]

#: ``memorize(levels of the frame, its output) -> the frame's memory entry``.
Memorize = Callable[[list[Tensor], SegmentationOutput], list[Tensor]]


@dataclass(frozen=True)
class MemoryOptions(ModelOptions):
    """Options every memory model has (its own options dataclass subclasses this one).

    Attributes:
        memory_size: most frames the memory holds (the previous frame, the first frame, the sampled
            ones): bounds memory and time per frame on any video length.
        memory_every: a frame is kept in the memory every this many frames (STM: 5).
        memory_first: keep the video's first frame (STM keeps it: its mask is the given one there; here
            it is the model's own prediction).
    """

    memory_size: int = 8
    memory_every: int = 5
    memory_first: bool = True


class FrameMemory(StreamState):
    """A bounded memory of past frames' entries, newest first (see the module docstring).

    Recurrent: each :meth:`read` (the next frame, one per video, ``(N, ...)`` per level) is followed by
    the :meth:`write` of its output, which stores the frame's entry made by ``memorize``.

    Args:
        memorize: the entry of a frame from its levels and its output.
        size: most entries held (>= 1).
        every: sample a frame into the memory every this many frames (>= 1).
        keep_first: keep the first frame's entry for the whole video (when ``size`` >= 2).
    """

    recurrent = True
    window = None

    def __init__(self, memorize: Memorize, size: int, every: int, keep_first: bool = True) -> None:
        if size < 1 or every < 1:
            raise ValueError(f"memory size and sampling interval must be >= 1, got size {size}, every {every}")
        self.memorize, self.size, self.every = memorize, size, every
        self.keep_first = keep_first and size >= 2
        self.frames_seen = 0
        self._first: list[Tensor] | None = None
        self._sampled: list[list[Tensor]] = []  # oldest first
        self._previous: list[Tensor] | None = None  # the previous frame, when it is not stored otherwise
        self._current: list[Tensor] | None = None  # read, not yet written
        self._read_entries = 0

    def entries(self) -> list[list[Tensor]]:
        """The entries held, newest first: previous frame, sampled frames, first frame."""
        held = [] if self._previous is None else [self._previous]
        held += self._sampled[::-1]
        return held + ([] if self._first is None else [self._first])

    def read(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[list[Tensor]]:
        """``[levels, *entries]``: the current frame, then the memory (empty at the video's first frame)."""
        if targets is not None:
            raise ValueError("a memory reads one frame at a time (targets apply to window states)")
        if self._current is not None:
            raise RuntimeError("the previous frame's output was not written to the memory")
        self._current = list(levels)
        self.frames_seen += 1
        entries = self.entries()
        self._read_entries = len(entries)
        return [self._current, *entries]

    def write(self, output: SegmentationOutput) -> None:
        """Store the entry of the frame just read, made from its output, and drop what the bound excludes."""
        if self._current is None:
            raise RuntimeError("write follows the read of a frame")
        entry = self.memorize(self._current, output)
        self._current = None
        index = self.frames_seen - 1
        if index == 0 and self.keep_first:
            self._first, self._previous = entry, None
            return
        # one slot stays for the previous frame, unless every frame is sampled (then the previous one is too)
        sampled_slots = self.size - int(self.keep_first) - int(self.every > 1)
        if index % self.every == 0 and sampled_slots > 0:
            self._sampled = [*self._sampled, entry][-sampled_slots:]
            self._previous = None
        else:
            self._previous = entry

    @property
    def context_frames(self) -> int:
        """The current frame and the memory entries its read gave ``decode``."""
        return 1 + self._read_entries

    @property
    def held_frames(self) -> int:
        """Entries held (at most ``size``)."""
        return len(self.entries())


class MemoryVideoModel(VideoSegmentationModel):
    """Base of the memory models: :meth:`init_state` is a :class:`FrameMemory`, :meth:`forward` streams the clip.

    Subclasses set ``memory`` (their :class:`MemoryOptions`) and implement :meth:`encode`,
    :meth:`decode` (``[current levels, *entries]``, the memory possibly empty) and :meth:`memorize`.
    Training clips have ``num_frames`` frames, current first; :meth:`forward` runs the memory over
    them oldest first, each frame's own prediction going into the memory (with its gradient), and
    returns the current frame's output: the same computation as streaming the clip.
    """

    memory: MemoryOptions

    @abstractmethod
    def memorize(self, levels: list[Tensor], output: SegmentationOutput) -> list[Tensor]:
        """The memory entry of a frame from its levels (:meth:`encode`) and its output."""

    def init_state(self) -> FrameMemory:
        """An empty memory bounded by the model's ``memory_size`` option."""
        memory = self.memory
        return FrameMemory(self.memorize, memory.memory_size, memory.memory_every, memory.memory_first)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, L, 3, H, W)``, current frame first, L >= 1 -> output for frame t, the memory read over the clip."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] < 1:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        b, length = clip.shape[:2]
        levels = [level.unflatten(0, (b, length)) for level in self.encode(clip.flatten(0, 1))]
        state, output = self.init_state(), None
        for k in range(length - 1, -1, -1):  # oldest first
            output, state = self.step(state, [level[:, k] for level in levels])
        assert output is not None
        return output
