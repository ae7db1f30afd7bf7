"""What the image comparison methods of Tables 2 and 4 share: one frame in, a mask and side outputs out.

Each method (ResUNet++, ACSNet, PraNet, TransUNet, SETR) segments the current frame of a clip
alone (``num_frames`` 1), so :meth:`ImageMethod.encode` is its per-frame encoder and
:meth:`ImageMethod.decode` everything after it; streaming is then ``forward`` by construction.
Methods trained with deep supervision (PraNet, ACSNet, SETR's auxiliary heads) return their
side predictions in :attr:`SegmentationOutput.side_logits` while training, and none in eval
mode, so inference, streaming and export see the main prediction only.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelOptions
from flanet.models.weights import load_encoder_weights


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (a no-op when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """Convolution, BatchNorm, ReLU: the basic block of every method here (their papers use BatchNorm)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (CVPR 2018): global pooling, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        return x * self.gate(x)


class TimmLevels(nn.Module):
    """A timm ``features_only`` CNN giving chosen levels, with their widths and strides.

    Args:
        name: timm model name.
        weights: ``"imagenet"``, a local state dict file, or None (see :mod:`flanet.models.weights`).
        levels: which of the backbone's levels to return (0 = shallowest), e.g. ``(2, 3, 4)`` for
            PraNet's strides 8, 16 and 32 on a ResNet.
        output_stride: the deepest stride, when the backbone should dilate its last stages instead of
            striding (timm's ``output_stride``, e.g. 16 for DCFNet's dilated ResNet-101); None: its own.
    """

    def __init__(self, name: str, weights: str | None, levels: Sequence[int], output_stride: int | None = None) -> None:
        super().__init__()
        if name not in timm.list_models():
            raise ValueError(f"unknown timm encoder {name!r}; see timm.list_models()")
        with torch.device("meta"):  # count the levels without allocating weights
            total = len(timm.create_model(name, features_only=True, pretrained=False).feature_info)
        if any(not 0 <= level < total for level in levels):
            raise ValueError(f"encoder {name!r} gives {total} feature levels; this method needs levels {list(levels)}")
        extra = {} if output_stride is None else {"output_stride": output_stride}
        self.backbone = timm.create_model(name, features_only=True, pretrained=False, out_indices=tuple(levels), **extra)
        if weights is not None:
            load_encoder_weights(self.backbone, name, weights)
        self.channels: tuple[int, ...] = tuple(self.backbone.feature_info.channels())
        self.reductions: tuple[int, ...] = tuple(self.backbone.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> per level ``(N, C_l, H / r_l, W / r_l)``, shallow to deep."""
        return list(self.backbone(x))


class ImageMethod(VideoSegmentationModel):
    """Base of the image methods: the current frame through ``encoder`` and :meth:`decode_frame`.

    Subclasses set ``self.encoder`` (a module mapping ``(N, 3, H, W)`` to a list of maps) and
    implement :meth:`decode_frame`. ``options`` is the method's options dataclass (registered
    with it, :mod:`flanet.models.registry`); :func:`~flanet.models.create_model` sets ``config``.
    """

    num_frames = 1
    has_heatmap = False

    def __init__(self, options: ModelOptions, size_multiple: int) -> None:
        super().__init__()
        self.options = options
        self._size_multiple = int(size_multiple)
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self._size_multiple

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the encoder's maps (see each method)."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return list(self.encoder(frames))

    @abstractmethod
    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        """Features of one frame -> ``(mask logits (B, 1, *size), side logits at any resolution)``.

        Side logits are only needed in training mode (deep supervision); return ``[]`` otherwise.
        """

    def input_size(self, features: Sequence[Tensor]) -> tuple[int, int]:
        """The frame size ``(H, W)`` the features came from (their first map times its stride)."""
        first = features[0]
        stride = self.first_stride
        return first.shape[-2] * stride, first.shape[-1] * stride

    @property
    @abstractmethod
    def first_stride(self) -> int:
        """Stride of the first map :meth:`encode` returns."""

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """The mask of frame t from its features (``frame_features`` has one entry)."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frame, got {len(frame_features)}")
        features = list(frame_features[0])
        size = self.input_size(features)
        mask, sides = self.decode_frame(features, size)
        return SegmentationOutput(mask, None, tuple(resize(s, size) for s in sides) if self.training else ())

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)`` (T >= 1, current frame first) -> output for frame t."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] < 1:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        return self.decode([self.encode(clip[:, 0])])
