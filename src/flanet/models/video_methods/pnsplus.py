"""PNS+ (Ji et al., MIR 2022) on the model contract: an anchor frame and a causal window of local frames.

PNS+ reads an anchor frame (the video's first frame, through the global encoder) and T = 5
consecutive frames (the local encoder) and segments the T frames together (Sec. 4, Fig. 5;
:mod:`~flanet.models.video_methods.pnsplus_blocks`). Here frame t is segmented from the window
``[t, t-1, ..., t-4]`` (the first frame repeated before the video start) and the anchor: the video's
first frame when streaming (:class:`AnchorWindow`), the oldest frame of a training clip
(``num_frames = 6``: five local frames then the anchor, current first).

Deviations, and why: (1) causal: only the newest frame of the window is predicted (the paper
predicts all five, each also seeing later frames), so a live stream never waits for future frames;
(2) the NS block's CUDA kernel is plain PyTorch (``F.unfold`` neighbourhoods), softmax-normalised as
the paper's equations (the public code aggregates the values with the unnormalised scores);
(3) the query's layer norm is a per-group GroupNorm (the public code's LayerNorm is tied to a
16 x 28 feature map, i.e. one input size); (4) training clips take the anchor from the clip, not
the video's first frame, which the clip data do not carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import TimmLevels, resize
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model
from flanet.models.state import StreamState
from flanet.models.video_methods.pnsplus_blocks import LightRFB, PNSPlusHead
from flanet.models.windows import CausalWindows, frame_features


@dataclass(frozen=True)
class PNSPlusOptions(ModelOptions):
    """Options of :class:`PNSPlus` (defaults: the paper's and its public code's settings).

    Attributes:
        encoder: timm CNN whose levels 2 and 3 (strides 8, 16) are read (the paper: Res2Net-50).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        local_frames: T, frames of the local window, the current one included (5).
        high_channels, low_channels: widths of the stride-16 and stride-8 RFB outputs (32, 24).
        rfb_channels: the RFBs' inner width (128).
        seg_channels: the decoder's width (16).
        heads, attention_channels: NS block channel groups and their query/key/value width (4, 8).
        radius: per group, the neighbourhood radius r ((2r+1)^2 positions a frame; 3).
        global_dilation, local_dilation: per group, the dilation of the anchor-query and of the
            local-query NS block ([3, 4, 3, 4] and [1, 2, 1, 2]).
        mask_prior: None: the authors' bias-free 1x1 classifier; a probability (e.g. 0.01, FLA-Net's
            default): a classifier with a bias started at that lesion probability
            (:func:`flanet.models.blocks.mask_classifier`; docs/benchmarks.md: the bias-free head's
            background probability floor in short schedules).
    """

    encoder: str = "res2net50_26w_4s"
    encoder_weights: str | None = None
    local_frames: int = 5
    high_channels: int = 32
    low_channels: int = 24
    rfb_channels: int = 128
    seg_channels: int = 16
    heads: int = 4
    attention_channels: int = 8
    radius: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    global_dilation: list[int] = field(default_factory=lambda: [3, 4, 3, 4])
    local_dilation: list[int] = field(default_factory=lambda: [1, 2, 1, 2])
    mask_prior: float | None = None


class AnchorWindow(StreamState):
    """PNS+'s per-video state: the first frame's levels (the anchor) and the causal window of the last T frames.

    Not recurrent (nothing comes from the predictions), so N consecutive frames are read at once;
    ``window`` is None because the anchor reaches back to the video's start (streamed in PyTorch only).
    """

    recurrent = False
    window = None

    def __init__(self, local_frames: int) -> None:
        self._windows = CausalWindows(local_frames)
        self._anchor: list[Tensor] | None = None
        self.frames_seen = 0

    def read(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[list[Tensor]]:
        """``decode``'s input for the asked frames: their T window frames (t first), then the anchor."""
        if self._anchor is None:
            self._anchor = [level[:1] for level in levels]
        entries = frame_features(self._windows.push(levels, targets))
        count = entries[0][0].shape[0]
        self.frames_seen = self._windows.frames_seen
        return [*entries, [a.expand(count, *a.shape[1:]) for a in self._anchor]]

    @property
    def context_frames(self) -> int:
        """The window's distinct frames plus the anchor when it is not among them."""
        return min(self.frames_seen, self._windows.num_frames) + int(self.frames_seen > self._windows.num_frames)

    @property
    def held_frames(self) -> int:
        """The window's T - 1 previous frames and the anchor."""
        return self._windows.held_frames + int(self._anchor is not None)


class PNSPlus(VideoSegmentationModel):
    """PNS+ segmenting frame t: ``decode([t, t-1, ..., t-T+1, anchor])`` (see the module docstring)."""

    has_heatmap = False

    def __init__(self, options: PNSPlusOptions) -> None:
        super().__init__()
        if options.local_frames < 1:
            raise ValueError(f"local_frames must be >= 1, got {options.local_frames}")
        self.options = options
        self.config: dict = {}
        self.num_frames = options.local_frames + 1
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (2, 3))
        c8, c16 = self.encoder.channels
        self.low_rfb = LightRFB(c8, options.rfb_channels, options.low_channels)
        self.high_rfb = LightRFB(c16, options.rfb_channels, options.high_channels)
        self.head = PNSPlusHead(options.high_channels, options.low_channels, options.seg_channels, options.heads,
                                options.attention_channels, options.radius, options.global_dilation, options.local_dilation,
                                options.mask_prior)

    @property
    def size_multiple(self) -> int:
        return max(self.encoder.reductions)

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> ``[stride-8 RFB map (N, 24, H/8, W/8), stride-16 RFB map (N, 32, H/16, W/16)]``."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        low, high = self.encoder(frames)
        return [self.low_rfb(low), self.high_rfb(high)]

    def init_state(self) -> AnchorWindow:
        """The anchor (first frame) and the causal window of ``local_frames`` frames."""
        return AnchorWindow(self.options.local_frames)

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """``[t, t-1, ..., t-T+1, anchor]``, each ``[low, high]`` -> the mask of frame t."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frames (the window, then the anchor), "
                             f"got {len(frame_features)}")
        local = torch.stack([entry[1] for entry in frame_features[-2::-1]], dim=1)  # oldest first, t last
        anchor_high = frame_features[-1][1]
        low = frame_features[0][0]
        logits = self.head(anchor_high, local, low)
        size = (low.shape[-2] * self.encoder.reductions[0], low.shape[-1] * self.encoder.reductions[0])
        return SegmentationOutput(resize(logits, size), None)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, L, 3, H, W)``, current frame first: the window is its first T frames (its oldest frame
        repeated when L <= T), the anchor its oldest frame; so ``L = T + 1`` is a training clip and the video
        so far (``L = t + 1``) gives what streaming gives."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] < 1:
            raise ValueError(f"expected a clip (B, L, 3, H, W), got shape {tuple(clip.shape)}")
        b, length = clip.shape[:2]
        picks = [min(k, length - 1) for k in range(self.options.local_frames)] + [length - 1]
        frames = clip[:, sorted(set(picks))]  # each frame encoded once
        position = {k: i for i, k in enumerate(sorted(set(picks)))}
        levels = [level.unflatten(0, (b, frames.shape[1])) for level in self.encode(frames.flatten(0, 1))]
        return self.decode([[level[:, position[k]] for level in levels] for k in picks])


@register_model("pnsplus", PNSPlusOptions, ModelInfo(
    kind="video", description="PNS+: anchor frame + causal 5-frame window, normalized self-attention (Res2Net-50)",
    paper="Ji et al., Video Polyp Segmentation: A Deep Learning Perspective, Machine Intelligence Research 2022",
    rows=(PaperRow(2, "PNS+"),),
    reference="paper Sec. 4 (global/local encoders, NS blocks) and PNSNet (MICCAI 2021) Sec. 2.1; "
              "github.com/GewelsJI/VPS (Apache-2.0) read as a reference, not copied; its CUDA NS kernel is plain PyTorch here",
    loss_terms=("bce",),
))
def _pnsplus(options: PNSPlusOptions) -> PNSPlus:
    return PNSPlus(options)
