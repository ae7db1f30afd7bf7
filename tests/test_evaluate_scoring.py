"""EvaluationScorer: the streaming scorer gives the protocols' numbers, rows and worst frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flanet.evaluation.report import format_cell, table_rows
from flanet.evaluation.scoring import EvaluationScorer
from flanet.metrics import frame_scores, names, score_sequence, summarise, summarise_sequences


def _video(rng: np.random.Generator, frames: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((frames, size, size), dtype=bool)
    gt[:, 4:10, 5:12] = True
    prob = (np.clip(gt * 0.7 + rng.random(gt.shape) * 0.5, 0, 1) * 255).round().astype(np.uint8)
    return prob, gt


def test_scorer_matches_the_metric_functions() -> None:
    rng = np.random.default_rng(0)
    videos = {"a": _video(rng, 5), "b": _video(rng, 3), "c": _video(rng, 4)}
    scorer = EvaluationScorer(worst_count=3)
    for name, (prob, gt) in videos.items():
        scorer.add(name, [f"{i:03d}" for i in range(2)], prob[:2], gt[:2])  # chunks of one video
        scorer.add(name, [f"{i:03d}" for i in range(2, len(prob))], prob[2:], gt[2:])
    result = scorer.result({"a": {"pathology": "benign"}, "b": {"pathology": "malignant"}}, num_resamples=200)

    prob_all = torch.from_numpy(np.concatenate([p for p, _ in videos.values()])).float()[:, None] / 255
    gt_all = torch.from_numpy(np.concatenate([g for _, g in videos.values()]))[:, None]
    ids = [name for name, (p, _) in videos.items() for _ in range(len(p))]
    expected = summarise(frame_scores(prob_all, gt_all), ids)
    for key in ("dice", "jaccard", "precision", "recall", "f1", "mae"):
        assert result.metrics[key] == pytest.approx(expected[key])
        low, high = result.metrics["ci"][key]
        assert low <= result.metrics[key] + 1e-12 and result.metrics[key] <= high + 1e-12
    vps = summarise_sequences([score_sequence(p, g) for p, g in videos.values()])
    for key in ("s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice", "max_iou"):
        assert result.metrics[key] == pytest.approx(vps[key])
    assert result.metrics["vps_mae"] == pytest.approx(vps["mae"])
    assert result.metrics["num_frames"] == 12 and result.metrics["num_vps_frames"] == 3 + 1 + 2
    # the one list of names (flanet.metrics.names) is what metrics.json holds: compare, reports and logs read it
    assert set(names.COMPARISON) | set(names.HEADLINE) <= set(result.metrics)

    assert [row["video"] for row in result.per_video] == ["a", "b", "c"]
    assert [row["pathology"] for row in result.per_video] == ["benign", "malignant", ""]
    assert result.metrics["by_label"]["pathology"]["malignant"]["num_videos"] == 1
    assert len(result.per_frame) == 12

    dice = [row["dice"] for row in result.per_frame]
    assert [w.dice for w in result.worst] == sorted(dice)[:3]
    assert all(w.prob.shape == (16, 16) and w.gt.dtype == bool for w in result.worst)


def test_frames_of_a_video_must_be_contiguous() -> None:
    rng = np.random.default_rng(1)
    prob, gt = _video(rng, 2)
    scorer = EvaluationScorer()
    scorer.add("a", ["0"], prob[:1], gt[:1])
    scorer.add("b", ["0"], prob[:1], gt[:1])
    with pytest.raises(ValueError, match="after another video"):
        scorer.add("a", ["1"], prob[1:], gt[1:])


def test_nothing_scored_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frame"):
        EvaluationScorer().result()


def test_short_videos_have_no_vps_scores_but_standard_ones() -> None:
    rng = np.random.default_rng(2)
    prob, gt = _video(rng, 2)
    scorer = EvaluationScorer()
    scorer.add("short", ["0", "1"], prob, gt)
    result = scorer.result(num_resamples=50)
    assert result.metrics["num_vps_sequences"] == 0
    assert np.isnan(result.metrics["s_alpha"])
    assert result.per_video[0]["s_alpha"] == ""
    assert format_cell(result.metrics, "s_alpha") == "-"
    assert result.metrics["dice"] > 0


def test_table_rows_have_the_paper_columns() -> None:
    metrics = {"dice": 0.78912, "jaccard": 0.687, "f1": 0.815, "mae": 0.033, "ci": {"dice": [0.7, 0.8]}}
    table = table_rows([("FLA-Net", "video", metrics)])
    assert "| FLA-Net | video | 0.789 [0.700, 0.800] | 0.687 | 0.815 | 0.033 |" in table
    assert "| Dice ↑ | IoU ↑ | Sα ↑ | Eϕ ↑ | MAE ↓ |" in table


def test_parallel_vps_intervals_do_not_depend_on_which_worker_finishes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A video whose VPS scores finish after the next video's (the first one held back here) must keep its
    place: the bootstrap draws its weights by position, so the order of finishing changed the intervals
    (a flaky CI failure of the test below)."""
    from concurrent.futures import Future

    rng = np.random.default_rng(4)
    videos = {name: _video(rng, frames) for name, frames in (("a", 4), ("b", 5), ("c", 3))}
    results = []
    held: set[int] = set()
    real_done = Future.done
    monkeypatch.setattr(Future, "done", lambda self: False if id(self) in held else real_done(self))
    for hold_back in (False, True):
        with EvaluationScorer(jobs=2) as scorer:
            for name, (prob, gt) in videos.items():
                scorer.add(name, [str(i) for i in range(len(prob))], prob, gt)
                parts = scorer._vps_parts[name]
                for part in parts:
                    part.result()  # finished, so only the hold-back decides the order
                if hold_back and name == "a":
                    held.update(id(part) for part in parts)
            held.clear()
            results.append(scorer.result(num_resamples=100))
    assert results[1].metrics["ci"] == results[0].metrics["ci"]


def test_parallel_vps_scoring_equals_in_process() -> None:
    rng = np.random.default_rng(4)
    videos = {name: _video(rng, frames) for name, frames in (("a", 4), ("b", 5), ("c", 3))}
    results = []
    for jobs in (1, 2):
        with EvaluationScorer(jobs=jobs) as scorer:
            for name, (prob, gt) in videos.items():
                for start in range(0, len(prob), 2):
                    names = [str(i) for i in range(start, min(start + 2, len(prob)))]
                    scorer.add(name, names, prob[start : start + 2], gt[start : start + 2])
            results.append(scorer.result(num_resamples=100))
    for key in ("s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice", "vps_mae", "dice"):
        assert results[1].metrics[key] == results[0].metrics[key]
    assert results[1].metrics["ci"] == results[0].metrics["ci"]
