"""SETR (Zheng et al., CVPR 2021), FLA-Net Table 2: a ViT encoder with the progressive upsampling (PUP) decoder.

The image is cut into 16x16 patches and encoded by a plain Transformer (ViT-L/16, 24 layers,
Section 3.1). PUP (Section 3.2) reshapes the last layer's tokens to a map and alternates a 3x3
convolution with x2 upsampling four times, back to full resolution, then classifies. Auxiliary
heads on earlier layers (the paper: Z10, Z15, Z20 of 24; two convolution-and-x4-upsampling
steps each) are trained beside the main head (deep supervision, weight 0.4 each in the authors'
configuration: ``loss.side_weight``). Trained with cross-entropy (``loss.mask_loss: bce``: one
sigmoid channel instead of two softmax classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from flanet.models.image_methods.base import ConvBNReLU, ImageMethod, resize
from flanet.models.image_methods.vit import ViTEncoder, describe_vit
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model

#: SETR's auxiliary layers as fractions of the depth: Z10, Z15, Z20 of 24 (1-based), the main head Z24.
_AUX_FRACTIONS = (10 / 24, 15 / 24, 20 / 24)


@dataclass(frozen=True)
class SETROptions(ModelOptions):
    """Options of :class:`SETR`.

    Attributes:
        encoder: a plain timm ViT (the paper: ViT-L/16, ``vit_large_patch16_384``).
        encoder_weights: ``"imagenet"``, a local file, or None.
        img_size: input side the positional embedding is stored for (other sizes are resampled).
        pup_channels: width of the PUP convolutions (256).
        aux_layers: 0-based layers of the auxiliary heads; None: the paper's Z10, Z15, Z20 scaled to the depth.
        encoder_kwargs: further ``timm.create_model`` arguments of the ViT (e.g. ``depth``).
    """

    encoder: str = "vit_large_patch16_384"
    encoder_weights: str | None = None
    img_size: int = 352
    pup_channels: int = 256
    aux_layers: list[int] | None = None
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)


class ProgressiveUpsampling(nn.Sequential):
    """``steps`` times a 3x3 convolution (BN, ReLU) and bilinear upsampling by ``scale``, then a 1x1 classifier."""

    def __init__(self, in_channels: int, channels: int, steps: int, scale: int) -> None:
        layers: list[nn.Module] = []
        for step in range(steps):
            layers += [ConvBNReLU(in_channels if step == 0 else channels, channels),
                       nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)]
        super().__init__(*layers, nn.Conv2d(channels, 1, 1))


class SETR(ImageMethod):
    """SETR-PUP on the current frame; the auxiliary heads' predictions in training."""

    def __init__(self, options: SETROptions) -> None:
        depth, hybrid = describe_vit(options.encoder, options.encoder_kwargs)
        if hybrid:
            raise ValueError(f"SETR takes a plain ViT; {options.encoder!r} is a CNN hybrid (use transunet for those)")
        aux = (tuple(options.aux_layers) if options.aux_layers is not None
               else tuple(sorted({max(0, round(f * depth) - 1) for f in _AUX_FRACTIONS} - {depth - 1})))
        encoder = ViTEncoder(options.encoder, options.encoder_weights, [*aux, -1], options.img_size,
                             timm_kwargs=options.encoder_kwargs)
        if len(encoder.layers) != len(aux) + 1:
            raise ValueError(f"aux_layers {list(aux)} must be distinct layers before the last of {depth}")
        stride = encoder.patch_stride
        steps = stride.bit_length() - 1
        if 2**steps != stride:
            raise ValueError(f"SETR's PUP needs a power-of-two patch size; {options.encoder!r} has {stride}")
        super().__init__(options, stride)
        self.encoder = encoder
        width, dim = options.pup_channels, encoder.embed_dim
        self.head = ProgressiveUpsampling(dim, width, steps, 2)
        self.aux_heads = nn.ModuleList(ProgressiveUpsampling(dim, width, 2, 4) for _ in aux)

    @property
    def first_stride(self) -> int:
        return self.encoder.patch_stride

    def decode_frame(self, features: Sequence[Tensor], size: tuple[int, int]) -> tuple[Tensor, list[Tensor]]:
        *earlier, last = features
        sides = [head(x) for head, x in zip(self.aux_heads, earlier)] if self.training else []
        return resize(self.head(last), size), sides


@register_model("setr", SETROptions, ModelInfo(
    kind="image", description="SETR: ViT-L/16 encoder + progressive upsampling (PUP) decoder",
    paper="Zheng et al., Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with "
          "Transformers, CVPR 2021",
    rows=(PaperRow(2, "SETR"),),
    reference="paper Sections 3.1-3.3 (PUP, auxiliary losses); github.com/fudan-zvg/SETR (MIT) read as a "
              "reference, not copied",
    loss_terms=("bce",), side_weight=0.4, encoders=("vit_*",),
))
def _setr(options: SETROptions) -> SETR:
    return SETR(options)
