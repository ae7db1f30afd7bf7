"""DPSTT's computation (Li et al., "Rethinking Breast Lesion Segmentation in Ultrasound: A New Video Dataset
and A Baseline Network", MICCAI 2022, Sec. 2): a dynamic parallel spatial-temporal transformer over a memory.

Memory frames are encoded with their masks (an STM-style memory encoder) into keys and values at
stride 16. Two reads run in parallel on the query frame:

* the *temporal* transformer: the map is cut into ``grid x grid`` regions (2 x 2) and each query pixel
  attends only to the same region in every memory frame (lesions move little between frames);
* the *spatial* transformer: with its own query key, each query pixel attends to every position of
  the newest memory frame (the previous frame).

Each read is concatenated with a query value, the two are fused by a 1x1 + 3x3 conv block
(``conv_decouple``) and decoded as STM does (:class:`~flanet.models.video_methods.memory_blocks.MemoryDecoder`).
*Dynamic selection* (Sec. 2.3) keeps only the memory frames most similar to the query: the cosine
similarity of key maps, per channel over the positions, averaged over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.video_methods.attention import memory_read


def region_ids(height: int, width: int, grid: int, device: torch.device) -> Tensor:
    """``(h*w,)`` region of each position of an ``h x w`` map cut into ``grid x grid`` regions.

    The cuts are at ``h // grid`` multiples, the last region taking the remainder (as the public code's 2 x 2 cut).
    """
    rows = (torch.arange(height, device=device) // max(1, height // grid)).clamp(max=grid - 1)
    cols = (torch.arange(width, device=device) // max(1, width // grid)).clamp(max=grid - 1)
    return (rows[:, None] * grid + cols[None, :]).flatten()


def frame_similarity(query_key: Tensor, memory_keys: Tensor) -> Tensor:
    """Dynamic selection's score of each memory frame: ``(B, C, h, w)``, ``(B, T, C, h, w)`` -> ``(B, T)``.

    Per channel the cosine similarity of the two maps' positions, averaged over channels.
    """
    q = F.normalize(query_key.flatten(2).float(), dim=-1)  # (B, C, hw)
    m = F.normalize(memory_keys.flatten(3).float(), dim=-1)  # (B, T, C, hw)
    return (m * q[:, None]).sum(-1).mean(-1)


class ParallelSpatialTemporalRead(nn.Module):
    """The two transformers and their fusion: query features + memory -> the decoder's stride-16 input.

    Args:
        in_channels: width of the query frame's stride-16 features.
        key_channels, value_channels: of the memory keys and values (128, 512 in the paper).
        grid: the temporal transformer's regions per side (2).
    """

    def __init__(self, in_channels: int, key_channels: int, value_channels: int, grid: int = 2) -> None:
        super().__init__()
        self.grid = grid
        self.temporal_key = nn.Conv2d(in_channels, key_channels, 3, padding=1)
        self.temporal_value = nn.Conv2d(in_channels, value_channels, 3, padding=1)
        self.spatial_key = nn.Conv2d(in_channels, key_channels, 3, padding=1)
        self.spatial_value = nn.Conv2d(in_channels, value_channels, 3, padding=1)
        out = 2 * value_channels
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * out, out, 1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
            nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True))
        self.out_channels = out

    def query_key(self, features: Tensor) -> Tensor:
        """The temporal query key ``(B, C_k, h, w)`` (what dynamic selection compares)."""
        return self.temporal_key(features)

    def forward(self, features: Tensor, memory_keys: Tensor, memory_values: Tensor, previous_key: Tensor | None,
                previous_value: Tensor | None) -> Tensor:
        """The fused read ``(B, 2 C_v, h, w)`` (the reads are zero when the memory is empty).

        Args:
            features: the query frame's stride-16 features ``(B, C, h, w)``.
            memory_keys: ``(B, T, C_k, h, w)``, memory_values ``(B, T, C_v, h, w)``: the selected memory frames
                (T may be 0).
            previous_key, previous_value: the previous frame's key and value ``(B, C, h, w)`` (the spatial
                read), None at the video's first frame.
        """
        b, t, ck, h, w = memory_keys.shape
        hw = h * w
        regions = region_ids(h, w, self.grid, features.device)
        same_region = (regions[:, None] == regions[None, :])  # (hw memory, hw query)
        keys = memory_keys.flatten(3).transpose(2, 3).reshape(b, t * hw, ck)
        values = memory_values.flatten(3).transpose(2, 3).reshape(b, t * hw, memory_values.shape[2])
        allowed = same_region.repeat(t, 1)[None].expand(b, -1, -1)
        temporal, _ = memory_read(keys, values, allowed, self.query_key(features))
        spatial_value = self.spatial_value(features)
        if previous_key is None or previous_value is None:
            spatial = torch.zeros_like(spatial_value)
        else:
            spatial, _ = memory_read(previous_key.flatten(2).transpose(1, 2), previous_value.flatten(2).transpose(1, 2),
                                     None, self.spatial_key(features))
        return self.fuse(torch.cat([temporal, self.temporal_value(features), spatial, spatial_value], dim=1))
