"""Video-polyp-segmentation (VPS) protocol (the polyp table, Table 4 of the paper).

Published polyp numbers (PNSNet, PNS+, FLA-Net Table 4, LGRNet, Vivim) come from the VPS toolbox
(GewelsJI/VPS ``eval/vps_evaluator.py``), which is not the threshold-0.5 protocol:

* ground truth binarised at ``> 128`` (masks read as bool are used as they are);
* prediction divided by 255 (8-bit maps) and min-max normalised per frame unless constant
  (MATLAB ``mapminmax(im2double(.))``); it must already be at the ground-truth size;
* the first and the last frame of every sequence are dropped;
* S-measure (alpha 0.5), weighted F-measure (beta 1) and MAE: mean over the frames of a sequence;
  E-measure, Dice and IoU: curves over the 256 grey-level thresholds ``pred >= t``, each averaged
  over the frames of a sequence;
* every score and curve is then averaged over sequences (each sequence counts once, whatever its
  length); ``max`` of a curve gives maxDice / maxIoU / maxE-phi, its mean gives meanE-phi etc.

The per-frame maths is pysodmetrics' (``py_sod_metrics``: Smeasure, Emeasure, WeightedFmeasure,
MAE, FmeasureV2 with DICEHandler / IOUHandler). Its objects pool every frame they are given, so we
score each frame with fresh objects and take the per-sequence means here (which also lets frames be
scored in parallel). pysodmetrics evaluates every grey level; the toolbox's
``np.linspace(1, 0, 256)`` float thresholds skip 24 of them, so its curves can differ from ours at a
few thresholds (the 3rd decimal of maxDice, rarely). Dice and IoU are 0 at any threshold where the
prediction misses the ground truth entirely (also where both are empty), as in the toolbox.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import py_sod_metrics as sod

from flanet.metrics import names

SEQUENCE_SCALARS: tuple[str, ...] = ("s_alpha", "weighted_f", "mae")
SEQUENCE_CURVES: tuple[str, ...] = ("e_curve", "dice_curve", "iou_curve")
SUMMARY_KEYS: tuple[str, ...] = names.VPS


@dataclass(frozen=True)
class SequenceScores:
    """VPS scores of one sequence (means over its frames, ends dropped).

    Attributes:
        s_alpha, weighted_f, mae: frame means.
        e_curve, dice_curve, iou_curve: (256,) frame-mean curves; index i is threshold ``>= 255 - i``.
        num_frames: frames that were scored.
    """

    s_alpha: float
    weighted_f: float
    mae: float
    e_curve: np.ndarray
    dice_curve: np.ndarray
    iou_curve: np.ndarray
    num_frames: int


def prepare_predictions(pred: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Turn predictions into the toolbox's [0, 1] maps, vectorised over frames.

    Args:
        pred: (N, H, W) uint8 grey maps (divided by 255) or float maps already in [0, 1].
        normalize: min-max normalise each non-constant frame (the toolbox does).

    Returns:
        (N, H, W) float64 in [0, 1].
    """
    if pred.ndim != 3:
        raise ValueError(f"expected (N, H, W) predictions, got shape {pred.shape}")
    if pred.dtype == np.uint8:
        maps = pred.astype(np.float64) / 255
    elif np.issubdtype(pred.dtype, np.floating):
        maps = pred.astype(np.float64)
        if maps.size and (maps.min() < 0 or maps.max() > 1 or np.isnan(maps).any()):
            raise ValueError("float predictions must lie in [0, 1]")
    else:
        raise TypeError(f"predictions must be uint8 or float, got {pred.dtype}")
    if normalize:
        low = maps.min(axis=(1, 2), keepdims=True)
        high = maps.max(axis=(1, 2), keepdims=True)
        spread = high - low
        maps = np.where(spread > 0, (maps - low) / np.where(spread > 0, spread, 1), maps)
    return maps


def _binary_gt(gt: np.ndarray) -> np.ndarray:
    """(N, H, W) bool ground truth; uint8 masks are binarised at > 128 like the toolbox."""
    if gt.dtype == np.bool_:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    raise TypeError(f"ground truth must be bool or uint8, got {gt.dtype}")


@dataclass(frozen=True)
class FrameScores:
    """Per-frame VPS scores of consecutive frames (before the per-sequence means).

    Attributes:
        s_alpha, weighted_f, mae: (N,).
        e_curve, dice_curve, iou_curve: (N, 256); index i is threshold ``>= 255 - i``.
    """

    s_alpha: np.ndarray
    weighted_f: np.ndarray
    mae: np.ndarray
    e_curve: np.ndarray
    dice_curve: np.ndarray
    iou_curve: np.ndarray

    @staticmethod
    def concatenate(parts: list[FrameScores]) -> FrameScores:
        """Join the scores of consecutive chunks of frames, in order."""
        return FrameScores(**{key: np.concatenate([getattr(p, key) for p in parts]) for key in SEQUENCE_SCALARS + SEQUENCE_CURVES})


def _score_frame(frame: np.ndarray, mask: np.ndarray) -> tuple:
    """pysodmetrics scores of one prepared frame (fresh metric objects: nothing is pooled)."""
    s, e, wf, mae = sod.Smeasure(alpha=0.5), sod.Emeasure(), sod.WeightedFmeasure(beta=1), sod.MAE()
    fm = sod.FmeasureV2(
        {
            "dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
            "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
        }
    )
    for metric in (s, e, wf, mae, fm):
        metric.step(frame, mask, normalize=False)
    curves = fm.get_results()
    return (
        s.get_results()["sm"], wf.get_results()["wfm"], mae.get_results()["mae"],
        e.get_results()["em"]["curve"], curves["dice"]["dynamic"], curves["iou"]["dynamic"],
    )


def score_frames(pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> FrameScores:
    """Per-frame VPS scores (prediction prepared as the toolbox does).

    Args:
        pred: (N, H, W) or (H, W) prediction, uint8 0-255 or float in [0, 1].
        gt: same shape, bool or uint8 (binarised at > 128).
        normalize: min-max normalise each non-constant prediction frame.
    """
    pred = pred[None] if pred.ndim == 2 else pred
    gt = gt[None] if gt.ndim == 2 else gt
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    rows = [_score_frame(frame, mask) for frame, mask in zip(prepare_predictions(pred, normalize), _binary_gt(gt))]
    columns = [np.array(column, dtype=np.float64) for column in zip(*rows)] if rows else [
        np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 256)), np.zeros((0, 256)), np.zeros((0, 256))
    ]
    return FrameScores(*columns)


def sequence_scores(frames: FrameScores, drop_ends: bool = True) -> SequenceScores | None:
    """Means over the frames of one whole sequence, first and last frame dropped.

    Returns:
        The sequence's scores, or None when no frame is left (fewer than 3 frames with ends dropped).
    """
    count = len(frames.mae)
    kept = slice(1, count - 1) if drop_ends else slice(0, count)
    if (count - 2 if drop_ends else count) <= 0:
        return None
    return SequenceScores(
        s_alpha=float(frames.s_alpha[kept].mean()),
        weighted_f=float(frames.weighted_f[kept].mean()),
        mae=float(frames.mae[kept].mean()),
        e_curve=frames.e_curve[kept].mean(0),
        dice_curve=frames.dice_curve[kept].mean(0),
        iou_curve=frames.iou_curve[kept].mean(0),
        num_frames=len(frames.mae[kept]),
    )


def score_sequence(pred: np.ndarray, gt: np.ndarray, drop_ends: bool = True, normalize: bool = True) -> SequenceScores | None:
    """VPS scores of one whole sequence ((N, H, W) predictions and ground truth, in frame order)."""
    return sequence_scores(score_frames(pred, gt, normalize), drop_ends)


def stack_sequences(sequences: list[SequenceScores]) -> dict[str, np.ndarray]:
    """Stack sequence scores: scalars (V,), curves (V, 256)."""
    if not sequences:
        raise ValueError("no sequence has frames left to score (each needs at least 3 with ends dropped)")
    return {key: np.array([getattr(s, key) for s in sequences]) for key in SEQUENCE_SCALARS + SEQUENCE_CURVES}


def summary_from_sequences(stacked: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Data-set VPS scores: mean over sequences (optionally weighted), then max/mean over thresholds.

    Args:
        stacked: output of :func:`stack_sequences`.
        weights: (..., V) sequence weights (bootstrap counts); None means each sequence once.

    Returns:
        ``SUMMARY_KEYS`` -> array of shape ``weights.shape[:-1]``.
    """
    num = len(stacked["mae"])
    weights = np.ones(num) if weights is None else weights
    total = weights.sum(-1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.tensordot(weights, values, axes=(-1, 0)) / (total[..., None] if values.ndim == 2 else total)

    e_curve, dice_curve, iou_curve = (mean(stacked[key]) for key in SEQUENCE_CURVES)
    return {
        "s_alpha": mean(stacked["s_alpha"]),
        "e_phi_mean": e_curve.mean(-1),
        "e_phi_max": e_curve.max(-1),
        "weighted_f": mean(stacked["weighted_f"]),
        "max_dice": dice_curve.max(-1),
        "mean_dice": dice_curve.mean(-1),
        "max_iou": iou_curve.max(-1),
        "mean_iou": iou_curve.mean(-1),
        "mae": mean(stacked["mae"]),
    }


def summarise_sequences(sequences: list[SequenceScores]) -> dict[str, float]:
    """Data-set VPS scores (each sequence counts once), as plain floats plus ``num_sequences``."""
    summary = {key: float(value) for key, value in summary_from_sequences(stack_sequences(sequences)).items()}
    summary["num_sequences"] = float(len(sequences))
    summary["num_frames"] = float(sum(s.num_frames for s in sequences))
    return summary
