"""AFB-URR (Liang et al., NeurIPS 2020) on the model contract: an adaptive feature bank read by each frame.

Each frame is encoded once (a ResNet-50's strides 2, 4, 8 and 16). Its stride-16 map gives the query
key and value (STM's key/value embedding); each class (background, lesion) reads its own bank
(:class:`~flanet.models.video_methods.feature_bank.FeatureBank`), the read and the query value are
decoded as STM does into a rough class map, and the uncertain-region refinement (URR,
:mod:`~flanet.models.video_methods.afburr_blocks`) corrects it at stride 2. The frame is then written
to the banks with its own predicted mask (:meth:`AFBURR.memorize`): lesion probability p for the lesion
class, 1 - p for the background.

Fully automatic: no mask is given at any frame; the first frame is segmented from an empty bank (the
read is zero, the decoder sees the query value) and every frame is memorised with its prediction.
The paper memorises the annotated first frame (semi-supervised VOS) and trains with the ground-truth
mask of the clip's first frame in the bank; here training clips (``clip_frames`` frames, current first)
run the same stream as inference, each frame's soft prediction going into the bank.

Deviations, and why: the memory encoder shares the query encoder's features and adds the mask through
a light conv stack (:class:`~flanet.models.video_methods.memory_blocks.MaskedMemoryEncoder`), one
backbone pass a frame; the bank has a fixed number of slots per class (``bank_size``) so a video
streams in flat memory and a batch updates at once, without ``torch_scatter``; the two classes are
normalised by a softmax over their logits (the public code applies a softmax to probabilities); a
learned embedding per class is added to each class's read (in semi-supervised VOS the first frame's
given mask tells the classes apart; with no mask given, background and lesion would otherwise be
decoded alike from an empty bank and stay alike); the confidence loss (``loss.mask_loss`` cannot
express it) is not in the default loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import TimmLevels, resize
from flanet.models.memory import MemoryVideoModel
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model
from flanet.models.state import StreamState
from flanet.models.video_methods.afburr_blocks import UncertainRegionRefinement
from flanet.models.video_methods.attention import memory_read
from flanet.models.video_methods.feature_bank import FeatureBank
from flanet.models.video_methods.memory_blocks import KeyValue, MaskedMemoryEncoder, MemoryDecoder

#: Classes with a bank: background, lesion.
CLASSES = 2


@dataclass(frozen=True)
class AFBURROptions(ModelOptions):
    """Options of :class:`AFBURR`.

    Attributes:
        encoder: timm CNN whose levels 0-3 (strides 2, 4, 8, 16) are read (the paper: ResNet-50).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        clip_frames: frames of a training clip (the public code's ``clip_n``: 6).
        bank_size: slots per class in the feature bank (bounds memory on any video length; the public
            code's budget is 300,000 features for all classes, grown as a list).
        merge_threshold: cosine similarity above which a new feature merges into a bank slot (0.95).
        update_rate: the merge's moving-average rate r (0.1).
        key_channels, value_channels: of the key/value embedding (128, 512).
        memory_decoder_channels: the STM decoder's width (256).
        refine_channels, refine_window: URR's conv width (32) and local window (7).
        mask_channels: width of the memory encoder's mask embedding.
    """

    encoder: str = "resnet50"
    encoder_weights: str | None = None
    clip_frames: int = 6
    bank_size: int = 4096
    merge_threshold: float = 0.95
    update_rate: float = 0.1
    key_channels: int = 128
    value_channels: int = 512
    memory_decoder_channels: int = 256
    refine_channels: int = 32
    refine_window: int = 7
    mask_channels: int = 32


class FeatureBankState(StreamState):
    """AFB-URR's per-video state: the feature banks of N videos (recurrent; flat memory, ``bank_size`` slots)."""

    recurrent = True
    window = None

    def __init__(self, model: AFBURR) -> None:
        self._model = model
        self._bank: FeatureBank | None = None
        self._current: list[Tensor] | None = None
        self.frames_seen = 0
        self._context = 1

    def read(self, levels: Sequence[Tensor], targets: Tensor | None = None) -> list[list[Tensor]]:
        """``[levels, [keys, values, valid]]`` (the bank; nothing before the first frame is written)."""
        if targets is not None:
            raise ValueError("a feature bank reads one frame at a time (targets apply to window states)")
        if self._current is not None:
            raise RuntimeError("the previous frame's output was not written to the feature bank")
        self._current = list(levels)
        self.frames_seen += 1
        if self._bank is None:
            return [self._current]
        self._context = 1 + int(torch.unique(self._bank.born[0][self._bank.valid[0]]).numel())
        return [self._current, [self._bank.keys, self._bank.values, self._bank.valid]]

    def write(self, output: SegmentationOutput) -> None:
        """Counts the frame's reads of the bank (LFU), then absorbs the frame memorised with its prediction."""
        if self._current is None:
            raise RuntimeError("write follows the read of a frame")
        model, levels = self._model, self._current
        self._current = None
        keys, values = model.memorize(levels, output)
        if self._bank is None:
            options = model.options
            self._bank = FeatureBank.empty(keys.shape[0], CLASSES, options.bank_size, keys.shape[-1],
                                           values.shape[-1], keys)
        else:
            self._bank = self._bank.count_reads(model.read_weights(levels, self._bank))
        index = torch.full((keys.shape[0],), self.frames_seen - 1, device=keys.device)
        self._bank = self._bank.absorb(keys, values, index, model.options.merge_threshold, model.options.update_rate)

    @property
    def context_frames(self) -> int:
        """The current frame and the earlier frames with a slot in the bank at the last read (first video)."""
        return self._context if self.frames_seen > 1 else 1

    @property
    def held_frames(self) -> int:
        """Distinct frames with a slot in the bank (at most ``bank_size``; the bank's tensors are fixed)."""
        if self._bank is None:
            return 0
        return int(torch.unique(self._bank.born[0][self._bank.valid[0]]).numel())


class AFBURR(MemoryVideoModel):
    """AFB-URR segmenting frame t from its features and the feature banks (see the module docstring)."""

    has_heatmap = False

    def __init__(self, options: AFBURROptions) -> None:
        super().__init__()
        if options.clip_frames < 1 or options.bank_size < 1:
            raise ValueError(f"clip_frames and bank_size must be >= 1, got {options.clip_frames}, {options.bank_size}")
        self.options = options
        self.config: dict = {}
        self.num_frames = options.clip_frames
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (0, 1, 2, 3))
        c2, c4, c8, c16 = self.encoder.channels
        self.key_value = KeyValue(c16, options.key_channels, options.value_channels)
        self.memory_encoder = MaskedMemoryEncoder(c16, options.mask_channels)
        self.decoder = MemoryDecoder(2 * options.value_channels, (c8, c4), options.memory_decoder_channels)
        self.refine = UncertainRegionRefinement(c2, options.refine_channels, options.refine_window)
        # which read is the lesion's: with no mask given, nothing else tells the two classes apart
        self.class_embedding = nn.Parameter(torch.randn(CLASSES, options.value_channels, 1, 1))

    @property
    def size_multiple(self) -> int:
        return max(self.encoder.reductions)

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the strides 2, 4, 8, 16 maps."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return list(self.encoder(frames))

    def init_state(self) -> FeatureBankState:
        """Empty feature banks of ``bank_size`` slots per class."""
        return FeatureBankState(self)

    def memorize(self, levels: list[Tensor], output: SegmentationOutput) -> tuple[Tensor, Tensor]:
        """A frame's bank entries from its levels and predicted mask: keys ``(B, 2, h*w, C_k)``, values ``(B, 2, h*w, C_v)``.

        Class 0 (background) is memorised with ``1 - p``, class 1 (lesion) with p = sigmoid(mask logits).
        """
        r16 = levels[3]
        prob = torch.sigmoid(output.mask_logits)
        features = self.memory_encoder(torch.cat([r16, r16]), torch.cat([1 - prob, prob]))
        key, value = self.key_value(features)  # (2B, C, h, w), background first
        b = r16.shape[0]
        return (key.flatten(2).transpose(1, 2).unflatten(0, (CLASSES, b)).transpose(0, 1),
                value.flatten(2).transpose(1, 2).unflatten(0, (CLASSES, b)).transpose(0, 1))

    def read_weights(self, levels: list[Tensor], bank: FeatureBank) -> Tensor:
        """The attention weights ``(B*2, slots, h*w)`` of a frame's query on the bank (for its LFU counts)."""
        key, _ = self.key_value(levels[3])
        keys, values, valid = bank.flat()
        return memory_read(keys, values, valid, key.repeat_interleave(CLASSES, dim=0))[1]

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """``[levels of frame t]`` or ``[levels, [keys, values, valid]]`` (the banks) -> the mask of frame t."""
        if len(frame_features) not in (1, 2):
            raise ValueError(f"decode needs features of 1 frame and at most one bank, got {len(frame_features)} entries")
        r2, r4, r8, r16 = frame_features[0]
        b = r16.shape[0]
        key, value = self.key_value(r16)
        query_key = key.repeat_interleave(CLASSES, dim=0)
        if len(frame_features) == 2:
            keys, values, valid = frame_features[1]
            read, _ = memory_read(keys.flatten(0, 1), values.flatten(0, 1), valid.flatten(0, 1), query_key)
        else:
            read = value.new_zeros(b * CLASSES, value.shape[1], *value.shape[-2:])
        read = read + self.class_embedding.repeat(b, 1, 1, 1).to(read.dtype)
        decoded = self.decoder(torch.cat([read, value.repeat_interleave(CLASSES, dim=0)], dim=1),
                               r8.repeat_interleave(CLASSES, dim=0), r4.repeat_interleave(CLASSES, dim=0))
        rough = resize(decoded.view(b, CLASSES, *decoded.shape[-2:]), r2.shape[-2:])
        refined = self.refine(rough, r2)
        logits = refined[:, 1:] - refined[:, :1]  # softmax over (background, lesion) = sigmoid of the difference
        size = (r2.shape[-2] * self.encoder.reductions[0], r2.shape[-1] * self.encoder.reductions[0])
        return SegmentationOutput(resize(logits, size), None)


@register_model("afb-urr", AFBURROptions, ModelInfo(
    kind="video", description="AFB-URR: adaptive feature bank + uncertain-region refinement (ResNet-50)",
    paper="Liang et al., Video Object Segmentation with Adaptive Feature Bank and Uncertain-Region Refinement, NeurIPS 2020",
    rows=(PaperRow(2, "AFB-URR"),),
    reference="paper Sec. 3.2 (feature bank: absorbing, LFU removal) and 3.3 (URR); STM (Oh et al. ICCV 2019) "
              "for the key/value read and decoder; github.com/xmlyqing00/AFB-URR (no licence file) read as a "
              "reference, not copied; torch_scatter replaced by index_add_",
    loss_terms=("bce",),
))
def _afburr(options: AFBURROptions) -> AFBURR:
    return AFBURR(options)
