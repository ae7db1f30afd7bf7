"""Running a model over the annotated frames of a split, for scoring.

Clips come from :class:`flanet.data.ClipDataset` (``clip_len = model.num_frames``, causal edge
policy, no augmentation): the frames with a mask, video by video in frame order. The sigmoid
probability is resized (bilinear) back to the original frame size and stored as 8 bits
(``round(255 p)``), exactly what a prediction PNG holds, so that scoring a checkpoint and scoring
the PNGs it saved with ``--save-pred`` give identical numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from flanet.data import ClipDataset, VideoSet


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available (or the device asked for), else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def probabilities_to_uint8(prob: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, 1, S, S) probabilities to (H, W) and quantise: (N, H, W) uint8 ``round(255 p)``."""
    if tuple(prob.shape[-2:]) != size:
        prob = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)
    return (prob.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].cpu().numpy()


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
            prob = torch.sigmoid(model(clip).mask_logits.float())  # (B, 1, S, S)
            videos, frames = list(batch["video"]), batch["frame_index"].tolist()
            sizes = [tuple(s) for s in batch["orig_size"].tolist()]
            start = 0
            for end in range(1, len(videos) + 1):  # split the batch into runs of (video, size)
                if end == len(videos) or (videos[end], sizes[end]) != (videos[start], sizes[start]):
                    yield videos[start], frames[start:end], probabilities_to_uint8(prob[start:end], sizes[start])
                    start = end
            bar.update(len(videos))
