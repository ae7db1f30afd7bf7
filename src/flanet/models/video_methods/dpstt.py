"""DPSTT (Li et al., MICCAI 2022; FLA-Net's ref. [10]) on the model contract: a memory of past frames.

Each frame is encoded once (a ResNet-50's strides 4, 8, 16); memory frames are the previous frames
encoded with their own predicted masks (:meth:`DPSTT.memorize`), kept in a bounded
:class:`~flanet.models.memory.FrameMemory` (the first frame and the last ``memory_size - 1``). Frame t
reads it through the parallel spatial-temporal transformer
(:class:`~flanet.models.video_methods.dpstt_blocks.ParallelSpatialTemporalRead`): dynamic selection
picks the ``selected_frames`` memory frames most similar to frame t for the temporal transformer,
the spatial transformer reads the previous frame; STM's decoder predicts the mask.

Fully automatic: no mask is given; the first frame is segmented from an empty memory (zero reads)
and every frame enters the memory with its prediction. The public code's training puts the clip's
first ground-truth mask in the memory, its inference memorises the current frame with the previous
frame's prediction and runs a second, backward pass from the last frame's ground-truth mask; here
training clips (``clip_frames``) and inference run the same causal stream.

Deviations, and why: the memory encoder shares the query encoder's features
(:class:`~flanet.models.video_methods.memory_blocks.MaskedMemoryEncoder`: one backbone pass a frame,
entries made from the per-frame state); the memory is bounded (``memory_size``) and dynamic selection
chooses among its frames, where the public code keeps every past frame and selects from all (its
memory grows with the video); the temporal transformer's four regions are one masked read (one
matrix product) instead of four; the loss, whose module is missing from the public code, is STM's
cross-entropy (BCE for one class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from flanet.models.encoder import check_input_size
from flanet.models.image_methods.base import TimmLevels, resize
from flanet.models.memory import MemoryOptions, MemoryVideoModel
from flanet.models.outputs import SegmentationOutput
from flanet.models.registry import ModelInfo, PaperRow, register_model
from flanet.models.video_methods.dpstt_blocks import ParallelSpatialTemporalRead, frame_similarity
from flanet.models.video_methods.memory_blocks import KeyValue, MaskedMemoryEncoder, MemoryDecoder


@dataclass(frozen=True)
class DPSTTOptions(MemoryOptions):
    """Options of :class:`DPSTT`.

    Attributes:
        encoder: timm CNN whose levels 1-3 (strides 4, 8, 16) are read (the public code: ResNet-50).
        encoder_weights: ``"imagenet"``, a local file, or None (random).
        memory_size: most frames in the memory (the first frame and the newest ones).
        memory_every: every frame enters the memory (1), as in the public code.
        memory_first: keep the video's first frame.
        selected_frames: frames dynamic selection gives the temporal transformer.
        clip_frames: frames of a training clip.
        key_channels, value_channels: of the key/value embeddings (128, 512).
        grid: regions per side of the temporal transformer (2).
        memory_decoder_channels: the STM decoder's width (256).
        mask_channels: width of the memory encoder's mask embedding.
    """

    encoder: str = "resnet50"
    encoder_weights: str | None = None
    memory_size: int = 8
    memory_every: int = 1
    memory_first: bool = True
    selected_frames: int = 5
    clip_frames: int = 3
    key_channels: int = 128
    value_channels: int = 512
    grid: int = 2
    memory_decoder_channels: int = 256
    mask_channels: int = 32


class DPSTT(MemoryVideoModel):
    """DPSTT segmenting frame t from its features and the memory entries (see the module docstring)."""

    has_heatmap = False

    def __init__(self, options: DPSTTOptions) -> None:
        super().__init__()
        if options.clip_frames < 1 or options.selected_frames < 1 or options.grid < 1:
            raise ValueError("clip_frames, selected_frames and grid must be >= 1")
        self.options = self.memory = options
        self.config: dict = {}
        self.num_frames = options.clip_frames
        self.encoder = TimmLevels(options.encoder, options.encoder_weights, (1, 2, 3))
        c4, c8, c16 = self.encoder.channels
        self.memory_encoder = MaskedMemoryEncoder(c16, options.mask_channels)
        self.memory_key_value = KeyValue(c16, options.key_channels, options.value_channels)
        self.transformer = ParallelSpatialTemporalRead(c16, options.key_channels, options.value_channels, options.grid)
        self.decoder = MemoryDecoder(self.transformer.out_channels, (c8, c4), options.memory_decoder_channels)

    @property
    def size_multiple(self) -> int:
        return max(self.encoder.reductions)

    def encode(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> the strides 4, 8, 16 maps."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return list(self.encoder(frames))

    def memorize(self, levels: list[Tensor], output: SegmentationOutput) -> list[Tensor]:
        """A frame's memory entry ``[key (B, C_k, h, w), value (B, C_v, h, w)]`` from its levels and predicted mask."""
        key, value = self.memory_key_value(self.memory_encoder(levels[2], torch.sigmoid(output.mask_logits)))
        return [key, value]

    def decode(self, frame_features: Sequence[Sequence[Tensor]]) -> SegmentationOutput:
        """``[levels of frame t, *memory entries (newest first)]`` -> the mask of frame t."""
        memory = frame_features[1:]
        if len(frame_features[0]) != 3 or any(len(entry) != 2 for entry in memory):
            raise ValueError("decode needs features of 1 frame (3 levels), then memory entries [key, value], got "
                             f"entries of {[len(entry) for entry in frame_features]} tensors")
        r4, r8, r16 = frame_features[0]
        b = r16.shape[0]
        if memory:
            keys = torch.stack([entry[0] for entry in memory], dim=1)  # (B, T, C_k, h, w)
            values = torch.stack([entry[1] for entry in memory], dim=1)
            previous_key, previous_value = memory[0]
            if len(memory) > self.options.selected_frames:  # dynamic selection (Sec. 2.3)
                scores = frame_similarity(self.transformer.query_key(r16), keys)
                chosen = scores.topk(self.options.selected_frames, dim=1).indices.sort(dim=1).values
                keys = keys[torch.arange(b, device=r16.device)[:, None], chosen]
                values = values[torch.arange(b, device=r16.device)[:, None], chosen]
        else:
            keys = r16.new_zeros(b, 0, self.options.key_channels, *r16.shape[-2:])
            values = r16.new_zeros(b, 0, self.options.value_channels, *r16.shape[-2:])
            previous_key = previous_value = None
        read = self.transformer(r16, keys, values, previous_key, previous_value)
        logits = self.decoder(read, r8, r4)
        size = (r4.shape[-2] * self.encoder.reductions[0], r4.shape[-1] * self.encoder.reductions[0])
        return SegmentationOutput(resize(logits, size), None)


@register_model("dpstt", DPSTTOptions, ModelInfo(
    kind="video", description="DPSTT: dynamic parallel spatial-temporal transformer over a memory (ResNet-50)",
    paper="Li et al., Rethinking Breast Lesion Segmentation in Ultrasound: A New Video Dataset and A Baseline "
          "Network, MICCAI 2022",
    rows=(PaperRow(2, "DPSTT"),),
    reference="paper Sec. 2 (temporal and spatial transformers, dynamic selection); STM (Oh et al. ICCV 2019) for "
              "the memory read and decoder; github.com/sun4176/DPSTT (no licence file) read as a reference, not copied",
    loss_terms=("bce",),
))
def _dpstt(options: DPSTTOptions) -> DPSTT:
    return DPSTT(options)
