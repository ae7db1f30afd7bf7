"""Streaming video segmentation: one encoder pass per frame, features reused.

FLA-Net predicts frame ``t`` from the clip ``[I_t, I_{t-1}, I_{t-2}]`` (paper, Sec. 3, Fig. 2).
Evaluated clip by clip, every frame of a video goes through the encoder three times.
:class:`VideoSegmenter` encodes each incoming frame once with ``model.encode``, keeps the
per-frame features of the last frames in the model's per-video state (``model.init_state()``:
:class:`flanet.models.windows.CausalWindows`, the one window core of training, evaluation and
streaming; a bounded memory of past frames and predictions for a memory model,
:mod:`flanet.models.memory`), and calls ``model.decode([f_t, f_{t-1}, f_{t-2}])``. At the start of a video the first frame's
features stand in for the frames before it (the *causal* edge policy of the data layer), so the
output for every frame equals ``model(clip)`` on the causally padded clip.

Frames are taken one at a time from any iterable and nothing but the last ``num_frames - 1``
frames' features (a memory model: its bounded memory) is kept, so memory stays flat on arbitrarily
long videos. With an exported
backend (onnxruntime, OpenVINO) several frames can be in flight at once
(:mod:`flanet.inference.core.in_flight`): the same outputs, in order, at more frames/s on few cores.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flanet.data import to_model_input
from flanet.inference.core.in_flight import pipelined_predictions
from flanet.inference.core.overlap import read_ahead
from flanet.inference.core.settings import SegmenterSettings, resolve_image_size
from flanet.inference.runtimes import runner_class
from flanet.inference.runtimes.base import Runner
from flanet.models.checkpoint import LoadedDiagnosis
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_image_size
from flanet.models.trained import load_trained
from flanet.models.windows import CausalWindows
from flanet.threads import AdaptiveThreads

__all__ = ["FrameResult", "NonFiniteOutputError", "VideoSegmenter", "as_rgb_frame"]

log = logging.getLogger(__name__)


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

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """Binary lesion mask at the input frame's size, (H, W) bool (computed once)."""
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


class VideoSegmenter:
    """Segment a video frame by frame with a FLA-Net model or an image baseline.

    Build it from a checkpoint with :meth:`from_checkpoint` (the size, edge policy and normalisation the
    model was trained with come from the checkpoint), or from a model; the settings are one
    :class:`~flanet.inference.core.settings.SegmenterSettings` (``settings``) or its fields as keywords
    (``threshold=``, ``backend=``, ``dtype=``, ``compile=``, ``frames_in_flight=``, ...), keywords winning.
    Where and how the model runs is the runner's (:mod:`flanet.inference.runtimes`): PyTorch (eager or
    ``torch.compile``d; on the CPU BatchNorms folded and channels-last by default), or the exported encoder
    and decoder in onnxruntime or OpenVINO, exported to ONNX once per model and size into a cache. Every
    runtime is driven the same way: each frame's state (its encoder features, or the frame itself for
    models that read whole clips) goes into the causal window, and the window is decoded.

    Args:
        model: a flanet model (:func:`flanet.models.create_model` or a loaded checkpoint's).
        image_size: side S of the square model input, a multiple of ``model.size_multiple``; None (default):
            the size the model was trained at when it came from a checkpoint, else the paper's 352. A size
            that differs from the training size runs, with a warning.
        device: torch device; CUDA when available by default (onnxruntime: its GPU providers when present;
            OpenVINO runs on the CPU).
        settings: every other setting, one object.
        **options: fields of :class:`~flanet.inference.core.settings.SegmenterSettings` overriding ``settings``.

    Raises:
        ValueError: ``image_size`` is not a multiple of ``model.size_multiple``, an unknown backend, or a
            setting the runtime cannot honour (``compile`` with an exported backend or with
            ``adaptive_threads=True``, backend "openvino" on CUDA, ``frames_in_flight`` other than 1 with
            backend "pytorch").
        TypeError: an option that is not a setting.
    """

    def __init__(
        self,
        model: VideoSegmentationModel,
        image_size: int | None = None,
        device: str | torch.device | None = None,
        *,
        settings: SegmenterSettings | None = None,
        **options: Any,
    ) -> None:
        given = {"image_size": image_size, "device": device}
        settings = dataclasses.replace(settings or SegmenterSettings(),
                                       **{k: v for k, v in given.items() if v is not None}, **options)
        size = resolve_image_size(settings.image_size, model.trained_image_size)
        check_image_size(model, size)
        if settings.compiled and settings.adaptive_threads:
            raise ValueError("adaptive_threads with compile: a compiled step is specialised to torch's thread "
                             "count and would be compiled again at every change of it")
        self.runner: Runner = runner_class(settings.backend).create(model, size, settings)
        self.settings = dataclasses.replace(settings, image_size=size)
        self.model, self.image_size, self.threshold = model, size, settings.threshold
        self.backend, self.frames_in_flight = settings.backend, settings.frames_in_flight
        self.num_frames, self.reuse_features = self.runner.num_frames, self.runner.streaming
        self.device = self.runner.device
        adaptive = settings.adaptive_threads
        self.adaptive_threads = self.device.type == "cpu" and not self.runner.fixed_threads if adaptive is None \
            else adaptive
        #: The checkpoint's diagnosis head (:meth:`from_checkpoint`), for :class:`flanet.inference.runs.diagnosis.StreamDiagnoser`.
        self.diagnosis: LoadedDiagnosis | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, settings: SegmenterSettings | None = None,
                        **options: Any) -> VideoSegmenter:
        """The segmenter of a flanet checkpoint (loaded safely on the CPU), run as it was trained.

        The image size is the checkpoint's training size unless ``settings`` / ``options`` give another
        (then a warning says the outputs will differ); a recorded normalisation other than ImageNet's is
        refused; a model trained with another edge policy is streamed causally (the only policy a stream
        can follow), which changes only the first ``num_frames - 1`` frames, and says so.

        Raises:
            flanet.models.CheckpointError: a missing, unsafe or damaged checkpoint.
            ValueError: as :class:`VideoSegmenter`, or a normalisation flanet does not apply.
        """
        trained = load_trained(path)
        # nobody else holds the loaded model: the runtime may change it instead of copying it (BatchNorm folding)
        settings = dataclasses.replace(settings or SegmenterSettings(), own_model=True)
        segmenter = cls(trained.loaded.model, settings=settings, **options)
        segmenter.diagnosis = trained.loaded.diagnosis
        if trained.edge not in (None, "causal"):
            log.info("%s was trained with edge=%r; streaming repeats the first frame at a video's start (causal), "
                     "which changes only the first %d frame(s)", path, trained.edge, segmenter.num_frames - 1)
        return segmenter

    @classmethod
    def create(cls, model: VideoSegmentationModel | str | Path, settings: SegmenterSettings | None = None,
               **options: Any) -> VideoSegmenter:
        """The segmenter of a model, or of the checkpoint at a path (:meth:`from_checkpoint`)."""
        if isinstance(model, (str, Path)):
            return cls.from_checkpoint(model, settings, **options)
        return cls(model, settings=settings, **options)

    @property
    def input_dtype(self) -> torch.dtype:
        """Dtype of the prepared frames (the weights' for PyTorch, float32 for exported parts)."""
        return self.runner.input_dtype

    @property
    def memory_format(self) -> torch.memory_format:
        """Memory format of the prepared frames."""
        return self.runner.memory_format

    @torch.inference_mode()
    def stream(self, frames: Iterable[np.ndarray], *, prefetch: int = 0) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per incoming frame, in order.

        Args:
            frames: RGB uint8 frames (H, W, 3) (grayscale accepted, see :func:`as_rgb_frame`),
                consumed one at a time; all must have the same height and width.
            prefetch: above 0, ``frames`` is iterated (decoded, when it decodes) and each frame checked,
                resized and normalised in a background thread, up to ``prefetch`` frames ahead of the model
                (:func:`~flanet.inference.core.overlap.read_ahead`): the same results, with the input side
                overlapping the model. 0 (default): everything in the caller's thread, each frame taken only
                when the model is ready for it (what a live source needs).

        Raises:
            ValueError: for a malformed frame or a frame whose size differs from the first
                frame's (the temporal window assumes one field of view), after the frames before it.
        """
        threads = AdaptiveThreads() if self.adaptive_threads else None
        try:
            yield from self._stream(read_ahead(self._checked(frames), prefetch, "flanet-prefetch"), threads)
        finally:
            if threads is not None:
                threads.restore()

    def _stream(self, checked: Iterable[tuple[int, tuple[int, int], torch.Tensor]],
                threads: AdaptiveThreads | None) -> Iterator[FrameResult]:
        """:meth:`stream`'s loop: one frame at a time, or ``frames_in_flight`` of them in workers."""
        runner = self.runner
        state = runner.init_state()  # the model's window or memory (one per video)
        prepared = self._on_device(checked, threads)
        if self.frames_in_flight > 1:  # exported runtimes: their state is the causal window of num_frames
            windows = CausalWindows(self.num_frames)
            work = pipelined_predictions(prepared, lambda item: runner.per_frame_state(item[2]),
                                         runner.predict, self.num_frames, self.frames_in_flight)
            for (index, size, _), (mask_logits, heatmap) in work:
                yield self._result(index, mask_logits, heatmap, size, windows.distinct_frames(index))
            return
        for index, size, image in prepared:
            # a window's read gives views of one gathered tensor per level (frame_features), at the video start as later
            mask_logits, heatmap = runner.step(state, image)
            yield self._result(index, mask_logits, heatmap, size, state.context_frames)

    def _checked(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[int, tuple[int, int], torch.Tensor]]:
        """``(index, (H, W), normalised input (3, S, S) on the CPU)`` per checked frame (numpy and OpenCV only:
        it may run in a prefetch thread)."""
        first_size: tuple[int, int] | None = None
        for index, frame in enumerate(frames):
            rgb = as_rgb_frame(frame, index)
            size = rgb.shape[:2]
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise ValueError(
                    f"frame {index} is {size[1]}x{size[0]} (WxH) but the video started at "
                    f"{first_size[1]}x{first_size[0]}; frames of one video must keep one size"
                )
            yield index, size, to_model_input(rgb, self.image_size)

    def _on_device(self, checked: Iterable[tuple[int, tuple[int, int], torch.Tensor]],
                   threads: AdaptiveThreads | None) -> Iterator[tuple[int, tuple[int, int], torch.Tensor]]:
        """``(index, (H, W), model input (1, 3, S, S))``, in the model's thread; ``threads`` sampled before each.

        Torch's thread count is per OS thread, so it is sampled and set in the thread that runs the model.
        """
        for index, size, image in checked:
            if threads is not None:
                threads.update()
            image = image.to(self.device, self.input_dtype)[None]  # (1, 3, S, S)
            yield index, size, image.contiguous(memory_format=self.memory_format)

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
