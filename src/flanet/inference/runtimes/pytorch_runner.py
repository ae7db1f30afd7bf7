"""The PyTorch runtime: the model itself, eager or ``torch.compile``d, on any torch device.

With features reused (FLA-Net variants) each frame is encoded once by ``model.encode`` and a window of
encoder features is decoded by ``model.decode`` (paper, Sec. 3, Fig. 2); otherwise (image baselines,
or ``reuse_features=False``, the authors' way) the window is the frames themselves and ``model(clip)``
runs on it. On the CPU the runner by default folds the encoder's BatchNorms into the convolutions (into the
model itself when it owns it, a checkpoint's; else into a copy sharing the model's other tensors) and runs
in channels-last memory format (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.fx.proxy import TraceError

from flanet.devices import resolve_device
from flanet.inference.runtimes.base import Runner, RuntimeOptions
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import fold_batch_norms
from flanet.models.state import StreamState

__all__ = ["PyTorchRunner", "compile_options"]


def _prepare(model: VideoSegmentationModel, fold: bool, strict: bool, inplace: bool) -> VideoSegmentationModel:
    """``model``, or it with folded BatchNorms (``inplace``: folded into it, else a copy sharing its other tensors);
    without ``strict``, an encoder torch.fx cannot trace is run as it is (same results, only the fold's saving
    is lost)."""
    if not fold:
        return model
    try:
        return fold_batch_norms(model, inplace=inplace)
    except (TraceError, TypeError):
        if strict:
            raise
        return model


def compile_options(compile: bool | str | dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``torch.compile`` keyword arguments of the ``compile`` option.

    True picks by device: mode ``"reduce-overhead"`` (inductor + CUDA graphs, which remove the
    per-kernel launch cost of a batch-1 step) on CUDA; elsewhere inductor's default mode with
    ``freezing`` (weights become constants, so inductor folds and pre-packs them for oneDNN:
    on the 2-core CPU of docs/benchmarks.md, 8.6 instead of 6.2 frames/s for Res2Net-50 at 352).
    Freezing suits the segmenter, which runs its own inference-only copy of the model.
    """
    if isinstance(compile, dict):
        return dict(compile)
    if isinstance(compile, str):
        return {"mode": compile}
    return {"mode": "reduce-overhead"} if device.type == "cuda" else {"options": {"freezing": True}}


class PyTorchRunner(Runner):
    """``model`` on a torch device (see the module docstring and :class:`RuntimeOptions`).

    The given model is put in eval mode; on the CPU its BatchNorms are folded, into the model itself when the
    runtime owns it (``own_model``), else into a copy that shares the model's other tensors. Frames go in at the
    weights' dtype, so a ``model.to(torch.bfloat16)`` streams in it; outputs are float32 on the caller's side.
    """

    def __init__(self, model: VideoSegmentationModel, options: RuntimeOptions) -> None:
        self.device = resolve_device(options.device)
        self.dtype = options.dtype
        channels_last = self.device.type == "cpu" if options.channels_last is None else options.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        fold = self.device.type == "cpu" if options.fold_batchnorm is None else options.fold_batchnorm
        model = _prepare(model.eval(), fold, strict=options.fold_batchnorm is not None, inplace=options.own_model)
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.input_dtype = next(self.model.parameters()).dtype
        self.num_frames = self.model.num_frames
        self.window = self.model.init_state().window  # None: the model reads a memory beyond a fixed window
        if self.window is None and not options.reuse_features:
            raise ValueError(f"model {self.model.config.get('name', type(self.model).__name__)!r} reads a memory of "
                             "earlier frames: it streams with features reused only (reuse_features=True)")
        self.streaming = options.reuse_features and (self.num_frames > 1 or self.window is None)
        self.compiled = self.fixed_threads = options.compiled
        self._encode, self._decode, self._forward = self.model.encode, self.model.decode, self.model
        if self.compiled:
            settings = compile_options(options.compile, self.device)  # type: ignore[arg-type]
            self._encode, self._decode, self._forward = (
                torch.compile(step, dynamic=False, **settings) for step in (model.encode, model.decode, model)
            )

    @classmethod
    def create(cls, model: VideoSegmentationModel, image_size: int, options: RuntimeOptions) -> PyTorchRunner:
        """The runner (any input size the model accepts)."""
        if options.frames_in_flight != 1:
            raise ValueError(f"frames_in_flight {options.frames_in_flight}: must be 1 with backend pytorch, >= 1 "
                             "with an exported backend (onnxruntime, openvino)")
        return cls(model, options)

    def init_state(self) -> StreamState:
        """The model's own state (its window or memory) when features are reused, else the window of frames."""
        return self.model.init_state() if self.streaming else super().init_state()

    def step(self, state: StreamState, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`Runner.step`, a memory's write under the same autocast as the decoder."""
        with self._autocast():
            return super().step(state, image)

    def per_frame_state(self, image: Tensor) -> list[Tensor]:
        """The frame's encoder features per level, or ``[image]`` when whole clips run."""
        if not self.streaming:
            return [image]
        with self._autocast():
            features = self._encode(image)
        # CUDA graphs (compile on CUDA) overwrite their outputs at the next call; the window keeps them
        return [level.clone() for level in features] if self.compiled and self.device.type == "cuda" else features

    def predict(self, frames: Sequence[Sequence[Tensor]]) -> tuple[Tensor, Tensor | None]:
        """``model.decode`` of the window's features, or ``model(clip)`` on the window's frames."""
        with self._autocast():
            if self.streaming:
                # the segmenter's windows are views of one gathered tensor per level, at the video start as
                # later, so a compiled decode sees the same input aliasing on every call (one graph)
                output = self._decode(frames)
            else:
                output = self._forward(torch.stack([frame[0][0] for frame in frames])[None])  # (1, T, 3, S, S)
        return output.mask_logits, output.heatmap

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to ``dtype`` when one was asked for (bf16 streaming), else nothing."""
        if self.dtype is None or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)
