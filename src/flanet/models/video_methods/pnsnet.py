"""PNSNet (Ji et al., MICCAI 2021): progressively normalized self-attention, the video method of FLA-Net's Table 4.

Every frame of a clip goes through Res2Net-50; its stride-8 (layer2) and stride-16 (layer3) maps
are reduced by light receptive-field blocks (RFB with squeeze-excitation) to 24 and 32 channels
(Sec. 2: the low- and high-level features). The high-level maps of the T frames are then refined by
two normalized self-attention (NS) blocks in cascade (Sec. 2.1-2.2, "progressive learning"), each
added back as a residual. An NS block (Sec. 2.1) splits the channels into N = 4 groups (heads),
one per dilation rate (1, 3, 5, 7) (the query-dependent rule); a head's query, layer-normalised,
is compared with the keys of a (2r+1) x (2r+1) dilated neighbourhood, r = 3, in *every* frame of
the clip (normalized relevance measuring, scaled by 1/sqrt(d_k) and a softmax over the T (2r+1)^2
positions), its values are summed with those weights (spatial-temporal aggregation), and the heads'
result, projected back to C channels, is gated by the strongest attention weight at each position
(soft attention). A small decoder merges the refined high-level map of frame t with its low-level map
and predicts the mask at stride 8. The loss is binary cross-entropy (``loss.mask_loss: bce``).

The authors compute the neighbourhood attention with a custom CUDA operator; here it is plain
PyTorch (``F.unfold`` of the keys and values, -inf outside the map), the same function. Causal
streaming (FLA-Net's setting): PNSNet segments every frame of a clip from the whole clip; here
frame t is segmented from the window ``[t, ..., t-T+1]`` (T = ``num_frames`` = 5, the authors' clip
length), so each frame is encoded once and the NS blocks run over the window (docs/model.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.blocks import mask_classifier
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import TimmLevels, resize
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model


@dataclass(frozen=True)
class PNSNetOptions(ModelOptions):
    """Options of :class:`PNSNet`.

    Attributes:
        encoder: timm CNN whose levels 2 and 3 (strides 8, 16) are the low- and high-level maps (Res2Net-50).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        num_frames: T, frames of the causal window (the authors' clips: 5).
        low_channels: width of the low-level map after its RFB (24).
        high_channels: width of the high-level map and the NS blocks, C (32).
        rfb_channels: inner width of the RFBs (128).
        head_channels: d_k = d_v of each of the NS heads (8).
        dilations: one dilation rate per head (1, 3, 5, 7): N = 4 heads.
        radius: r of the (2r+1) x (2r+1) neighbourhood (3).
        ns_blocks: NS blocks in cascade (2).
        mask_prior: None: the authors' bias-free 1x1 classifier; a probability (e.g. 0.01, FLA-Net's
            default): a classifier with a bias started at that lesion probability
            (:func:`flanet.models.blocks.mask_classifier`). In short schedules the bias-free head keeps
            a background probability floor that dominates its MAE (docs/benchmarks.md).
    """

    encoder: str = "res2net50_26w_4s"
    encoder_weights: str | None = None
    num_frames: int = 5
    low_channels: int = 24
    high_channels: int = 32
    rfb_channels: int = 128
    head_channels: int = 8
    dilations: list[int] = field(default_factory=lambda: [1, 3, 5, 7])
    radius: int = 3
    ns_blocks: int = 2
    mask_prior: float | None = None


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    """Convolution, BatchNorm and (optionally) PReLU, as in the method's light blocks."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels)]
    if act:
        layers.append(nn.PReLU(out_channels))
    return nn.Sequential(*layers)


class LightRFB(nn.Module):
    """A light receptive-field block: squeeze-excitation, a 1x1 reduction, four depthwise branches of
    growing kernel and dilation (1, 3, 5, 7), concatenated with the input and fused by a 1x1 convolution."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = max(1, in_channels // 4)
        self.excite = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(hidden, in_channels, 1), nn.Hardsigmoid())
        self.reduce = _conv_bn(in_channels, mid_channels)
        c = mid_channels
        branches = [nn.Sequential(_conv_bn(c, c), _conv_bn(c, c, 3, groups=c, act=False))]
        for k in (3, 5, 7):  # depthwise k x k, pointwise, depthwise 3x3 dilated by k
            branches.append(nn.Sequential(_conv_bn(c, c, k, groups=c, act=False), _conv_bn(c, c),
                                          _conv_bn(c, c, 3, dilation=k, groups=c, act=False)))
        self.branches = nn.ModuleList(branches)
        self.fuse = _conv_bn(4 * c + in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, h, w) -> (N, C_out, h, w)
        reduced = self.reduce(x * self.excite(x))
        return self.fuse(torch.cat([x, *(branch(reduced) for branch in self.branches)], dim=1))


def neighbourhood(x: Tensor, radius: int, dilation: int) -> Tensor:
    """``(B, T, d, h, w)`` -> ``(B, T, d, K, h*w)``: each position's K = (2r+1)^2 dilated neighbours (zeros outside)."""
    b, t, d, h, w = x.shape
    size = 2 * radius + 1
    cols = F.unfold(x.flatten(0, 1), size, dilation=dilation, padding=radius * dilation)  # (B*T, d*K, h*w)
    return cols.view(b, t, d, size * size, h * w)


class NormalizedSelfAttention(nn.Module):
    """An NS block (Sec. 2.1): per head, layer-normalised queries attend to a dilated neighbourhood in every frame.

    Args:
        channels: C of the input ``(B, T, C, h, w)``.
        head_channels: d_k = d_v per head.
        dilations: one dilation rate per head.
        radius: r of the neighbourhood.
    """

    def __init__(self, channels: int, head_channels: int, dilations: Sequence[int], radius: int) -> None:
        super().__init__()
        heads = len(dilations)
        self.dilations, self.radius, self.head_channels = tuple(dilations), radius, head_channels
        self.query = nn.Conv2d(channels, heads * head_channels, 1, bias=False)
        self.key = nn.Conv2d(channels, heads * head_channels, 1, bias=False)
        self.value = nn.Conv2d(channels, heads * head_channels, 1, bias=False)
        self.out = nn.Conv2d(heads * head_channels, channels, 1, bias=False)
        # layer normalisation of each head's query over (d_k, h, w), with a per-channel affine (any input size)
        self.norms = nn.ModuleList(nn.GroupNorm(1, head_channels) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C, h, w)`` -> ``(B, T, C, h, w)``."""
        b, t, _, h, w = x.shape
        flat = x.flatten(0, 1)
        queries = self.query(flat).split(self.head_channels, dim=1)
        keys = self.key(flat).unflatten(0, (b, t)).split(self.head_channels, dim=2)
        values = self.value(flat).unflatten(0, (b, t)).split(self.head_channels, dim=2)
        outputs, strongest = [], []
        for norm, dilation, q, k, v in zip(self.norms, self.dilations, queries, keys, values):
            q = norm(q).unflatten(0, (b, t)).flatten(3)  # (B, T, d, h*w)
            inside = neighbourhood(torch.ones_like(x[:1, :1, :1]), self.radius, dilation)[0, 0, 0] > 0.5  # (K, hw)
            logits = torch.einsum("btdp,bsdkp->btskp", q, neighbourhood(k, self.radius, dilation))
            logits = logits / math.sqrt(self.head_channels)
            logits = logits.masked_fill(~inside, float("-inf")).flatten(2, 3)  # (B, T, T*K, hw)
            weights = logits.softmax(dim=2)
            nv = neighbourhood(v, self.radius, dilation).transpose(1, 2).flatten(2, 3)  # (B, d, T*K, hw)
            outputs.append(torch.einsum("btmp,bdmp->btdp", weights, nv))
            strongest.append(weights.amax(dim=2))  # (B, T, hw)
        aggregated = torch.cat(outputs, dim=2).unflatten(3, (h, w)).flatten(0, 1)  # (B*T, N*d, h, w)
        gate = torch.stack(strongest).amax(dim=0).unflatten(2, (h, w)).flatten(0, 1)[:, None]  # (B*T, 1, h, w)
        return (self.out(aggregated) * gate).unflatten(0, (b, t))


class PNSNet(VideoSegmentationModel):
    """PNSNet on the causal window ``[t, ..., t-T+1]`` (see the module docstring).

    :meth:`encode` gives each frame's ``[low, high]`` maps after their RFBs (stride 8 and 16), computed
    once per frame; :meth:`decode` runs the NS blocks over the window's high-level maps and decodes frame t.
    """

    has_heatmap = False

    def __init__(self, options: PNSNetOptions) -> None:
        super().__init__()
        if options.num_frames < 1 or options.radius < 0 or not options.dilations or options.ns_blocks < 0:
            raise ValueError("pnsnet needs num_frames >= 1, radius >= 0, at least one dilation and ns_blocks >= 0")
        self.options, self.num_frames = options, options.num_frames
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (2, 3))
        c_low, c_high = self.encoder.channels
        low, high = options.low_channels, options.high_channels
        self.low_rfb = LightRFB(c_low, options.rfb_channels, low)
        self.high_rfb = LightRFB(c_high, options.rfb_channels, high)
        self.ns_blocks = nn.ModuleList(
            NormalizedSelfAttention(high, options.head_channels, options.dilations, options.radius)
            for _ in range(options.ns_blocks))
        half = high // 2
        self.up_high = nn.ModuleList([nn.Conv2d(high, high // 2, 1, bias=False),  # then two parallel 3x3: dilation 1, 2
                                      nn.Conv2d(half - half // 2, half - half // 2, 3, padding=1, bias=False),
                                      nn.Conv2d(half // 2, half // 2, 3, padding=2, dilation=2, bias=False)])
        self.up_high_norm = nn.BatchNorm2d(half)
        self.up_low = nn.Sequential(nn.Conv2d(low, half, 1, bias=False), nn.BatchNorm2d(half))
        self.merge = nn.Sequential(nn.PReLU(half), nn.Conv2d(half, half, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(half), nn.PReLU())
        self.head = nn.Sequential(nn.Dropout2d(0.1), mask_classifier(half, options.mask_prior, bias=False))
        self._size_multiple = max(self.encoder.reductions)
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self._size_multiple

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> ``[low (N, 24, H/8, W/8), high (N, 32, H/16, W/16)]``."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        low, high = self.encoder(frames)
        return [self.low_rfb(low), self.high_rfb(high)]

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """The mask of frame t from the window's ``[low, high]`` maps, t first."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frames, got {len(frame_features)}")
        low = frame_features[0][0]
        high = torch.stack([frame[1] for frame in frame_features], dim=1)  # (B, T, C, h, w)
        refined = high
        for block in self.ns_blocks:  # progressive: each block's output added to its input
            refined = refined + block(refined)
        current = resize((high + refined)[:, 0] if self.ns_blocks else high[:, 0], low.shape[-2:])
        reduce, dilated1, dilated2 = self.up_high
        x = reduce(current)
        first = x.shape[1] - x.shape[1] // 2
        x = self.up_high_norm(torch.cat([dilated1(x[:, :first]), dilated2(x[:, first:])], dim=1))
        mask = self.head(self.merge(x + self.up_low(low)))
        size = (low.shape[-2] * self.encoder.reductions[0], low.shape[-1] * self.encoder.reductions[0])
        return SegmentationOutput(resize(mask, size), None)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)``, frames ``[t, t-1, ...]`` -> output for frame t."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] != self.num_frames:
            raise ValueError(f"expected a clip (B, {self.num_frames}, 3, H, W), current frame first; "
                             f"got shape {tuple(clip.shape)}")
        b, t = clip.shape[:2]
        levels = [level.unflatten(0, (b, t)) for level in self.encode(clip.flatten(0, 1))]
        return self.decode([[level[:, k] for level in levels] for k in range(t)])


@register_model("pnsnet", PNSNetOptions, ModelInfo(
    kind="video", description="PNSNet: normalized self-attention over a causal window of 5 frames (Res2Net-50)",
    paper="Ji et al., Progressively Normalized Self-Attention Network for Video Polyp Segmentation, MICCAI 2021",
    rows=(PaperRow(4, "PNSNet"),),
    reference="paper Sections 2.1-2.2; github.com/GewelsJI/PNS-Net (Apache-2.0) read as a reference, not copied; "
              "its CUDA neighbourhood attention written in plain PyTorch; causal window instead of whole clips",
    loss_terms=("bce",),
))
def _pnsnet(options: PNSNetOptions) -> PNSNet:
    return PNSNet(options)
