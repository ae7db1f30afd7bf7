"""A video-level diagnosis head on any registered segmentation model (benign/malignant, ALN metastasis).

The paper's data set labels every video benign or malignant and with or without axillary lymph
node metastasis (Section 2); its introduction motivates segmentation as a step towards that
diagnosis. :class:`DiagnosisHead` reads only what the model contract documents
(:class:`~flanet.models.contract.VideoSegmentationModel`): the deepest map of ``model.encode`` for the
current frame and the mask (or heatmap) of ``model.decode``. Per frame it pools the features under
the predicted lesion (a soft masked mean, beside the frame's global mean) and adds three shape
descriptors of the predicted lesion that the BI-RADS lexicon uses (size; orientation, ``log`` of the
height/width ratio: "taller than wide"; margin irregularity: soft perimeter over a circle's). Each
input is standardised with the mean and spread of the training frames' inputs
(:meth:`DiagnosisHead.standardize`; without them, as in joint training where the features move, the
identity): the three descriptors carry the BI-RADS cues but are 3 of ``2C + 3`` inputs on their own
scales, and a per-frame layer norm alone let the pooled features drown them on small training sets
(docs/training.md, "Diagnosis"). A small MLP embeds each frame; gated attention over the frames of a
video (Ilse et al., "Attention-based deep multiple instance learning", ICML 2018, eq. 8:
``a_k = softmax_k(w^T tanh(V e_k))``) pools the embeddings into one video embedding, and a linear
layer gives one logit per label.

:class:`RunningDiagnosis` keeps that attention pooling as a running (online-softmax) estimate over a
stream, so the estimate after frame ``n`` equals the head on frames ``0..n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.contract import VideoSegmentationModel
from flanet.models.outputs import SegmentationOutput

#: Where the head pools a frame's features: under the predicted mask or the localisation heatmap.
POOLS: tuple[str, ...] = ("mask", "heatmap")
#: Shape descriptors of the predicted lesion appended to the pooled features (size, orientation, irregularity).
SHAPE_FEATURES = 3
#: The head's buffers that standardise its inputs; heads stored before them load with the identity.
STANDARDIZATION = ("input_mean", "input_scale")
_EPS = 1e-6


class DiagnosisOutput(NamedTuple):
    """What the head gives for a batch of frames grouped into videos.

    Attributes:
        logits: ``(G, L)`` one logit per video (group) and label.
        attention: ``(N,)`` each frame's attention weight within its video (they sum to 1 per video).
    """

    logits: Tensor
    attention: Tensor


def lesion_weight(output: SegmentationOutput, pool: str = "mask") -> Tensor:
    """``(N, 1, H, W)`` pooling weight in [0, 1]: the mask probability, or the heatmap (clamped) when asked and present."""
    if pool == "heatmap" and output.heatmap is not None:
        return output.heatmap.float().clamp(0, 1)
    return torch.sigmoid(output.mask_logits.float())


def shape_descriptors(weight: Tensor) -> Tensor:
    """``(N, 3)`` of a soft lesion map ``(N, 1, H, W)``: area fraction, ``0.5 log(var_y / var_x)``, irregularity.

    Irregularity is the soft perimeter (total variation of the map, in pixels) over the perimeter of a
    circle of the same area, ``2 sqrt(pi A)``: about 1 for an oval, more for a lobulated or spiculated
    margin (0 for an empty map).
    """
    weight = weight.float()
    height, width = weight.shape[-2:]
    mass = weight.sum((-2, -1)).clamp_min(_EPS)  # (N, 1)
    ys = torch.arange(height, device=weight.device, dtype=weight.dtype)[:, None]
    xs = torch.arange(width, device=weight.device, dtype=weight.dtype)[None, :]
    mean_y, mean_x = (weight * ys).sum((-2, -1)) / mass, (weight * xs).sum((-2, -1)) / mass
    var_y = (weight * (ys - mean_y[..., None, None]) ** 2).sum((-2, -1)) / mass
    var_x = (weight * (xs - mean_x[..., None, None]) ** 2).sum((-2, -1)) / mass
    perimeter = (weight[..., 1:, :] - weight[..., :-1, :]).abs().sum((-2, -1)) + \
        (weight[..., :, 1:] - weight[..., :, :-1]).abs().sum((-2, -1))
    area = weight.sum((-2, -1))
    irregularity = perimeter / (2 * torch.sqrt(math.pi * area) + 1.0)
    orientation = 0.5 * torch.log((var_y + 1.0) / (var_x + 1.0))
    return torch.cat([area / (height * width), orientation, irregularity], dim=1)


def pooled_features(features: Tensor, weight: Tensor) -> Tensor:
    """``(N, 2C + 3)``: the mean of ``features (N, C, h, w)`` under ``weight (N, 1, H, W)``, the global mean, the shape."""
    small = F.adaptive_avg_pool2d(weight.float(), features.shape[-2:])
    features = features.float()
    masked = (features * small).sum((-2, -1)) / small.sum((-2, -1)).clamp_min(_EPS)
    return torch.cat([masked, features.mean((-2, -1)), shape_descriptors(weight)], dim=1)


def feature_channels(model: VideoSegmentationModel) -> int:
    """Channels of the deepest map of ``model.encode`` (one small dry run, the model's mode restored)."""
    side = model.size_multiple * max(1, math.ceil(64 / model.size_multiple))
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            levels = model.encode(torch.zeros(1, 3, side, side, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
    return int(levels[-1].shape[1])


def clip_inputs(model: VideoSegmentationModel, clips: Tensor, pool: str = "mask") -> tuple[Tensor, SegmentationOutput]:
    """Per-frame head inputs of clips ``(N, T, 3, S, S)`` (current frame first) and the model's output for them.

    Every frame is encoded once (``model.encode``), the clip decoded (``model.decode``), and the
    current frame's deepest features pooled under the predicted lesion (:func:`pooled_features`).
    """
    count, length = clips.shape[:2]
    levels = model.encode(clips.flatten(0, 1))
    per_frame = [[level.unflatten(0, (count, length))[:, k] for level in levels] for k in range(length)]
    output = model.decode(per_frame)
    return pooled_features(per_frame[0][-1], lesion_weight(output, pool)), output


def grouped_softmax(scores: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Softmax of ``scores (N,)`` within each group of ``groups (N,)`` (ids in ``0..num_groups-1``), vectorised."""
    peak = torch.full((num_groups,), -torch.inf, device=scores.device, dtype=scores.dtype)
    peak = peak.scatter_reduce(0, groups, scores, reduce="amax", include_self=True)
    weights = torch.exp(scores - peak[groups])
    total = torch.zeros(num_groups, device=scores.device, dtype=scores.dtype).index_add(0, groups, weights)
    return weights / total[groups]


class DiagnosisHead(nn.Module):
    """Attention over frames of per-frame lesion features, one logit per label (see module docstring).

    Args:
        in_channels: channels C of the model's deepest encoder map (:func:`feature_channels`).
        labels: the label names, one logit each (``pathology``, ``aln_metastasis``...).
        hidden: width of the frame embedding.
        attention: width of the attention layer.
        pool: ``"mask"`` (the predicted mask probability) or ``"heatmap"`` (the localisation heatmap, for
            models that have it; others fall back to the mask).
    """

    def __init__(self, in_channels: int, labels: Sequence[str], hidden: int = 64, attention: int = 32,
                 pool: Literal["mask", "heatmap"] = "mask") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not labels:
            raise ValueError("the diagnosis head needs at least one label")
        self.labels = tuple(str(label) for label in labels)
        self.pool = pool
        self.config: dict[str, Any] = {"in_channels": int(in_channels), "labels": list(self.labels),
                                       "hidden": int(hidden), "attention": int(attention), "pool": pool}
        inputs = 2 * in_channels + SHAPE_FEATURES
        self.register_buffer("input_mean", torch.zeros(inputs))
        self.register_buffer("input_scale", torch.ones(inputs))
        self.embed = nn.Sequential(nn.LayerNorm(inputs), nn.Linear(inputs, hidden), nn.ReLU())
        self.attend = nn.Sequential(nn.Linear(hidden, attention), nn.Tanh(), nn.Linear(attention, 1))
        self.classify = nn.Linear(hidden, len(self.labels))

    @torch.no_grad()
    def standardize(self, inputs: Tensor) -> None:
        """Standardise every later input with the mean and standard deviation of ``inputs (N, 2C + 3)``
        (the training frames' inputs); an input (nearly) constant over them is only centred."""
        inputs = inputs.float()
        spread = inputs.std(0, unbiased=False) if inputs.shape[0] > 1 else torch.zeros_like(inputs[0])
        self.input_mean.copy_(inputs.mean(0))
        self.input_scale.copy_(torch.where(spread > 1e-4, spread, torch.ones_like(spread)))

    def frame_embeddings(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """``inputs (N, 2C + 3)`` -> embeddings ``(N, hidden)`` and attention scores ``(N,)`` (before the softmax)."""
        embeddings = self.embed((inputs.float() - self.input_mean) / self.input_scale)
        return embeddings, self.attend(embeddings)[:, 0]

    def forward(self, inputs: Tensor, groups: Tensor, num_groups: int) -> DiagnosisOutput:
        """Video logits of frames ``inputs (N, 2C + 3)`` grouped into videos by ``groups (N,)`` (ids ``0..G-1``)."""
        embeddings, scores = self.frame_embeddings(inputs)
        attention = grouped_softmax(scores, groups, num_groups)
        pooled = torch.zeros(num_groups, embeddings.shape[1], device=inputs.device, dtype=embeddings.dtype)
        pooled = pooled.index_add(0, groups, embeddings * attention[:, None])
        return DiagnosisOutput(self.classify(pooled), attention)


def build_head(config: dict[str, Any]) -> DiagnosisHead:
    """The head of a stored ``config`` (:attr:`DiagnosisHead.config`)."""
    return DiagnosisHead(config["in_channels"], config["labels"], config["hidden"], config["attention"],
                         config["pool"])


class RunningDiagnosis:
    """The head's video estimate over a stream, updated frame by frame (online softmax, constant memory per frame).

    ``update(inputs)`` with a frame's :func:`pooled_features` returns the label probabilities of the
    frames so far: the same numbers as the head on all of them. The attention score of every frame is
    kept (one float each) for :meth:`top_frames`.
    """

    def __init__(self, head: DiagnosisHead) -> None:
        self.head = head
        self._peak = -math.inf
        self._total: Tensor | None = None  # sum of exp(score - peak)
        self._pooled: Tensor | None = None  # sum of exp(score - peak) * embedding
        self.scores: list[float] = []

    @torch.no_grad()
    def update(self, inputs: Tensor) -> Tensor:
        """Add frames ``inputs (n, 2C + 3)`` in order; the label probabilities ``(L,)`` so far."""
        embeddings, scores = self.head.frame_embeddings(inputs)
        self.scores += [float(s) for s in scores]
        peak = max(self._peak, float(scores.max()))
        weights = torch.exp(scores - peak)
        rescale = math.exp(self._peak - peak) if self._total is not None else 0.0
        total, pooled = weights.sum(), (weights[:, None] * embeddings).sum(0)
        self._total = total if self._total is None else self._total * rescale + total
        self._pooled = pooled if self._pooled is None else self._pooled * rescale + pooled
        self._peak = peak
        return torch.sigmoid(self.head.classify(self._pooled / self._total))

    def attention(self) -> Tensor:
        """``(n,)`` the attention weight of every frame so far (softmax of their scores)."""
        return torch.softmax(torch.tensor(self.scores), dim=0)

    def top_frames(self, count: int = 5) -> list[tuple[int, float]]:
        """``(frame position, attention weight)`` of the frames that weighed most, heaviest first."""
        weights = self.attention()
        order = torch.argsort(weights, descending=True)[:count]
        return [(int(i), float(weights[i])) for i in order]
