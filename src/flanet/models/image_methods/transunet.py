"""TransUNet (Chen et al., arXiv 2102.04306, 2021), FLA-Net Table 2: R50-ViT-B/16 hybrid and a cascaded upsampler.

The hybrid encoder (Section 3.2) runs a ResNet-50 (v2, GroupNorm, weight standardisation; three
stages) to stride 16, embeds its map as 1x1 patches and encodes them with 12 Transformer layers
(ViT-B). The cascaded upsampler (CUP) reshapes the last layer to a map, applies a 3x3 convolution
to 512 channels and four upsampling blocks (x2 bilinear, concatenation with the CNN map of that
stride where there is one, two 3x3 convolutions), widths 256, 128, 64, 16, then a 3x3 classifier.
The authors' training loss is cross-entropy plus Dice (``loss.mask_loss: bce-dice``; one sigmoid
channel instead of two softmax classes, the same model for binary masks).

``encoder`` is any timm ViT: a hybrid (``vit_*_r50_*``, ``vit_small_r26_s32_*``) gives skips at
the strides its CNN has; a plain ViT (``vit_base_patch16_384``) has none ("ViT-None" in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from flanet.models.image_methods.base import ConvBNReLU, ImageMethod, resize
from flanet.models.image_methods.vit import ViTEncoder
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model


@dataclass(frozen=True)
class TransUNetOptions(ModelOptions):
    """Options of :class:`TransUNet`.

    Attributes:
        encoder: timm ViT, hybrid or plain (the paper: R50-ViT-B/16, ``vit_base_r50_s16_384``).
        encoder_weights: ``"imagenet"`` (timm's ImageNet-21k/1k weights), a local file, or None.
        img_size: input side the positional embedding is stored for (other sizes are resampled).
        cup_channels: widths of the four upsampling blocks (the paper: 256, 128, 64, 16).
        skips: how many of the hybrid's CNN levels (strides 2, 4, 8) feed the decoder (the paper: 3).
        encoder_kwargs: further ``timm.create_model`` arguments of the ViT (e.g. ``depth``).
    """

    encoder: str = "vit_base_r50_s16_384"
    encoder_weights: str | None = None
    img_size: int = 352
    cup_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 16])
    skips: int = 3
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)


class UpBlock(nn.Module):
    """CUP block: x2 bilinear upsampling (to the skip's size), concatenation with the skip, two 3x3 convolutions."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(in_channels + skip_channels, out_channels), ConvBNReLU(out_channels, out_channels))

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        size = (x.shape[-2] * 2, x.shape[-1] * 2) if skip is None else skip.shape[-2:]
        x = resize(x, size)
        return self.convs(x if skip is None else torch.cat([x, skip], dim=1))


class TransUNet(ImageMethod):
    """TransUNet on the current frame (no side outputs)."""

    def __init__(self, options: TransUNetOptions) -> None:
        encoder = ViTEncoder(options.encoder, options.encoder_weights, [-1], options.img_size,
                             cnn_levels=options.skips, timm_kwargs=options.encoder_kwargs)
        widths = tuple(options.cup_channels)
        stride = encoder.patch_stride
        if stride != 2 ** len(widths):
            raise ValueError(f"TransUNet's {len(widths)} upsampling blocks need a stride-{2 ** len(widths)} "
                             f"encoder; {options.encoder!r} has stride {stride}")
        super().__init__(options, stride)
        self.encoder = encoder
        # the CNN map of stride stride / 2**(k+1) joins block k
        skip_of_block = {stride // 2 ** (k + 1): k for k in range(len(widths))}
        if any(r not in skip_of_block for r in encoder.cnn_reductions):
            raise ValueError(f"encoder {options.encoder!r} has CNN maps at strides {list(encoder.cnn_reductions)}; "
                             f"TransUNet's decoder takes strides {sorted(skip_of_block)}")
        self.skip_blocks = tuple(skip_of_block[r] for r in encoder.cnn_reductions)
        skip_channels = [0] * len(widths)
        for block, channels in zip(self.skip_blocks, encoder.cnn_channels):
            skip_channels[block] = channels
        self.conv_more = ConvBNReLU(encoder.embed_dim, 512)
        ins = (512, *widths[:-1])
        self.blocks = nn.ModuleList(UpBlock(i, s, o) for i, s, o in zip(ins, skip_channels, widths))
        self.classifier = nn.Conv2d(widths[-1], 1, 3, padding=1)

    @property
    def first_stride(self) -> int:
        return self.encoder.cnn_reductions[0] if self.encoder.cnn_levels else self.encoder.patch_stride

    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        *cnn, tokens = features
        skips: list[Tensor | None] = [None] * len(self.blocks)
        for block, skip in zip(self.skip_blocks, cnn):
            skips[block] = skip
        x = self.conv_more(tokens)
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return resize(self.classifier(x), size), []


@register_model("transunet", TransUNetOptions, ModelInfo(
    kind="image", description="TransUNet: R50-ViT-B/16 hybrid encoder + cascaded upsampler",
    paper="Chen et al., TransUNet: Transformers Make Strong Encoders for Medical Image Segmentation, arXiv 2021",
    rows=(PaperRow(2, "TransUNet"),),
    reference="paper Section 3; github.com/Beckschen/TransUNet (Apache-2.0) read as a reference, not copied",
    loss_terms=("bce", "dice"), encoders=("vit_*",),
))
def _transunet(options: TransUNetOptions) -> TransUNet:
    return TransUNet(options)
