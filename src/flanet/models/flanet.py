"""FLA-Net (Fig. 2): shared frame encoder, temporal fusion, two-branch decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.decoder import HeatmapHead, SegmentationHead, UNetDecoder
from flanet.models.encoder import FrameEncoder
from flanet.models.outputs import SegmentationOutput
from flanet.models.windows import gather_windows


class CurrentFrame(nn.Module):
    """Fusion for levels without temporal aggregation: keeps the current frame's map."""

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C, h, w)`` -> ``(B, C, h, w)`` of frame t."""
        return x[:, 0]


class FLANet(VideoSegmentationModel):
    """FLA-Net and its Table 3 ablations, composed from parts.

    Frame order everywhere is current frame first: ``[t, t-1, t-2]`` (as the authors'
    loader). The encoder runs on every frame of a clip as one batch; :meth:`encode` and
    :meth:`decode` expose the two halves so a video can be processed with one encoder
    pass per frame (streaming) and :meth:`forward_windows` so training gets the
    outputs for t and t-1 from the same encoder work (contrastive loss, eq. 1).

    Args:
        encoder: per-frame encoder giving L levels.
        fusions: one module per level mapping ``(B, T, C_l, h, w)`` to ``(B, C_l, h, w)``
            (FFA, the Basic concatenation, or :class:`CurrentFrame`).
        seg_decoder: segmentation branch.
        seg_head: merges the last two decoder layers and predicts the mask.
        loc_decoder: localisation branch, or ``None`` (variants without it).
        heatmap_head: predicts H_t from the localisation branch's last layer.
        num_frames: T, frames per clip.
        detail_level: the encoder's first level is a stride-2 map for the mask head
            (``mask_stride=2``): it bypasses fusion and decoders (current frame only).
    """

    def __init__(
        self,
        encoder: FrameEncoder,
        fusions: Sequence[nn.Module],
        seg_decoder: UNetDecoder,
        seg_head: SegmentationHead,
        loc_decoder: UNetDecoder | None = None,
        heatmap_head: HeatmapHead | None = None,
        num_frames: int = 3,
        detail_level: bool = False,
    ) -> None:
        super().__init__()
        if (loc_decoder is None) != (heatmap_head is None):
            raise ValueError("loc_decoder and heatmap_head go together")
        self.encoder = encoder
        self.fusions = nn.ModuleList(fusions)
        self.seg_decoder = seg_decoder
        self.seg_head = seg_head
        self.loc_decoder = loc_decoder
        self.heatmap_head = heatmap_head
        self.num_frames = num_frames
        self.detail_level = detail_level
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.encoder.size_multiple

    @property
    def has_heatmap(self) -> bool:
        """Whether the model has the localisation branch."""
        return self.loc_decoder is not None

    def encode(self, frames: Tensor) -> list[Tensor]:
        """Encodes frames independently: ``(N, 3, H, W)`` -> per level ``(N, C_l, h_l, w_l)``."""
        return self.encoder(frames)

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """Predicts frame t from cached features.

        Args:
            frame_features: ``num_frames`` entries, features of t, t-1, t-2 (in that
                order), each a list of per-level ``(B, C_l, h_l, w_l)`` tensors.
        """
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frames, got {len(frame_features)}")
        levels = [  # (B, T, C, h, w); only frame t where the level is not fused
            level[0].unsqueeze(1) if isinstance(fusion, CurrentFrame) else torch.stack(level, dim=1)
            for fusion, level in zip(self.fusions, zip(*frame_features))
        ]
        return self._decode_levels(levels)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)``, frames [t, t-1, t-2] -> output for frame t."""
        self._check_clip(clip, exact=True)
        b, t = clip.shape[:2]
        features = self.encode(clip.flatten(0, 1))  # each (B*T, C, h, w)
        return self._decode_levels([f.unflatten(0, (b, t)) for f in features])

    def forward_windows(self, clip: Tensor) -> SegmentationOutput:
        """Outputs for every window of ``num_frames`` consecutive frames of a longer clip.

        Args:
            clip: ``(B, L, 3, H, W)``, frames [t, t-1, ..., t-L+1], L >= num_frames.

        Returns:
            Tensors ``(B, W, 1, H, W)`` with W = L - num_frames + 1; window w predicts
            frame ``clip[:, w]`` from frames ``clip[:, w : w + num_frames]``. Each frame
            is encoded once; the windows are gathered by :mod:`flanet.models.windows`.
        """
        self._check_clip(clip, exact=False)
        b, length = clip.shape[:2]
        windows = length - self.num_frames + 1
        features = self.encode(clip.flatten(0, 1))
        # in video order clip[:, w] is frame L-1-w: the windows of frames L-1, ..., T-1
        ends = torch.arange(length - 1, self.num_frames - 2, -1, device=clip.device)
        levels = [  # (B, L, C, h, w) in video order -> (B, W, T, C, h, w) -> (B*W, T, C, h, w)
            gather_windows(f.unflatten(0, (b, length)).flip(1), ends, self.num_frames, dim=1).flatten(0, 1)
            for f in features
        ]
        out = self._decode_levels(levels)
        return SegmentationOutput(
            out.mask_logits.unflatten(0, (b, windows)),
            None if out.heatmap is None else out.heatmap.unflatten(0, (b, windows)),
        )

    def _decode_levels(self, levels: Sequence[Tensor]) -> SegmentationOutput:
        """Fusion and the two-branch decoder; ``levels`` are ``(B, T, C_l, h_l, w_l)``."""
        size = (levels[0].shape[-2] * self.encoder.reductions[0], levels[0].shape[-1] * self.encoder.reductions[0])
        fused = [fusion(x) for fusion, x in zip(self.fusions, levels)]  # (B, C_l, h_l, w_l)
        detail = fused.pop(0) if self.detail_level else None  # stride-2 map of frame t
        seg = self.seg_decoder(fused)
        d1, d2 = seg[-1], seg[-2]
        heatmap = None
        if self.loc_decoder is not None and self.heatmap_head is not None:
            loc = self.loc_decoder(fused)
            heatmap = self.heatmap_head(loc[-1], size)
            d1, d2 = d1 + loc[-1], d2 + loc[-2]
        return SegmentationOutput(self.seg_head(d1, d2, size, detail), heatmap)

    def _check_clip(self, clip: Tensor, exact: bool) -> None:
        if clip.ndim != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        t = clip.shape[1]
        if (exact and t != self.num_frames) or t < self.num_frames:
            need = f"exactly {self.num_frames}" if exact else f"at least {self.num_frames}"
            raise ValueError(f"clip has {t} frames, this model needs {need} (current frame first)")
