"""STM (Oh et al., ICCV 2019): space-time memory networks, a video comparison method of FLA-Net's Table 2.

The current frame (the *query*) goes through a ResNet-50 to res4 (stride 16); two 3x3 convolutions
embed res4 into a key (C_k = 128) and a value (C_v = 512) map (Sec. 3.1). Every frame in the memory
went through the *memory encoder*, a second ResNet-50 that reads the frame and its mask as a fourth
input channel (Sec. 3.1: the mask "concatenated along the channel dimension"), and its own key and
value embeddings. The space-time memory read (Sec. 3.2, eq. 1) matches every query position against
every position of every memory frame (dot-product similarity of the keys, softmax over the memory),
sums the memory values with those weights, and concatenates the result with the query value. The
decoder (Sec. 3.3, the refinement modules of RGMP) compresses that to 256 channels and upsamples it
twice with the query encoder's res3 and res2 maps as skips, to a mask at stride 4, resized to the
frame. The loss is cross-entropy (binary here: one lesion), ``loss.mask_loss: bce``.

Differences from the paper, for FLA-Net's fully automatic setting (no ground-truth mask at test time,
docs/model.md): the memory holds the model's own predicted (soft) masks, also for the first frame,
which is predicted from an empty memory (the read gives zeros); the memory keeps the first, the
previous and every ``memory_every``-th frame (Sec. 3.3: every 5th) but at most ``memory_size`` of them,
so a long video runs in flat memory; training clips are ``num_frames`` consecutive frames
(Sec. 3.4: three frames up to 25 apart), each frame's own prediction going into the memory; the
similarity is scaled by ``1 / sqrt(C_k)`` as in the authors' code (the paper's eq. 2 has no scale);
single-object, so the "other objects" mask channel and soft aggregation (Sec. 3.5) do not apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import TimmLevels, resize
from flanet.models.memory import MemoryOptions, MemoryVideoModel
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, PaperRow, register_model
from flanet.models.video_methods.memory_blocks import KeyValue, Refine, ResBlock
from flanet.models.weights import load_encoder_weights


@dataclass(frozen=True)
class STMOptions(MemoryOptions):
    """Options of :class:`STM`.

    Attributes:
        encoder: timm CNN whose levels 1, 2, 3 are res2, res3, res4 (strides 4, 8, 16; the paper: ResNet-50),
            for the query and (with a fourth input channel) the memory encoder.
        encoder_weights: ``"imagenet"``, a local file, or None (random); the memory encoder's mask channel
            starts at zero.
        key_channels: C_k of the key embeddings (128).
        value_channels: C_v of the value embeddings (512).
        decoder_width: width of the decoder (256).
        num_frames: frames of a training clip (the paper trains on 3).
        memory_size: most frames in the memory.
        memory_every: a frame joins the memory every this many frames (5).
        memory_first: keep the first frame in the memory.
    """

    encoder: str = "resnet50"
    encoder_weights: str | None = None
    key_channels: int = 128
    value_channels: int = 512
    decoder_width: int = 256
    num_frames: int = 3
    memory_size: int = 8
    memory_every: int = 5
    memory_first: bool = True


def memory_read(query_key: Tensor, memory_keys: Tensor, memory_values: Tensor) -> Tensor:
    """The space-time memory read (eq. 1-2) for every query position.

    Args:
        query_key: ``(B, C_k, h, w)``.
        memory_keys: ``(B, C_k, M)``, M = frames x h x w positions of the memory.
        memory_values: ``(B, C_v, M)``.

    Returns:
        ``(B, C_v, h, w)``: the memory values weighted by the softmax (over the memory) of the key similarity.
    """
    b, c, h, w = query_key.shape
    affinity = torch.einsum("bcm,bcq->bmq", memory_keys, query_key.flatten(2)) / math.sqrt(c)
    return torch.bmm(memory_values, affinity.softmax(dim=1)).unflatten(2, (h, w))


def _memory_encoder(name: str, weights: str | None) -> nn.Module:
    """The query encoder's architecture to res4, taking RGB and the mask (4 channels).

    ImageNet / file weights go into the RGB part of the first convolution; the mask's part starts at zero.
    """
    net = timm.create_model(name, features_only=True, pretrained=False, out_indices=(3,), in_chans=4)
    if weights is not None:
        rgb = timm.create_model(name, features_only=True, pretrained=False, out_indices=(3,))
        load_encoder_weights(rgb, name, weights)
        state = net.state_dict()
        for key, value in rgb.state_dict().items():
            if state[key].shape == value.shape:
                state[key] = value
            else:  # the first convolution: (out, 3, k, k) of (out, 4, k, k)
                state[key] = torch.cat([value, torch.zeros_like(value[:, :1])], dim=1)
        net.load_state_dict(state)
    return net


class STM(MemoryVideoModel):
    """STM on :class:`~flanet.models.memory.FrameMemory` (see the module docstring).

    :meth:`encode` gives ``[frame, res2, res3, res4]`` of the query encoder (the frame itself for the
    memory encoder); a memory entry is ``[key, value]`` of the frame encoded with its predicted mask.
    """

    has_heatmap = False

    def __init__(self, options: STMOptions) -> None:
        super().__init__()
        if options.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {options.num_frames}")
        self.memory, self.num_frames = options, options.num_frames
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (1, 2, 3))
        self.memory_encoder = _memory_encoder(options.encoder, options.encoder_weights)
        c2, c3, c4 = self.encoder.channels
        self.query_kv = KeyValue(c4, options.key_channels, options.value_channels)
        self.memory_kv = KeyValue(c4, options.key_channels, options.value_channels)
        width = options.decoder_width
        self.compress = nn.Sequential(nn.Conv2d(2 * options.value_channels, width, 3, padding=1), ResBlock(width))
        self.refine3, self.refine2 = Refine(c3, width), Refine(c2, width)
        self.predict = nn.Conv2d(width, 1, 3, padding=1)
        self._size_multiple = max(self.encoder.reductions)
        self.config: dict = {}

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self._size_multiple

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> ``[frames, res2, res3, res4]``."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return [frames, *self.encoder(frames)]

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """The mask of the current frame (``frame_features[0]``) read from the memory entries that follow it."""
        frame, r2, r3, r4 = frame_features[0]
        key, value = self.query_kv(r4)
        if len(frame_features) > 1:
            keys = torch.cat([entry[0].flatten(2) for entry in frame_features[1:]], dim=2)  # (B, C_k, M)
            values = torch.cat([entry[1].flatten(2) for entry in frame_features[1:]], dim=2)
            read = memory_read(key, keys, values)
        else:  # the first frame of a video: an empty memory reads nothing
            read = torch.zeros_like(value)
        m4 = self.compress(torch.cat([read, value], dim=1))
        m2 = self.refine2(r2, self.refine3(r3, m4))
        return SegmentationOutput(resize(self.predict(F.relu(m2)), frame.shape[-2:]), None)

    def memorize(self, levels: list[Tensor], output: SegmentationOutput) -> list[Tensor]:
        """``[key, value]`` of the frame encoded with its predicted (soft) mask."""
        frame = levels[0]
        mask = torch.sigmoid(output.mask_logits).to(frame.dtype)
        res4 = self.memory_encoder(torch.cat([frame, mask], dim=1))[-1]
        key, value = self.memory_kv(res4)
        return [key, value]


@register_model("stm", STMOptions, ModelInfo(
    kind="video", description="STM: space-time memory of past frames and their predicted masks (ResNet-50)",
    paper="Oh et al., Video Object Segmentation using Space-Time Memory Networks, ICCV 2019",
    rows=(PaperRow(2, "STM"),),
    reference="paper Sections 3.1-3.5 (decoder: the refinement modules of RGMP, Oh et al., CVPR 2018); "
              "github.com/seoungwugoh/STM (CC BY-NC-SA 4.0) read as a reference, not copied; fully automatic: "
              "the memory holds the model's own predictions",
    loss_terms=("bce",),
))
def _stm(options: STMOptions) -> STM:
    return STM(options)
