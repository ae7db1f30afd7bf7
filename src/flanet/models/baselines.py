"""Image-only baselines of Table 2 (UNet, UNet++) from segmentation-models-pytorch.

They take the same clip tensor as FLA-Net but segment the current frame alone
(``clip[:, 0]``), so every pipeline (training, evaluation, streaming) treats all models
alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import segmentation_models_pytorch as smp
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model
from flanet.models.weights import load_encoder_weights


class ImageBaseline(VideoSegmentationModel):
    """An smp image segmenter applied to the current frame of a clip.

    Its :meth:`encode` is the smp encoder and its :meth:`decode` the smp decoder and head
    on the features of frame t alone (``num_frames`` is 1), so the streaming and
    evaluation code run it exactly like FLA-Net.

    Args:
        net: an smp model mapping ``(B, 3, H, W)`` to logits ``(B, 1, H, W)``.
        size_multiple: H and W must be multiples of this.
    """

    num_frames = 1
    has_heatmap = False

    def __init__(self, net: nn.Module, size_multiple: int = 32) -> None:
        super().__init__()
        self.net = net
        self._size_multiple = size_multiple
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self._size_multiple

    @property
    def encoder(self) -> nn.Module:
        """The smp encoder (a timm backbone)."""
        return self.net.encoder

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the smp encoder's feature maps, shallow to deep."""
        return list(self.net.encoder(frames))

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """Decoder and head on the features of frame t (``frame_features`` has one entry)."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frame, got {len(frame_features)}")
        return SegmentationOutput(self.net.segmentation_head(self.net.decoder(list(frame_features[0]))), None)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, T, 3, H, W)`` (T >= 1, current frame first) -> output for frame t."""
        if clip.ndim != 5 or clip.shape[2] != 3 or clip.shape[1] < 1:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        check_input_size(clip.shape[-2], clip.shape[-1], self.size_multiple)
        return self.decode([self.encode(clip[:, 0])])


@dataclass(frozen=True)
class SmpOptions(ModelOptions):
    """Options of the smp image baselines: the encoder only (smp's default decoder widths)."""


def _smp_builder(architecture: type[nn.Module]) -> Callable[[SmpOptions], ImageBaseline]:
    def build(options: SmpOptions) -> ImageBaseline:
        """Builds ``architecture`` on a timm encoder (``tu-<name>`` in smp)."""
        net = architecture(encoder_name=f"tu-{options.encoder}", encoder_weights=None, classes=1)
        if options.encoder_weights is not None:
            load_encoder_weights(net.encoder.model, options.encoder, options.encoder_weights)
        return ImageBaseline(net)

    return build


_SMP_REFERENCE = "segmentation-models-pytorch's implementation (MIT licence) on a timm encoder; the current frame only"
register_model("unet", SmpOptions, ModelInfo(
    kind="image", description="UNet (smp) on the current frame only",
    paper="Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation, MICCAI 2015",
    rows=(PaperRow(2, "UNet"), PaperRow(4, "UNet")), reference=_SMP_REFERENCE,
))(_smp_builder(smp.Unet))
register_model("unetplusplus", SmpOptions, ModelInfo(
    kind="image", description="UNet++ (smp) on the current frame only",
    paper="Zhou et al., UNet++: A Nested U-Net Architecture for Medical Image Segmentation, DLMIA 2018",
    rows=(PaperRow(2, "UNet++"), PaperRow(4, "UNet++")), reference=_SMP_REFERENCE,
))(_smp_builder(smp.UnetPlusPlus))
