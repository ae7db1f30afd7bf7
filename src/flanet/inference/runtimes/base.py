"""The one interface of a runtime: what :class:`~flanet.inference.VideoSegmenter` calls for every frame.

FLA-Net predicts frame t from ``[I_t, I_{t-1}, I_{t-2}]`` (paper, Sec. 3, Fig. 2). A runtime turns one
prepared frame into what the causal window keeps of it (:meth:`Runner.per_frame_state`: its encoder
features, or the frame itself for models that read whole clips) and a window of those states, current
frame first, into the outputs (:meth:`Runner.predict`). The segmenter owns the window, the frames and
the results; a runtime owns only where and how the model runs. :class:`RuntimeOptions` are the settings a
runtime reads (the segmenter's settings extend them).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flanet.models.contract import VideoSegmentationModel
from flanet.models.outputs import SegmentationOutput
from flanet.models.state import StreamState
from flanet.models.windows import CausalWindows

__all__ = ["RuntimeOptions", "Runner"]


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs (the runtime part of :class:`~flanet.inference.SegmenterSettings`).

    Attributes:
        device: torch device; None: CUDA when available (onnxruntime: its GPU providers when present).
        backend: ``"pytorch"``, ``"onnxruntime"`` or ``"openvino"`` (:data:`flanet.inference.runtimes.BACKENDS`).
        dtype: PyTorch only: compute dtype (autocast), e.g. ``torch.bfloat16`` on a GPU; None: float32.
        channels_last: PyTorch only: convolutions in channels-last memory format; None: on for CPU.
        fold_batchnorm: PyTorch only: run a copy whose encoder BatchNorms are folded into the convolutions;
            None: on for CPU where torch.fx can trace the encoder.
        compile: PyTorch only: ``torch.compile`` the per-frame step (False, True, a mode, or keyword arguments).
        frames_in_flight: exported runtimes: frames processed at the same time (1: lowest latency).
        reuse_features: encode each frame once and reuse its features (False: the full ``model(clip)`` per
            frame, the authors' way; PyTorch only).
        onnx: exported runtimes: the manifest of an existing ``flanet export`` to run instead of exporting.
        own_model: the model is the runtime's alone (a segmenter built from a checkpoint): PyTorch folds the
            BatchNorms into it in place rather than into a second copy of its weights.
    """

    device: str | torch.device | None = None
    backend: str = "pytorch"
    dtype: torch.dtype | None = None
    channels_last: bool | None = None
    fold_batchnorm: bool | None = None
    compile: bool | str | dict[str, Any] | None = False
    frames_in_flight: int = 1
    reuse_features: bool = True
    onnx: str | Path | None = None
    own_model: bool = False

    @property
    def compiled(self) -> bool:
        """Whether ``compile`` asks for ``torch.compile``."""
        return self.compile not in (False, None)


class Runner(abc.ABC):
    """A model ready to run one frame at a time on one runtime.

    Attributes:
        num_frames: T, frames per window.
        streaming: True when the per-frame state is the frame's encoder features (each frame encoded once);
            False when it is the frame itself and :meth:`predict` runs the whole clip.
        device: where prepared frames go.
        input_dtype: dtype of prepared frames.
        memory_format: memory format of prepared frames.
        fixed_threads: True when torch's thread count must not change while streaming (a compiled step is
            guarded on it).
    """

    num_frames: int
    streaming: bool
    device: torch.device
    input_dtype: torch.dtype = torch.float32
    memory_format: torch.memory_format = torch.contiguous_format
    fixed_threads: bool = False

    @classmethod
    @abc.abstractmethod
    def create(cls, model: VideoSegmentationModel, image_size: int, options: RuntimeOptions) -> Runner:
        """The runner of ``model`` at input size ``image_size`` with ``options``.

        Raises:
            ValueError: an option this runtime cannot honour (named).
        """

    @abc.abstractmethod
    def per_frame_state(self, image: Tensor) -> list[Tensor]:
        """What the window keeps of one prepared frame ``(1, 3, S, S)``: per level ``(1, ...)`` (one level: the frame)."""

    @abc.abstractmethod
    def predict(self, frames: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor | None]:
        """Outputs for what the state read, current frame first: ``(1, 1, S, S)`` logits and heatmap (or None)."""

    def init_state(self) -> StreamState:
        """A new per-video state of what :meth:`per_frame_state` gives: the causal window of ``num_frames``
        (the model's own state is a window wherever this runtime can run the model)."""
        return CausalWindows(self.num_frames)

    def step(self, state: StreamState, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """Outputs for the next frame ``(1, 3, S, S)`` of the stream of ``state``: the model's
        :meth:`~flanet.models.contract.VideoSegmentationModel.step` with this runtime's encoder and decoder."""
        mask_logits, heatmap = self.predict(state.read(self.per_frame_state(image)))
        state.write(SegmentationOutput(mask_logits, heatmap))
        return mask_logits, heatmap
