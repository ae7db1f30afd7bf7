"""VPS protocol: agreement with pysodmetrics called directly and a hand-worked two-sequence example."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod
import pytest

from flanet.metrics.vps import (
    FrameScores,
    prepare_predictions,
    score_frames,
    score_sequence,
    sequence_scores,
    stack_sequences,
    summarise_sequences,
    summary_from_sequences,
)

SQUARE = np.zeros((4, 4), dtype=bool)
SQUARE[:2, :2] = True  # 4-pixel lesion in a 16-pixel frame


def _binary(mask: np.ndarray) -> np.ndarray:
    return (mask * 255).astype(np.uint8)


def test_sequence_matches_pysodmetrics_on_inner_frames() -> None:
    rng = np.random.default_rng(3)
    pred = (rng.random((6, 24, 20)) * 255).astype(np.uint8)
    gt = np.zeros((6, 24, 20), dtype=np.uint8)
    gt[:, 5:15, 4:12] = 255
    ours = score_sequence(pred, gt)

    metrics = [sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()]
    curves = sod.FmeasureV2(
        {"dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
         "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False)}
    )
    for frame, mask in zip(pred[1:-1], gt[1:-1]):  # first and last frame dropped
        for metric in (*metrics, curves):
            metric.step(frame, mask)
    assert ours is not None and ours.num_frames == 4
    assert ours.s_alpha == pytest.approx(metrics[0].get_results()["sm"], abs=1e-12)
    np.testing.assert_allclose(ours.e_curve, metrics[1].get_results()["em"]["curve"], atol=1e-12)
    assert ours.weighted_f == pytest.approx(metrics[2].get_results()["wfm"], abs=1e-12)
    assert ours.mae == pytest.approx(metrics[3].get_results()["mae"], abs=1e-12)
    np.testing.assert_allclose(ours.dice_curve, curves.get_results()["dice"]["dynamic"], atol=1e-12)
    np.testing.assert_allclose(ours.iou_curve, curves.get_results()["iou"]["dynamic"], atol=1e-12)


def test_two_sequence_example_averages_sequences_not_frames() -> None:
    wrong = np.ones((4, 4), dtype=bool)  # first/last frames: all foreground, must not count
    extra = SQUARE.copy()
    extra[3, :] = True  # lesion plus 4 false-positive pixels: Dice 2/3, IoU 1/2, MAE 1/4
    empty = np.zeros((4, 4), dtype=bool)  # lesion missed: Dice 0, IoU 0, MAE 1/4
    seq_a = np.stack([wrong, SQUARE, wrong])
    seq_b = np.stack([wrong, extra, empty, wrong])
    a = score_sequence(_binary(seq_a), np.stack([SQUARE] * 3))
    b = score_sequence(_binary(seq_b), np.stack([SQUARE] * 4))
    assert a is not None and b is not None and (a.num_frames, b.num_frames) == (1, 2)
    summary = summarise_sequences([a, b])

    # Thresholds >= 1 grey level see the binary maps; threshold 0 (last index) sees all-foreground
    # maps: Dice 2*4/(16+4) = 0.4, IoU 4/16 = 0.25 on every frame.
    dice_curve = np.full(256, ((1 + (2 / 3 + 0) / 2) / 2))
    dice_curve[-1] = 0.4
    iou_curve = np.full(256, (1 + (1 / 2 + 0) / 2) / 2)
    iou_curve[-1] = 0.25
    np.testing.assert_allclose(stack_sequences([a, b])["dice_curve"].mean(0), dice_curve)
    assert summary["max_dice"] == pytest.approx(2 / 3)  # pooled frames would give 5/9
    assert summary["mean_dice"] == pytest.approx(dice_curve.mean())
    assert summary["max_iou"] == pytest.approx(0.625)
    assert summary["mean_iou"] == pytest.approx(iou_curve.mean())
    assert summary["mae"] == pytest.approx((0 + 0.25) / 2)  # pooled frames would give 1/6

    def frame_s(pred: np.ndarray) -> float:
        return float(sod.Smeasure().cal_sm(pred.astype(np.float64), SQUARE))

    expected_s = (frame_s(SQUARE) + (frame_s(extra) + frame_s(empty)) / 2) / 2
    assert summary["s_alpha"] == pytest.approx(expected_s)
    em = []
    for pred in (SQUARE, extra, empty):
        metric = sod.Emeasure()
        metric.step(pred.astype(np.float64), SQUARE, normalize=False)
        em.append(metric.get_results()["em"]["curve"])
    e_curve = (em[0] + (em[1] + em[2]) / 2) / 2
    assert summary["e_phi_max"] == pytest.approx(e_curve.max())
    assert summary["e_phi_mean"] == pytest.approx(e_curve.mean())
    assert summary["num_sequences"] == 2 and summary["num_frames"] == 3


def test_frames_scored_in_chunks_give_the_same_sequence() -> None:
    rng = np.random.default_rng(0)
    pred = (rng.random((7, 16, 16)) * 255).astype(np.uint8)
    gt = rng.random((7, 16, 16)) > 0.6
    whole = score_sequence(pred, gt)
    chunks = FrameScores.concatenate([score_frames(pred[:3], gt[:3]), score_frames(pred[3], gt[3]), score_frames(pred[4:], gt[4:])])
    assert chunks.e_curve.shape == (7, 256) and chunks.s_alpha.shape == (7,)
    chunked = sequence_scores(chunks)
    assert chunked is not None and whole is not None
    assert chunked.num_frames == whole.num_frames == 5
    np.testing.assert_allclose(chunked.e_curve, whole.e_curve)
    assert chunked.s_alpha == whole.s_alpha
    assert chunked.s_alpha == pytest.approx(chunks.s_alpha[1:-1].mean())


def test_short_sequences_have_nothing_to_score() -> None:
    two = np.zeros((2, 4, 4), dtype=np.uint8)
    assert score_sequence(two, two > 0) is None
    kept = score_sequence(two, two > 0, drop_ends=False)
    assert kept is not None and kept.num_frames == 2
    with pytest.raises(ValueError, match="at least 3"):
        stack_sequences([])


def test_prepare_predictions_divides_and_normalises_each_frame() -> None:
    pred = np.stack([np.full((2, 2), 51, np.uint8), np.array([[51, 102], [153, 51]], np.uint8)])
    maps = prepare_predictions(pred)
    np.testing.assert_allclose(maps[0], 0.2)  # constant frame: only divided by 255
    np.testing.assert_allclose(maps[1], [[0, 0.5], [1, 0]])
    np.testing.assert_allclose(prepare_predictions(pred.astype(np.float64) / 255), maps)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prepare_predictions(np.full((1, 2, 2), 2.0))


def test_weighted_summary_equals_repeating_sequences() -> None:
    rng = np.random.default_rng(1)
    gt = rng.random((4, 12, 12)) > 0.5
    sequences = [score_sequence((rng.random((4, 12, 12)) * 255).astype(np.uint8), gt) for _ in range(3)]
    weighted = summary_from_sequences(stack_sequences(sequences), np.array([[2.0, 0.0, 1.0]]))
    repeated = summarise_sequences([sequences[0], sequences[0], sequences[2]])
    for key, value in weighted.items():
        assert value.shape == (1,)
        assert value[0] == pytest.approx(repeated[key])
