"""Running a model over the annotated frames of a split, for scoring.

Two equivalent ways (same clips ``[t, t-1, t-2]``, causal edge policy, no augmentation):

* ``clips``: batches of clips from :class:`flanet.data.ClipDataset` (``clip_len = model.num_frames``),
  one per annotated frame; every frame of a clip is encoded, so a densely annotated video costs
  ``num_frames`` encoder passes per frame.
* ``stream``: video models; the frames of a video are encoded once, in batches, and their
  features are reused by every window that contains them (``model.encode`` / ``model.decode``);
  unannotated frames are encoded too, as context. ``auto`` picks the mode with fewer encoder passes.
  A model whose state reaches beyond a fixed window (a memory of its own earlier predictions,
  ``model.init_state().window`` None) is always streamed, every frame decoded in order.

The mask logits are resized (bilinear) back to the original frame size, passed through the sigmoid
and stored as 8 bits (``round(255 p)``), exactly what a prediction PNG holds, so scoring a checkpoint
and scoring the PNGs it saved with ``--save-pred`` give identical numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from flanet.data import ClipDataset, Video, VideoSet, to_model_input
from flanet.evaluation.prediction_folder import scored_indices
from flanet.metrics.video import heatmap_peaks
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_image_size
from flanet.models.outputs import SegmentationOutput
from flanet.models.state import StreamState

MODES: tuple[str, ...] = ("auto", "clips", "stream")


class PredictionChunk(NamedTuple):
    """Predictions of consecutive annotated frames of one video, all of one size.

    Attributes:
        video: video id.
        indices: frame indices.
        prob: (N, H, W) uint8 ``round(255 p)`` at the original frame size.
        heatmap: (N, S, S) uint8 ``round(255 clip(h, 0, 1))`` at model resolution, or None for
            models without the localisation branch.
        centres: (N, 2) heatmap peaks ``(x, y)`` in pixel-edge coordinates of the original frame
            (:func:`heatmap_peaks`), or None.
    """

    video: str
    indices: list[int]
    prob: np.ndarray
    heatmap: np.ndarray | None
    centres: np.ndarray | None


def _chunk(video: str, indices: list[int], logits: torch.Tensor, heatmap: torch.Tensor | None,
           size: tuple[int, int]) -> PredictionChunk:
    if heatmap is None:
        return PredictionChunk(video, indices, logits_to_uint8(logits, size), None, None)
    heat = (heatmap.float().clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()
    return PredictionChunk(video, indices, logits_to_uint8(logits, size), heat, heatmap_peaks(heatmap.float(), size))


def logits_to_uint8(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, 1, S, S) mask logits to (H, W), sigmoid, quantise: (N, H, W) uint8 ``round(255 p)``."""
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()


def choose_mode(model: VideoSegmentationModel, videos: list[Video], mode: str = "auto", boxes: bool = False) -> str:
    """``clips`` or ``stream``; ``auto`` streams a FLA-Net model when that needs fewer encoder passes.

    ``boxes``: the scored frames are those with a box or annotated lesion-free (detection only).
    """
    if mode not in MODES:
        raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
    window = model.init_state().window
    if window is None:  # a memory beyond a fixed window: a clip of num_frames frames is not its input
        if mode == "clips":
            raise ValueError(f"model {model.config.get('name', type(model).__name__)!r} reads a memory of earlier "
                             "frames, which clips do not hold: evaluate it with inference mode stream (or auto)")
        return "stream"
    can_stream = model.num_frames > 1
    if mode == "stream" and not can_stream:
        raise ValueError("streaming needs a video model (num_frames > 1 with encode/decode)")
    if mode != "auto":
        return mode
    if not can_stream:
        return "clips"
    annotated = [scored for scored in (scored_indices(v, boxes) for v in videos) if scored]
    streamed = sum(indices[-1] + 1 for indices in annotated)  # frames up to the last annotated one
    clipped = sum(len(indices) for indices in annotated) * int(model.num_frames)
    return "stream" if streamed <= clipped else "clips"


def iter_model_predictions(
    model: VideoSegmentationModel,
    video_set: VideoSet,
    split: str | None,
    image_size: int,
    device: torch.device,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    boxes: bool = False,
) -> Iterator[PredictionChunk]:
    """Yield :class:`PredictionChunk` s for the annotated frames of a split.

    Consecutive frames of one video and one size are grouped, so each yield is vectorised. ``boxes``:
    frames with a lesion box or annotated lesion-free count as annotated (detection only).

    Raises:
        ValueError: when ``image_size`` is not a multiple of the model's ``size_multiple``.
    """
    check_image_size(model, image_size)
    dataset = ClipDataset(
        video_set, split=split, image_size=image_size, clip_len=int(model.num_frames), augment=False, edge="causal",
        box_targets=boxes,
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model = model.to(device).eval()
    with torch.inference_mode(), tqdm(total=len(dataset), unit="frame", desc="evaluate", disable=not progress) as bar:
        for batch in loader:
            clip = batch["frames"].to(device, non_blocking=True)  # (B, T, 3, S, S)
            out = model(clip)
            logits = out.mask_logits.float()  # (B, 1, S, S)
            videos, frames = list(batch["video"]), batch["frame_index"].tolist()
            sizes = [tuple(s) for s in batch["orig_size"].tolist()]
            start = 0
            for end in range(1, len(videos) + 1):  # split the batch into runs of (video, size)
                if end == len(videos) or (videos[end], sizes[end]) != (videos[start], sizes[start]):
                    heat = None if out.heatmap is None else out.heatmap[start:end]
                    yield _chunk(videos[start], frames[start:end], logits[start:end], heat, sizes[start])
                    start = end
            bar.update(len(videos))


def _runs_of_equal_size(indices: list[int], sizes: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive positions whose frames share one size."""
    start = 0
    for end in range(1, len(indices) + 1):
        if end == len(indices) or sizes[end] != sizes[start]:
            yield start, end
            start = end


def _decode_chunk(model: VideoSegmentationModel, state: StreamState, levels: list[torch.Tensor],
                  targets: np.ndarray) -> SegmentationOutput | None:
    """Outputs of the frames ``targets`` among the next ``n`` frames of a video (encoded: ``levels``), or None.

    A window state reads the chunk at once and decodes the targets' windows as one batch; a recurrent
    state (a memory of the model's own predictions) decodes every frame in turn, each written to the
    memory before the next is read (:meth:`~flanet.models.contract.VideoSegmentationModel.step`).
    """
    if not state.recurrent:
        inputs = state.read(levels, torch.as_tensor(targets))  # windows [t, t-1, t-2], per level (m, ...)
        return model.decode(inputs) if targets.size else None
    outputs = [model.step(state, [level[k : k + 1] for level in levels])[0] for k in range(levels[0].shape[0])]
    if targets.size == 0:
        return None
    heatmaps = [outputs[int(k)].heatmap for k in targets]
    return SegmentationOutput(torch.cat([outputs[int(k)].mask_logits for k in targets]),
                              None if heatmaps[0] is None else torch.cat(heatmaps))  # type: ignore[arg-type]


def iter_streamed_predictions(
    model: VideoSegmentationModel,
    videos: list[Video],
    image_size: int,
    device: torch.device,
    batch_size: int = 16,
    progress: bool = True,
    boxes: bool = False,
) -> Iterator[PredictionChunk]:
    """Like :func:`iter_model_predictions`, but every frame is encoded once (video models).

    Each video is read in chunks of ``batch_size`` frames: the chunk is encoded as one batch
    (``model.encode``), the model's per-video state (``model.init_state()``; for FLA-Net
    :class:`~flanet.models.windows.CausalWindows`) carries the features of the previous
    ``num_frames - 1`` frames over (the first frame's stand in for the frames before the video start:
    causal edge policy), and the annotated frames of the chunk are decoded as one batch of windows
    ``[t, t-1, t-2]`` (``model.decode``); a memory model decodes every frame of the chunk in order.
    """
    check_image_size(model, image_size)
    model = model.to(device).eval()
    total = sum(len(scored_indices(v, boxes)) for v in videos)
    with torch.inference_mode(), tqdm(total=total, unit="frame", desc="evaluate", disable=not progress) as bar:
        for video in videos:
            annotated = scored_indices(video, boxes)
            if not annotated:
                continue
            wanted = np.zeros(annotated[-1] + 1, dtype=bool)
            wanted[annotated] = True
            frames = video.iter_frames(annotated[-1])
            state = model.init_state()
            for start in range(0, len(wanted), batch_size):
                rgb = list(islice(frames, batch_size))
                images = torch.stack([to_model_input(frame, image_size) for frame in rgb]).to(device)  # (n, 3, S, S)
                targets = np.flatnonzero(wanted[start : start + len(rgb)])
                out = _decode_chunk(model, state, model.encode(images), targets)
                if out is None:
                    continue
                logits = out.mask_logits.float()  # (m, 1, S, S)
                indices = [start + int(t) for t in targets]
                sizes = [tuple(rgb[int(t)].shape[:2]) for t in targets]
                for first, end in _runs_of_equal_size(indices, sizes):
                    heat = None if out.heatmap is None else out.heatmap[first:end]
                    yield _chunk(video.id, indices[first:end], logits[first:end], heat, sizes[first])
                bar.update(len(indices))
