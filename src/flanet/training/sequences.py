"""The loss inputs of a batch of runs (``data.sequence_length``): each frame encoded once.

A batch of ``K`` runs (:class:`flanet.data.sequences.SequenceDataset`) holds ``(K, L + C, 3, S, S)``
frames, current first. :func:`run_outputs` encodes the ``K (L + C)`` frames once
(``model.encode``), gathers the causal window of each of the first ``L`` frames of every run (and of
frame ``L`` for the ``H_{t-1}`` of eq. 1) with :func:`flanet.models.windows.gather_windows`, and
decodes them (``model.decode``). :func:`run_loss_inputs` keeps the windows that are targets, in run
order (run 0's latest target first): the arguments of :class:`flanet.losses.FLANetLoss` for those
targets are then exactly those of a batch of random clips of the same targets in the same order
(mask, heatmap, ``H_{t-1}``, negatives of eq. 1 chosen by :func:`flanet.losses.nearest_other_video`
over that order), so the loss and its gradients are the same (tests/test_training_sequences.py),
BatchNorm batch statistics aside (a run batch holds each frame once, a clip batch up to 4 times).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from flanet.models import SegmentationOutput
from flanet.models.contract import VideoSegmentationModel
from flanet.models.windows import frame_features, gather_windows


def run_outputs(model: VideoSegmentationModel, frames: Tensor, windows: int) -> SegmentationOutput:
    """Outputs of the first ``windows`` frames of every run, each frame encoded once.

    Args:
        model: any registered model (``encode``/``decode`` of the contract).
        frames: ``(K, N, 3, S, S)``, run frames current (latest) first; ``N >= windows + num_frames - 1``.
        windows: frames ``frames[:, w]``, ``w < windows``, to predict, each from ``frames[:, w : w + T]``.

    Returns:
        Tensors ``(K, windows, 1, S, S)`` (side logits too), window ``w`` first as in ``frames``.
    """
    k, n = frames.shape[:2]
    t = model.num_frames
    if n < windows + t - 1:
        raise ValueError(f"a run of {n} frames holds fewer than {windows} windows of {t} frames")
    features = model.encode(frames.flatten(0, 1))  # each (K*N, C, h, w)
    ends = torch.arange(n - 1, n - 1 - windows, -1, device=frames.device)  # video order: frame w is n-1-w
    levels = [gather_windows(f.unflatten(0, (k, n)).flip(1), ends, t, dim=1).flatten(0, 1) for f in features]
    out = model.decode(frame_features(levels))

    def per_run(x: Tensor) -> Tensor:
        return x.unflatten(0, (k, windows))

    return SegmentationOutput(per_run(out.mask_logits), None if out.heatmap is None else per_run(out.heatmap),
                              tuple(per_run(s) for s in out.side_logits))


def run_loss_inputs(model: VideoSegmentationModel, batch: Mapping[str, Any], with_previous: bool) -> dict[str, Any]:
    """Keyword arguments of :class:`~flanet.losses.FLANetLoss` for the targets of a batch of runs.

    Args:
        model: the model trained.
        batch: a collated batch of :class:`~flanet.data.sequences.SequenceDataset` samples.
        with_previous: also predict ``H_{t-1}`` of every target (eq. 1); the runs then hold one more frame.

    Returns:
        ``mask_logits``, ``mask``, ``heatmap``, ``heatmap_target``, ``heatmap_prev``, ``video_index``,
        ``has_lesion``, ``positive_valid``, ``has_mask``, ``side_logits``: the target windows flattened
        in run order, as a batch of clips of those targets gives them.
    """
    target = batch["target"]  # (K, L) bool
    k, length = target.shape
    out = run_outputs(model, batch["frames"], length + int(with_previous))
    keep = target.flatten()

    def targets(x: Tensor) -> Tensor:  # (K, W, ...) -> (targets, ...) of windows 0..L-1
        return x[:, :length].flatten(0, 1)[keep]

    def per_target(key: str) -> Tensor:
        return batch[key].flatten(0, 1)[keep]

    heatmap = None if out.heatmap is None else targets(out.heatmap)
    heatmap_prev = positive_valid = None
    if with_previous and out.heatmap is not None:
        heatmap_prev = out.heatmap[:, 1:].flatten(0, 1)[keep]  # window w+1 is frame t-1 of window w
        positive_valid = per_target("prev_distinct") & ~per_target("prev_lesion_free")
    video_index = torch.as_tensor(batch["video_index"], device=target.device)[:, None].expand(k, length)
    return {
        "mask_logits": targets(out.mask_logits),
        "mask": per_target("mask"),
        "heatmap": heatmap,
        "heatmap_target": per_target("heatmap") if heatmap is not None else None,
        "heatmap_prev": heatmap_prev,
        "video_index": video_index.flatten()[keep],
        "has_lesion": per_target("has_lesion"),
        "positive_valid": positive_valid,
        "has_mask": per_target("has_mask"),
        "side_logits": tuple(targets(s) for s in out.side_logits),
    }
