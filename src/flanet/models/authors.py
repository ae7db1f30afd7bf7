"""``flanet-authors``: the architecture of the authors' released FLA-Net weights, exactly.

The pretrained checkpoint linked from the authors' repository (jhl-Det/FLA-Net, Apache-2.0;
read as a reference, not copied) is an smp 0.3.2 ``Unet`` on a timm Res2Net-50 (26w-4s) with
decoder widths 256-128-64-32-16 and two additions of their own (their
``segmentation_models_pytorch/base/model_ours_v1.py``), which differ from the paper's model
(docs/model.md, "Differences from the authors' code"):

* **FAM** at the stride-16 level only, on the 1024-channel maps of the clip ``[t, t-1, t-2]``: a
  temporal channel shift (frame t receives t-1's first eighth of the channels, t-1 receives t's
  second eighth, ...), full complex ``fft2``, the pairs (t, t-1) and (t, t-2) concatenated as
  ``[imag_t, imag_k, real_t, real_k]`` (4C channels), one SE block per pair (4C -> 2C -> 4C on
  per-channel L2 norms divided by their mean over a size-1 axis, i.e. by themselves), the first
  half taken as the real and the second as the imaginary part of ``ifft2``, whose real part is
  kept; ``z1 + z2`` -> 3x3 conv 2C -> C -> ReLU -> GroupNorm(8). Its output is **added** to frame
  t's stride-16 feature; every other level is frame t's alone.
* **Heatmap head**: three transposed convs (C -> 256 -> 64 -> 1, stride 2 each) from the FAM
  output to 1/2 resolution, interpolated (bilinear) to the input size and added to the decoder
  output before the segmentation head; that map is also the predicted heatmap.

What the released FAM computes: the real part of ``ifft2(Im F(a) + i Re F(a))`` (times per-channel
gates) is zero for every real map ``a`` (``Im F(a) = -i F(odd a)``, ``Re F(a) = F(even a)``, so the
spectrum is ``i F(g2 even - g1 odd)`` and its inverse is purely imaginary). So ``z1 + z2 = 0`` and
the FAM output is ``GroupNorm(ReLU(bias of the 3x3 conv))`` whatever the frames: frames t-1 and
t-2, the shift and the SE blocks change the output only through FFT rounding, and the heatmap is
the same map for every frame. ``ffa_compute="closed-form"`` (default) computes that value
exactly; ``"fft"`` runs the released operations literally (rounding included: the two agree to
float rounding, docs/model.md). The encoder runs once per frame either way (the shift sits in the
FAM, after the encoder), so streaming reuses each frame's encoder features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.base import initialization as smp_init
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_input_size, create_timm_backbone
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, register_model

#: The released model's encoder (smp ``timm-res2net50_26w_4s``: timm's Res2Net-50 26w-4s).
AUTHORS_ENCODER = "res2net50_26w_4s"
#: smp ``Unet`` decoder widths of the release (smp's default), deep to shallow.
DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)
#: Index of the stride-16 level among the encoder's five levels (strides 2, 4, 8, 16, 32).
FAM_LEVEL = 3
FFA_COMPUTE: tuple[str, ...] = ("closed-form", "fft")
NUM_FRAMES = 3


def temporal_shift(x: Tensor, fold_div: int = 8) -> Tensor:
    """The release's temporal shift across the clip's frames (TSM-style), ``(B, T, C, h, w)``.

    Frame k's first ``C // fold_div`` channels become frame k+1's (the last frame gets zeros);
    its second ``C // fold_div`` become frame k-1's (the first frame gets zeros); the rest stay.
    """
    b, t, c, h, w = x.shape
    fold = c // fold_div
    zeros = x.new_zeros(b, 1, fold, h, w)
    from_next = torch.cat([x[:, 1:, :fold], zeros], dim=1)
    from_previous = torch.cat([zeros, x[:, :-1, fold:2 * fold]], dim=1)
    return torch.cat([from_next, from_previous, x[:, :, 2 * fold:]], dim=2)


class ReleasedSEBlock(nn.Module):
    """The release's SE block: ``x * sigmoid(up(relu(down(n / mean_{size-1 axis}(n)))))``, ``n`` the
    per-channel L2 norm of ``x`` over space. The mean over the last axis of a ``(B, C, 1, 1)``
    tensor is the tensor itself, so the gate's input is ``n / (n + 1e-6)``, about 1."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, 1)
        self.up = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> the same, scaled per channel."""
        norms = torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True)
        norms = norms / (norms.mean(dim=-1, keepdim=True) + 1e-6)
        return x * torch.sigmoid(self.up(F.relu(self.down(norms))))


class ReleasedFAM(nn.Module):
    """The release's FAM on the stride-16 maps of ``[t, t-1, t-2]`` (module docstring).

    Args:
        channels: C, channels of each frame's map (1024 on Res2Net-50).
        compute: ``"closed-form"`` (``z1 + z2 = 0``: the output from the conv's bias) or ``"fft"``.
            In closed form the SE blocks and the conv's weight do not reach the output, so they are
            frozen (``requires_grad=False``; still in the state dict): distributed training needs every
            trainable parameter to get a gradient.
    """

    def __init__(self, channels: int, compute: str = "closed-form") -> None:
        super().__init__()
        if compute not in FFA_COMPUTE:
            raise ValueError(f"ffa_compute must be one of {', '.join(FFA_COMPUTE)}, got {compute!r}")
        self.compute = compute
        self.se_block1 = ReleasedSEBlock(4 * channels, 2 * channels)
        self.se_block2 = ReleasedSEBlock(4 * channels, 2 * channels)
        self.reduce = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(8, channels)
        if compute == "closed-form":  # they do not reach the output: no gradient (DDP needs them frozen)
            for frozen in (self.se_block1, self.se_block2, self.reduce.weight):
                frozen.requires_grad_(False)

    def spectral_sum(self, x: Tensor) -> Tensor:
        """``z1 + z2`` of the release from ``(B, 3, C, h, w)``: shift, FFT, SE, inverse FFT (float32)."""
        b, t, c, h, w = x.shape
        if t != NUM_FRAMES:
            raise ValueError(f"the released FAM fuses {NUM_FRAMES} frames, got {t}")
        spectrum = torch.fft.fft2(temporal_shift(x.float()))  # (B, 3, C, h, w) complex
        imag, real = spectrum.imag, spectrum.real
        total = x.new_zeros(b, 2 * c, h, w, dtype=torch.float32)
        for k, se in ((1, self.se_block1), (2, self.se_block2)):
            pair = torch.cat([imag[:, 0], imag[:, k], real[:, 0], real[:, k]], dim=1)
            pair = se(pair.to(se.down.weight.dtype)).float()  # half-precision weights: SE in their dtype
            first, second = pair.chunk(2, dim=1)  # used as real and imaginary parts, as released
            total = total + torch.fft.ifft2(torch.complex(first, second), s=(h, w)).real
        return total

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, C, h, w)`` maps of ``[t, t-1, t-2]`` -> FAM output ``(B, C, h, w)``."""
        b, _, _, h, w = x.shape
        if self.compute == "fft":
            reduced = self.reduce(self.spectral_sum(x).to(x.dtype))
        else:  # the 3x3 conv of z1 + z2 = 0 is its bias
            bias = self.reduce.bias.to(x.dtype).view(1, -1, 1, 1)
            reduced = bias.expand(b, -1, h, w)
        return self.norm(F.relu(reduced))


class ReleasedHeatmapHead(nn.Module):
    """Three stride-2 transposed 3x3 convs, ``C -> 256 -> 64 -> 1``, from the FAM output (1/16) to 1/2.

    ``output_padding=1`` gives the exact doubling the release asks for with ``output_size``.
    """

    def __init__(self, channels: int, hidden: int = 256, out_channels: int = 64) -> None:
        super().__init__()
        self.upsample1 = nn.ConvTranspose2d(channels, hidden, 3, stride=2, padding=1, output_padding=1)
        self.upsample2 = nn.ConvTranspose2d(hidden, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.upsample3 = nn.ConvTranspose2d(out_channels, 1, 3, stride=2, padding=1, output_padding=1)

    def forward(self, fam: Tensor, size: tuple[int, int]) -> Tensor:
        """``(B, C, h, w)`` -> heatmap ``(B, 1, H, W)`` at the input size ``size`` (bilinear)."""
        x = self.upsample3(self.upsample2(self.upsample1(fam)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AuthorsFLANet(VideoSegmentationModel):
    """The released FLA-Net (module docstring): clip ``[t, t-1, t-2]`` -> mask and heatmap of t.

    Parameter names follow the release so its weights map one to one (``encoder.*``,
    ``decoder.blocks.*``, ``segmentation_head.0.*`` as released; ``FAM_list.0.*`` is
    ``fusion.*`` and ``heatmaphead_list.0.*`` is ``heatmap_head.*``, see
    :mod:`flanet.models.authors_weights`).

    Args:
        backbone: timm ``features_only`` encoder with five levels (strides 2 to 32).
        ffa_compute: ``"closed-form"`` or ``"fft"`` (:class:`ReleasedFAM`).
    """

    num_frames = NUM_FRAMES
    has_heatmap = True

    def __init__(self, backbone: nn.Module, ffa_compute: str = "closed-form") -> None:
        super().__init__()
        channels = list(backbone.feature_info.channels())
        reductions = list(backbone.feature_info.reduction())
        if reductions != [2, 4, 8, 16, 32]:
            raise ValueError(f"flanet-authors needs an encoder with levels at strides 2-32, got {reductions}")
        self.encoder = backbone
        self.decoder = UnetDecoder([3, *channels], list(DECODER_CHANNELS), n_blocks=len(DECODER_CHANNELS))
        self.segmentation_head = SegmentationHead(DECODER_CHANNELS[-1], 1, kernel_size=3)
        self.fusion = ReleasedFAM(channels[FAM_LEVEL], ffa_compute)
        self.heatmap_head = ReleasedHeatmapHead(channels[FAM_LEVEL])
        smp_init.initialize_decoder(self.decoder)
        smp_init.initialize_head(self.segmentation_head)
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of 32 (the deepest level's stride)."""
        return 32

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the five levels ``(N, C_l, H / 2^l, W / 2^l)``, l = 1..5, of each frame."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return list(self.encoder(frames))

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """Mask logits and heatmap of frame t from the features of ``[t, t-1, t-2]``."""
        if len(frame_features) != self.num_frames:
            raise ValueError(f"decode needs features of {self.num_frames} frames, got {len(frame_features)}")
        current = list(frame_features[0])
        fam = self.fusion(torch.stack([frame[FAM_LEVEL] for frame in frame_features], dim=1))
        current[FAM_LEVEL] = current[FAM_LEVEL] + fam
        b, _, h, w = current[0].shape
        size = (2 * h, 2 * w)
        # smp's decoder reads only the shape of its first (input-resolution) feature
        decoded = self.decoder([current[0].new_empty(b, 0, *size), *current])
        heatmap = self.heatmap_head(fam, size)
        return SegmentationOutput(self.segmentation_head(decoded + heatmap), heatmap)

    def forward(self, clip: Tensor) -> SegmentationOutput:
        """``clip (B, 3, 3, H, W)``, frames ``[t, t-1, t-2]`` -> output for frame t.

        With ``ffa_compute="closed-form"`` the FAM's output does not depend on the frames, so only
        frame t is encoded (the result is the same as encoding all three).
        """
        if clip.ndim != 5 or clip.shape[1] != self.num_frames or clip.shape[2] != 3:
            raise ValueError(f"expected a clip (B, {self.num_frames}, 3, H, W), current frame first; "
                             f"got shape {tuple(clip.shape)}")
        b, t = clip.shape[:2]
        if self.fusion.compute == "closed-form":
            features = self.encode(clip[:, 0])
            return self.decode([features] * t)
        features = [f.unflatten(0, (b, t)) for f in self.encode(clip.flatten(0, 1))]
        return self.decode([[f[:, k] for f in features] for k in range(t)])


@dataclass(frozen=True)
class AuthorsOptions(ModelOptions):
    """Options of ``flanet-authors``.

    Attributes:
        encoder: the release's Res2Net-50 26w-4s (another timm encoder with levels at strides 2-32,
            e.g. ``resnet18``, builds a small stand-in that their weights do not fit).
        ffa_compute: ``"closed-form"`` (default: the FAM's exact value, without FFTs, exportable) or
            ``"fft"`` (the released operations, FFT rounding included).
    """

    encoder: str = AUTHORS_ENCODER
    ffa_compute: Literal["closed-form", "fft"] = "closed-form"


@register_model("flanet-authors", AuthorsOptions, ModelInfo(
    kind="video",
    description="the authors' released FLA-Net (their weights import: flanet import-weights authors)",
    paper="Lin et al., Shifting More Attention to Breast Lesion Segmentation in Ultrasound Videos, MICCAI 2023",
    reference="the authors' released code (github.com/jhl-Det/FLA-Net, Apache-2.0) read as a reference: "
              "smp 0.3.2 Unet on Res2Net-50 with their FAM and heatmap head (docs/model.md)",
    loss_terms=("bce", "iou", "heatmap"),
))
def _build(options: AuthorsOptions) -> AuthorsFLANet:
    return build_authors_model(options.encoder, options.encoder_weights, options.ffa_compute)


def build_authors_model(
    encoder: str = AUTHORS_ENCODER,
    encoder_weights: str | None = None,
    ffa_compute: Literal["closed-form", "fft"] = "closed-form",
) -> AuthorsFLANet:
    """The released architecture on ``encoder`` (their Res2Net-50 26w-4s by default; another timm
    encoder with five levels, e.g. ``resnet18``, only for small tests)."""
    return AuthorsFLANet(create_timm_backbone(encoder, encoder_weights, num_levels=5), ffa_compute)
