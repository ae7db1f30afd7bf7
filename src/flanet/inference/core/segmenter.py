"""Streaming video segmentation: one encoder pass per frame, features reused.

FLA-Net predicts frame ``t`` from the clip ``[I_t, I_{t-1}, I_{t-2}]`` (paper, Sec. 3, Fig. 2).
Evaluated clip by clip, every frame of a video goes through the encoder three times.
:class:`VideoSegmenter` encodes each incoming frame once with ``model.encode``, keeps the
per-frame features of the last frames (:class:`flanet.models.windows.CausalWindows`, the one
window core of training, evaluation and streaming), and calls
``model.decode([f_t, f_{t-1}, f_{t-2}])``. At the start of a video the first frame's
features stand in for the frames before it (the *causal* edge policy of the data layer), so the
output for every frame equals ``model(clip)`` on the causally padded clip.

Frames are taken one at a time from any iterable and nothing but the last ``num_frames - 1``
frames' features is kept, so memory stays flat on arbitrarily long videos. With an exported
backend (onnxruntime, OpenVINO) several frames can be in flight at once
(:mod:`flanet.inference.core.in_flight`): the same outputs, in order, at more frames/s on few cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.fx.proxy import TraceError

from flanet.data import to_model_input
from flanet.devices import resolve_device
from flanet.inference.core.in_flight import pipelined_predictions
from flanet.inference.runtimes import BACKENDS
from flanet.inference.runtimes.exported import ExportedRunner, export_for_onnxruntime
from flanet.inference.runtimes.onnxruntime_runner import OnnxRunner, onnx_providers
from flanet.inference.runtimes.openvino_runner import OpenVinoRunner
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import fold_batch_norms
from flanet.models.windows import CausalWindows, frame_features
from flanet.threads import AdaptiveThreads, available_cpus

__all__ = ["FrameResult", "NonFiniteOutputError", "VideoSegmenter", "as_rgb_frame", "compile_options"]


class NonFiniteOutputError(RuntimeError):
    """A frame's output held NaN or inf: the run stops instead of reporting "no lesion" (a failed run, exit 1)."""


@dataclass(frozen=True)
class FrameResult:
    """Prediction for one incoming frame.

    Attributes:
        index: 0-based position of the frame in the stream.
        mask_logits: raw mask logits at model resolution, (1, S, S), on CPU.
        heatmap: raw localisation heatmap at model resolution, (1, S, S), on CPU; None for
            models without the localisation branch.
        probability: lesion probability resized to the input frame, (H, W) float32 in [0, 1].
        heatmap_full: heatmap resized to the input frame, (H, W) float32, or None.
        context_frames: distinct real frames in the temporal window (1..num_frames); fewer
            than ``num_frames`` at the start of a video, where the first frame is repeated.
        threshold: probability threshold used by :attr:`mask`.
    """

    index: int
    mask_logits: torch.Tensor
    heatmap: torch.Tensor | None
    probability: np.ndarray
    heatmap_full: np.ndarray | None
    context_frames: int
    threshold: float = 0.5

    @property
    def mask(self) -> np.ndarray:
        """Binary lesion mask at the input frame's size, (H, W) bool."""
        return self.probability >= self.threshold


def as_rgb_frame(frame: np.ndarray, index: int) -> np.ndarray:
    """Check one incoming frame and return it as RGB uint8 (H, W, 3).

    Grayscale frames, (H, W) or (H, W, 1), are replicated to three channels (ultrasound is
    often grayscale); an alpha channel, (H, W, 4), is dropped.

    Raises:
        ValueError: for a non-uint8 array or an unsupported shape, naming the frame.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"frame {index}: expected a uint8 numpy array (H, W, 3), got {kind}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        return np.ascontiguousarray(frame[:, :, :3])
    raise ValueError(
        f"frame {index}: unsupported shape {frame.shape}; expected (H, W, 3) RGB, "
        "(H, W, 4) RGBA or (H, W) grayscale"
    )


def _prepare(model: VideoSegmentationModel, fold: bool, strict: bool) -> VideoSegmentationModel:
    """``model``, or its copy with folded BatchNorms; without ``strict``, an encoder torch.fx
    cannot trace is run as it is (same results, only the fold's saving is lost)."""
    if not fold:
        return model
    try:
        return fold_batch_norms(model)
    except (TraceError, TypeError):
        if strict:
            raise
        return model


def compile_options(compile: bool | str | dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``torch.compile`` keyword arguments of :class:`VideoSegmenter`'s ``compile`` option.

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


class VideoSegmenter:
    """Segment a video frame by frame with a FLA-Net model or an image baseline.

    Args:
        model: a flanet model (``create_model``); FLA-Net variants expose ``encode`` and
            ``decode``, image baselines (``num_frames == 1``) only ``forward``.
        image_size: side S of the square model input; a multiple of ``model.size_multiple``.
        device: torch device; CUDA when available by default.
        threshold: probability threshold for :attr:`FrameResult.mask`.
        reuse_features: True (default) encodes each frame once and reuses its features;
            False runs the full ``model(clip)`` for every frame (clips reference,
            the way the authors' code evaluates; used by ``flanet bench``).
        channels_last: run convolutions in channels-last memory format (moves the
            model's weights to it). Default: on for CPU, where oneDNN's convolutions
            are 10-25% faster in that layout (docs/benchmarks.md); off elsewhere.
        backend: ``"pytorch"`` (default), ``"onnxruntime"`` or ``"openvino"``: the exported
            encoder and decoder in onnxruntime (:mod:`flanet.inference.runtimes.exported`) or compiled by
            OpenVINO for the CPU (:mod:`flanet.inference.runtimes.openvino_runner`), features reused the
            same way; exported to ONNX once per model and size into a cache, or taken from ``onnx``.
            For onnxruntime ``device`` picks the providers: None = CUDA/TensorRT when present, else
            CPU; OpenVINO runs on the CPU.
        onnx: backends "onnxruntime" and "openvino": manifest (``flanet.json``) of an existing
            ``flanet export`` of this model to run instead of exporting it.
        dtype: backend "pytorch" only: compute dtype of the model, e.g. ``torch.bfloat16``
            on a GPU (autocast); outputs are float32. Default: float32. A model whose
            weights are already half precision (``model.to(torch.bfloat16)``) streams in
            that dtype without it (frames are cast to the weights' dtype).
        fold_batchnorm: backend "pytorch" only: run a copy of the model whose encoder has its
            BatchNorms folded into the convolutions (:func:`flanet.models.encoder.fold_batch_norms`;
            the same function to float rounding, ``model`` itself is not changed). Default: on for
            CPU, where it saves a pass over every BatchNorm's activations, and only where torch.fx
            can trace the encoder; off elsewhere.
        compile: backend "pytorch" only: ``torch.compile`` the per-frame step (``encode`` and
            ``decode``; ``model(clip)`` when features are not reused) with static shapes
            (batch 1, one size: one graph each, no recompiles from video to video; the
            first frames of the first video pay the compilation). False (default) or None: eager;
            True: mode ``"reduce-overhead"`` on CUDA (CUDA graphs), ``"default"`` (inductor)
            elsewhere; a string: that ``torch.compile`` mode; a dict: ``torch.compile``
            keyword arguments, e.g. ``{"backend": "aot_eager"}``.
        adaptive_threads: while :meth:`stream` runs, give torch only the CPUs other processes leave
            free (:class:`~flanet.threads.AdaptiveThreads`, sampled every half second; the
            count torch had is restored when the stream ends). A competing process then costs a
            barrier-free single thread instead of stalled OpenMP barriers (docs/benchmarks.md,
            "Threads on a shared CPU"). Default: on for CPU (Linux; elsewhere it does nothing), off
            for CUDA and off with ``compile``: a compiled step is guarded on torch's thread count
            (Dynamo's global-state guard), so every change of the count would compile the step
            again, in the middle of a video; asking for both is refused.
        frames_in_flight: backends "onnxruntime" and "openvino" only: frames processed at the same
            time, each by one worker with an equal share of the CPUs (:mod:`flanet.inference.core.in_flight`):
            more frames/s, each frame later; the same outputs, in order. Default 1 (one frame at a
            time, every thread on it: the lowest latency, for live streams).

    Raises:
        ValueError: if ``image_size`` is not a multiple of ``model.size_multiple``, for an
            unknown backend, ``compile`` with an exported backend or with ``adaptive_threads=True``,
            backend "openvino" on CUDA, or ``frames_in_flight`` other than 1 with backend "pytorch".
    """

    def __init__(
        self,
        model: VideoSegmentationModel,
        image_size: int = 352,
        device: str | torch.device | None = None,
        *,
        threshold: float = 0.5,
        reuse_features: bool = True,
        channels_last: bool | None = None,
        backend: str = "pytorch",
        onnx: str | Path | None = None,
        dtype: torch.dtype | None = None,
        fold_batchnorm: bool | None = None,
        compile: bool | str | dict[str, Any] | None = False,
        adaptive_threads: bool | None = None,
        frames_in_flight: int = 1,
    ) -> None:
        multiple = model.size_multiple
        if image_size <= 0 or image_size % multiple:
            raise ValueError(
                f"image_size {image_size} must be a positive multiple of {multiple} for this model"
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if frames_in_flight < 1 or (frames_in_flight > 1 and backend == "pytorch"):
            raise ValueError(f"frames_in_flight {frames_in_flight}: must be 1 with backend pytorch, >= 1 with an "
                             "exported backend (onnxruntime, openvino)")
        self.backend, self.frames_in_flight = backend, frames_in_flight
        self.runner: ExportedRunner | None = None
        device = resolve_device(device) if device is not None else None  # refuses CUDA without a GPU
        if backend != "pytorch":
            if compile not in (False, None):
                raise ValueError("compile applies to backend pytorch only")
            if backend == "openvino" and device is not None and device.type != "cpu":
                raise ValueError(f"backend openvino runs on the CPU, not on {device}; use backend onnxruntime or pytorch")
            manifest = onnx or export_for_onnxruntime(model, image_size)
            if backend == "onnxruntime":  # each frame's worker runs its sessions on its share of the CPUs
                threads = max(1, available_cpus() // frames_in_flight)
                self.runner = OnnxRunner(manifest, onnx_providers(device), threads=threads)
            else:
                self.runner = OpenVinoRunner(manifest, streams=frames_in_flight)
            if self.runner.image_size != image_size:
                raise ValueError(f"{manifest}: exported for image size {self.runner.image_size}, not {image_size}")
            device = "cpu"  # inputs and outputs of the sessions are host arrays
        self.device = resolve_device(device)
        self.dtype = dtype
        if channels_last is None:
            channels_last = self.device.type == "cpu" and self.runner is None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.runner is None:
            # the given model is put in eval mode, as always; a folded copy is run in its place
            model = _prepare(model.eval(), self.device.type == "cpu" if fold_batchnorm is None else fold_batchnorm,
                             strict=fold_batchnorm is not None)
            model = model.to(self.device, memory_format=self.memory_format)
        self.model = model.eval()
        # frames go in at the weights' dtype: a model.to(torch.bfloat16 / float16) streams in it
        self.input_dtype = next(model.parameters()).dtype if self.runner is None else torch.float32
        self.image_size = image_size
        self.threshold = threshold
        self.num_frames = model.num_frames
        self.reuse_features = reuse_features and self.num_frames > 1
        if self.runner is not None:
            if self.reuse_features != self.runner.streaming:
                raise ValueError(f"backend {backend} streams (features reused); clips (reuse_features=False) run on "
                                 "pytorch only")
            self.num_frames = self.runner.num_frames
        self.compiled = compile not in (False, None)
        if self.compiled and adaptive_threads:
            raise ValueError("adaptive_threads with compile: a compiled step is specialised to torch's thread "
                             "count and would be compiled again at every change of it")
        if adaptive_threads is None:
            adaptive_threads = self.device.type == "cpu" and not self.compiled
        self.adaptive_threads = adaptive_threads
        self._encode, self._decode, self._forward = model.encode, model.decode, model
        if self.compiled:
            options = compile_options(compile, self.device)
            self._encode, self._decode, self._forward = (
                torch.compile(step, dynamic=False, **options) for step in (model.encode, model.decode, model)
            )

    @torch.inference_mode()
    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per incoming frame, in order.

        Args:
            frames: RGB uint8 frames (H, W, 3) (grayscale accepted, see :func:`as_rgb_frame`),
                consumed one at a time; all must have the same height and width.

        Raises:
            ValueError: for a malformed frame or a frame whose size differs from the first
                frame's (the temporal window assumes one field of view).
        """
        threads = AdaptiveThreads() if self.adaptive_threads else None
        try:
            yield from self._stream(frames, threads)
        finally:
            if threads is not None:
                threads.restore()

    def _stream(self, frames: Iterable[np.ndarray], threads: AdaptiveThreads | None) -> Iterator[FrameResult]:
        """:meth:`stream`'s loop: one frame at a time, or ``frames_in_flight`` of them in workers."""
        windows = CausalWindows(self.num_frames)
        if self.frames_in_flight > 1 and self.runner is not None:
            runner = self.runner
            work = pipelined_predictions(self._prepared(frames, threads), lambda item: runner.per_frame_state(item[2]),
                                         runner.predict, self.num_frames, self.frames_in_flight)
            for (index, size, _), (mask_logits, heatmap) in work:
                yield self._result(index, mask_logits, heatmap, size, windows.distinct_frames(index))
            return
        for index, size, image in self._prepared(frames, threads):
            window = windows.push(self._per_frame_state(image))
            mask_logits, heatmap = self._predict(window)
            yield self._result(index, mask_logits, heatmap, size, windows.distinct_frames(index))

    def _prepared(self, frames: Iterable[np.ndarray],
                  threads: AdaptiveThreads | None) -> Iterator[tuple[int, tuple[int, int], torch.Tensor]]:
        """``(index, (H, W), model input (1, 3, S, S))`` per checked frame; ``threads`` sampled before each."""
        first_size: tuple[int, int] | None = None
        for index, frame in enumerate(frames):
            if threads is not None:
                threads.update()
            rgb = as_rgb_frame(frame, index)
            size = rgb.shape[:2]
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise ValueError(
                    f"frame {index} is {size[1]}x{size[0]} (WxH) but the video started at "
                    f"{first_size[1]}x{first_size[0]}; frames of one video must keep one size"
                )
            image = to_model_input(rgb, self.image_size).to(self.device, self.input_dtype)[None]  # (1, 3, S, S)
            yield index, size, image.contiguous(memory_format=self.memory_format)

    def _per_frame_state(self, image: torch.Tensor) -> list[torch.Tensor]:
        """What the window keeps of one frame, per level (1, ...): its encoder features, or the image."""
        if self.runner is not None:
            state = self.runner.per_frame_state(image)
            return [torch.from_numpy(array) for array in (state if self.runner.streaming else [state])]
        if not self.reuse_features:
            return [image]
        with self._autocast():
            features = self._encode(image)
        # CUDA graphs (compile on CUDA) overwrite their outputs at the next call; the window keeps them
        return [level.clone() for level in features] if self.compiled and self.device.type == "cuda" else features

    def _predict(self, window: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the model on one window, per level (1, T, ...) with frame t first; (1,1,S,S) logits, heatmap."""
        if self.runner is not None:
            frames = [[level.numpy() for level in frame] for frame in frame_features(window)]
            return self.runner.predict(frames if self.runner.streaming else [frame[0] for frame in frames])
        with self._autocast():
            if self.reuse_features:
                # every window is views of one gathered tensor per level, at the video start as later,
                # so a compiled decode sees the same input aliasing on every call (one graph)
                output = self._decode(frame_features(window))
            else:
                output = self._forward(window[0])  # (1, T, 3, S, S)
        return output.mask_logits, output.heatmap

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to ``dtype`` when one was asked for (bf16 streaming), else nothing."""
        if self.dtype is None or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _result(
        self,
        index: int,
        mask_logits: torch.Tensor,
        heatmap: torch.Tensor | None,
        size: tuple[int, int],
        context: int,
    ) -> FrameResult:
        """Resize the (1, 1, S, S) outputs to the frame's size and pack a FrameResult.

        Raises:
            NonFiniteOutputError: the outputs hold NaN or inf (they would read as "no lesion").
        """
        if not bool(torch.isfinite(mask_logits).all()) or (heatmap is not None and not bool(torch.isfinite(heatmap).all())):
            raise NonFiniteOutputError(f"frame {index}: the model's output holds NaN or infinite values, which would "
                                       "read as 'no lesion'; the run is stopped (another checkpoint, or full "
                                       "precision)")
        logits_full = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        heat_full = None
        if heatmap is not None:
            heat_full = F.interpolate(heatmap, size=size, mode="bilinear", align_corners=False)
            heat_full = heat_full[0, 0].float().cpu().numpy()
        return FrameResult(
            index=index,
            mask_logits=mask_logits[0].float().cpu(),
            heatmap=None if heatmap is None else heatmap[0].float().cpu(),
            probability=torch.sigmoid(logits_full)[0, 0].float().cpu().numpy(),
            heatmap_full=heat_full,
            context_frames=context,
            threshold=self.threshold,
        )
