"""The causal window: which frames FLA-Net reads to predict frame t, in one place.

FLA-Net predicts frame ``t`` from the frames ``[t, t-1, ..., t-T+1]``, current first (paper,
Sec. 3, Fig. 2; T = ``num_frames`` = 3). Before the start of a video the missing frames are the
first frame repeated: the *causal* edge policy of the data layer (``flanet.data.clips``), the only
one a live stream can follow. Everything that builds windows from per-frame features uses this
module:

* :meth:`flanet.models.FLANet.forward_windows` (training: windows t and t-1 of a longer clip),
  through :func:`gather_windows`;
* :class:`flanet.inference.VideoSegmenter` (one frame at a time) and the ``stream`` mode of
  ``flanet evaluate`` (chunks of frames), through :class:`CausalWindows`, the per-video
  :class:`~flanet.models.state.StreamState` of every model that reads a fixed window (FLA-Net, the
  image models: ``model.init_state()`` by default).

Frames go in in video order (oldest first, as a video is read); each window comes out current
frame first, as the models take it. Windows are gathered by indexing, so a frame's features are
computed once and reused by every window that contains it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flanet.models.state import StreamState


def causal_window_indices(ends: Tensor, num_frames: int) -> Tensor:
    """Frame indices of the windows that predict the frames ``ends``.

    Args:
        ends: ``(M,)`` int64 indices ``t`` of the predicted frames, in video order.
        num_frames: T, frames per window.

    Returns:
        ``(M, T)`` int64: row ``m`` is ``[t, t-1, ..., t-T+1]`` for ``t = ends[m]``, with the indices
        before the video start (< 0) replaced by 0, the first frame (causal edge policy).
    """
    offsets = torch.arange(num_frames, device=ends.device)
    return (ends[:, None] - offsets).clamp_(min=0)


def gather_windows(frames: Tensor, ends: Tensor, num_frames: int, dim: int = 0) -> Tensor:
    """The windows of the frames ``ends`` from a tensor of per-frame values in video order.

    Args:
        frames: per-frame values (images or one level of features), frame ``i`` at index ``i``
            of dimension ``dim``, oldest first.
        ends: ``(M,)`` indices of the predicted frames.
        num_frames: T, frames per window.
        dim: the frame dimension of ``frames``.

    Returns:
        ``frames`` with dimension ``dim`` replaced by ``(M, T)``: window ``m``, current frame first
        (see :func:`causal_window_indices`). The memory format (e.g. channels-last) is kept.
    """
    index = causal_window_indices(ends, num_frames)
    return frames[(slice(None),) * dim + (index,)]


def frame_features(windows: Sequence[Tensor]) -> list[list[Tensor]]:
    """Per-level windows ``(M, T, ...)`` -> T entries (t first) of per-level ``(M, ...)``: what ``decode`` takes."""
    return [[level[:, k] for level in windows] for k in range(windows[0].shape[1])]


class CausalWindows(StreamState):
    """Causal windows over one video whose per-frame features arrive in order, in chunks of any size.

    Keeps the features of the last ``num_frames - 1`` frames, nothing more, so memory stays flat
    on arbitrarily long videos. One instance per video. As a :class:`~flanet.models.state.StreamState`
    (the default state of :meth:`~flanet.models.contract.VideoSegmentationModel.init_state`) it is not
    recurrent, its ``window`` is ``num_frames``, and :meth:`read` gives ``decode`` the windows
    (:meth:`push`, then :func:`frame_features`).

    Args:
        num_frames: T, frames per window (1: every window is its own frame).
    """

    def __init__(self, num_frames: int) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = self.window = num_frames
        self.frames_seen = 0
        self._context: list[Tensor] | None = None  # per level, the last (<= T-1) frames

    def push(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[Tensor]:
        """Add the next frames and return the windows of those among them that are asked for.

        Args:
            levels: per level, the values of the next ``N`` frames of the video ``(N, ...)``, oldest
                first (e.g. what ``model.encode`` gives for them; one level for images).
            targets: ``(M,)`` positions within these ``N`` frames whose windows are wanted, in
                order (default: all ``N``).

        Returns:
            Per level, ``(M, T, ...)`` windows, current frame first; at the start of the video the
            first frame stands in for the frames before it.
        """
        count = levels[0].shape[0]
        if self._context is None:
            buffers = list(levels)
        else:
            buffers = [torch.cat([old, new]) for old, new in zip(self._context, levels)]
        offset = buffers[0].shape[0] - count  # buffer row of the first new frame (0 at the video start)
        if targets is None:
            targets = torch.arange(count, device=levels[0].device)
        ends = targets.to(device=levels[0].device, dtype=torch.int64) + offset
        windows = [gather_windows(buffer, ends, self.num_frames) for buffer in buffers]
        keep = self.num_frames - 1
        self._context = [buffer[buffer.shape[0] - min(keep, buffer.shape[0]):] for buffer in buffers]
        self.frames_seen += count
        return windows

    def read(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[list[Tensor]]:
        """:meth:`push`, as ``decode``'s input: T entries (t first) of per-level ``(M, ...)`` views of the windows."""
        return frame_features(self.push(levels, targets))

    @property
    def context_frames(self) -> int:
        """Distinct real frames in the window of the last frame read (1..T)."""
        return min(self.frames_seen, self.num_frames)

    @property
    def held_frames(self) -> int:
        """Frames whose features are kept (at most T - 1)."""
        return 0 if self._context is None else self._context[0].shape[0]

    def distinct_frames(self, position: int) -> int:
        """Real frames (1..T) in the window of frame ``position`` of the video: fewer at its start."""
        return min(position + 1, self.num_frames)
