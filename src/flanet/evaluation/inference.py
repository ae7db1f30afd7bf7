"""Running a model over the annotated frames of a split, for scoring.

Two equivalent ways (same clips ``[t, t-1, t-2]``, causal edge policy, no augmentation):

* ``clips``: batches of clips from :class:`flanet.data.ClipDataset` (``clip_len = model.num_frames``),
  one per annotated frame; every frame of a clip is encoded, so a densely annotated video costs
  ``num_frames`` encoder passes per frame.
* ``stream``: FLA-Net variants only; every frame of a video goes once through the encoder and its
  features are reused (:class:`flanet.inference.VideoSegmenter`); unannotated frames are encoded
  too, as context. ``auto`` picks the mode with fewer encoder passes.

The mask logits are resized (bilinear) back to the original frame size, passed through the sigmoid
and stored as 8 bits (``round(255 p)``), exactly what a prediction PNG holds, so scoring a checkpoint
and scoring the PNGs it saved with ``--save-pred`` give identical numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from flanet.data import ClipDataset, Video, VideoSet, read_image
from flanet.data.video_io import iter_video_frames

MODES: tuple[str, ...] = ("auto", "clips", "stream")
STREAM_CHUNK = 16


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available (or the device asked for), else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def logits_to_uint8(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, 1, S, S) mask logits to (H, W), sigmoid, quantise: (N, H, W) uint8 ``round(255 p)``."""
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()


def probability_to_uint8(prob: np.ndarray) -> np.ndarray:
    """(H, W) float probability -> uint8 ``round(255 p)``."""
    return np.round(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8)


def choose_mode(model: nn.Module, videos: list[Video], mode: str = "auto") -> str:
    """``clips`` or ``stream``; ``auto`` streams a FLA-Net model when that needs fewer encoder passes."""
    if mode not in MODES:
        raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
    can_stream = int(getattr(model, "num_frames", 1)) > 1 and hasattr(model, "encode") and hasattr(model, "decode")
    if mode == "stream" and not can_stream:
        raise ValueError("streaming needs a FLA-Net model (num_frames > 1 with encode/decode)")
    if mode != "auto":
        return mode
    if not can_stream:
        return "clips"
    annotated = [scored for scored in (_annotated(v) for v in videos) if scored]
    streamed = sum(indices[-1] + 1 for indices in annotated)  # frames up to the last annotated one
    clipped = sum(len(indices) for indices in annotated) * int(model.num_frames)
    return "stream" if streamed <= clipped else "clips"


def _annotated(video: Video) -> list[int]:
    return [i for i, mask in enumerate(video.masks) if mask is not None]


def iter_model_predictions(
    model: nn.Module,
    video_set: VideoSet,
    split: str | None,
    image_size: int,
    device: torch.device,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
) -> Iterator[tuple[str, list[int], np.ndarray]]:
    """Yield ``(video id, frame indices, prob uint8 (N, H, W))`` for the annotated frames of a split.

    Consecutive frames of one video and one size are grouped, so each yield is vectorised.

    Raises:
        ValueError: when ``image_size`` is not a multiple of the model's ``size_multiple``.
    """
    multiple = int(getattr(model, "size_multiple", 1))
    if image_size % multiple:
        raise ValueError(f"image size {image_size} is not a multiple of {multiple}, which this model needs")
    dataset = ClipDataset(
        video_set, split=split, image_size=image_size, clip_len=int(model.num_frames), augment=False, edge="causal"
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model = model.to(device).eval()
    with torch.inference_mode(), tqdm(total=len(dataset), unit="frame", desc="evaluate", disable=not progress) as bar:
        for batch in loader:
            clip = batch["frames"].to(device, non_blocking=True)  # (B, T, 3, S, S)
            logits = model(clip).mask_logits.float()  # (B, 1, S, S)
            videos, frames = list(batch["video"]), batch["frame_index"].tolist()
            sizes = [tuple(s) for s in batch["orig_size"].tolist()]
            start = 0
            for end in range(1, len(videos) + 1):  # split the batch into runs of (video, size)
                if end == len(videos) or (videos[end], sizes[end]) != (videos[start], sizes[start]):
                    yield videos[start], frames[start:end], logits_to_uint8(logits[start:end], sizes[start])
                    start = end
            bar.update(len(videos))


def _video_frames(video: Video, last: int) -> Iterator[np.ndarray]:
    """RGB frames 0..last of a video, decoded one at a time."""
    if video.video_file is not None:
        for index, frame in enumerate(iter_video_frames(video.video_file)):
            if index > last:
                return
            yield frame
    else:
        yield from (read_image(path) for path in video.frames[: last + 1])


def iter_streamed_predictions(
    model: nn.Module,
    videos: list[Video],
    image_size: int,
    device: torch.device,
    progress: bool = True,
) -> Iterator[tuple[str, list[int], np.ndarray]]:
    """Like :func:`iter_model_predictions`, encoding every frame once (FLA-Net variants).

    Yields chunks of up to ``STREAM_CHUNK`` annotated frames of one video and one size.
    """
    from flanet.inference.streaming import VideoSegmenter

    segmenter = VideoSegmenter(model, image_size=image_size, device=device)
    total = sum(len(_annotated(v)) for v in videos)
    with tqdm(total=total, unit="frame", desc="evaluate (stream)", disable=not progress) as bar:
        for video in videos:
            wanted = set(_annotated(video))
            if not wanted:
                continue
            indices: list[int] = []
            probs: list[np.ndarray] = []
            for result in segmenter.stream(_video_frames(video, max(wanted))):
                if result.index not in wanted:
                    continue
                prob = probability_to_uint8(result.probability)
                if probs and (prob.shape != probs[0].shape or len(probs) == STREAM_CHUNK):
                    yield video.id, indices, np.stack(probs)
                    indices, probs = [], []
                indices.append(result.index)
                probs.append(prob)
                bar.update()
            if probs:
                yield video.id, indices, np.stack(probs)
