"""DCFNet (Zhang et al., ICCV 2021; FLA-Net's ref. [16]) on the model contract: a causal window of 5 frames.

Each frame is encoded once: a dilated ResNet-101 (output stride 16), ASPP on its deepest level, and a
fusion (the public code's ``MakeFB``) that gives four 128-channel maps y0..y3 at strides 4, 8, 16, 16,
each the sum of every level resampled to it. The decoder (:class:`~flanet.models.video_methods.dcfnet_blocks.DenseDecoder`)
runs a bidirectional dynamic fusion at each of four levels, deep to shallow, each level's input
depending on the previous levels' outputs of the same frame.

Causal deviation: the "next" neighbour of each fusion is the current frame itself (what the public code
does at a clip's last frame), so frame t's level inputs depend on frames t-1 and t. Unrolled over the
four levels, frame t's output then depends on exactly the frames t-4..t: DCFNet is a window model of
``num_frames = 5`` (current first), decoded by recomputing the earlier frames' level inputs from their
cached encoder maps (4 + 3 + 2 + 1 fusions a frame instead of 4 with a recurrent state, for a state
that is a plain causal window: clip evaluation, export and frames in flight work as for FLA-Net).
Other deviations: the level fusion resamples with 1x1 conv + BN then bilinear resizing (the public
code chains strided 3x3 convs downwards); the fusion weight alpha passes a sigmoid (the public code
uses the raw linear output). Trained with the public code's loss: BCE + SSIM + IoU (``bce-ssim-iou``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import ConvBNReLU, TimmLevels, resize
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model
from flanet.models.video_methods.dcfnet_blocks import DenseDecoder

#: Frames a DCFNet output depends on: four fusion levels, each one frame further back, and the current one.
WINDOW = 5


@dataclass(frozen=True)
class DCFNetOptions(ModelOptions):
    """Options of :class:`DCFNet`.

    Attributes:
        encoder: timm CNN whose levels 1-4 are read at output stride 16 (the paper: ResNet-101, dilated).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        aspp_channels: width of the ASPP output (256).
        aspp_dilations: the ASPP's three dilations (6, 12, 18 at output stride 16).
        channels: width of the fused levels and the decoder (128).
    """

    encoder: str = "resnet101"
    encoder_weights: str | None = None
    aspp_channels: int = 256
    aspp_dilations: list[int] = field(default_factory=lambda: [6, 12, 18])
    channels: int = 128


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): 1x1, three dilated 3x3 and image pooling, fused by a 3x3 conv."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1)]
                                      + [ConvBNReLU(in_channels, channels, 3, dilation=d) for d in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.fuse = nn.Sequential(ConvBNReLU(channels * (len(dilations) + 2), channels), nn.Dropout2d(0.1))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.fuse(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class LevelFusion(nn.Module):
    """Four output maps, each ``ReLU(sum_j BN(conv1x1(x_j)) resized to level i)``, all ``channels`` wide."""

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(
            nn.ModuleList(nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels))
                          for c in in_channels) for _ in in_channels)

    def forward(self, levels: Sequence[Tensor]) -> list[Tensor]:
        return [torch.relu(sum(resize(proj(x), target.shape[-2:]) for proj, x in zip(projections, levels)))
                for projections, target in zip(self.project, levels)]


class DCFNet(VideoSegmentationModel):
    """DCFNet segmenting frame t from the window ``[t, t-1, ..., t-4]`` (see the module docstring)."""

    num_frames = WINDOW
    has_heatmap = False

    def __init__(self, options: DCFNetOptions) -> None:
        super().__init__()
        if len(options.aspp_dilations) != 3:
            raise ValueError(f"aspp_dilations needs 3 dilations, got {list(options.aspp_dilations)}")
        self.options = options
        self.config: dict = {}
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (1, 2, 3, 4), output_stride=16)
        c4, c8, c16, c32 = self.encoder.channels
        self.aspp = ASPP(c32, options.aspp_channels, options.aspp_dilations)
        self.fusion = LevelFusion((c4, c8, c16, options.aspp_channels), options.channels)
        self.decoder = DenseDecoder(options.channels)

    @property
    def size_multiple(self) -> int:
        return 16

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the fused maps y0..y3 ``(N, 128, H/r, W/r)``, r = 4, 8, 16, 16."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        b4, b8, b16, b32 = self.encoder(frames)
        return self.fusion([b4, b8, b16, self.aspp(b32)])

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """``[t, t-1, ..., t-4]``, each ``[y0, y1, y2, y3]`` -> the mask of frame t (the recurrence unrolled)."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frames, got {len(frame_features)}")
        oldest_first = [list(levels) for levels in frame_features[::-1]]
        previous: list[Tensor] | None = None
        logits = None
        for depth, levels in enumerate(oldest_first):  # frame t-4+j needs j fusions (module docstring)
            logits, previous = self.decoder.step(levels, previous, depth)
        assert logits is not None
        y0 = frame_features[0][0]
        return SegmentationOutput(resize(logits, (y0.shape[-2] * 4, y0.shape[-1] * 4)), None)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, 5, 3, H, W)``, current frame first -> output for frame t."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] != self.num_frames:
            raise ValueError(f"expected a clip (B, {self.num_frames}, 3, H, W), got shape {tuple(clip.shape)}")
        b, t = clip.shape[:2]
        levels = [level.unflatten(0, (b, t)) for level in self.encode(clip.flatten(0, 1))]
        return self.decode([[level[:, k] for level in levels] for k in range(t)])


@register_model("dcfnet", DCFNetOptions, ModelInfo(
    kind="video", description="DCFNet: dynamic context-sensitive filtering, causal bidirectional fusion (ResNet-101)",
    paper="Zhang et al., Dynamic Context-Sensitive Filtering Network for Video Salient Object Detection, ICCV 2021",
    rows=(PaperRow(2, "DCFNet"),),
    reference="paper Sec. 3 (DCFM, bidirectional dynamic fusion); github.com/Roudgers/DCFNet (no licence file) "
              "read as a reference, not copied",
    loss_terms=("bce", "ssim", "iou"),
))
def _dcfnet(options: DCFNetOptions) -> DCFNet:
    return DCFNet(options)
