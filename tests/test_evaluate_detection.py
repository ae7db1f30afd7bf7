"""Lesion detection scored as detection (issue 30 item 5): boxes per frame, COCO AP, box-only sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.evaluation.scoring import EvaluationScorer
from flanet.metrics.detection import box_iou, coco_average_precision, component_boxes, mask_boxes, peak_boxes

NAN = np.nan
HEIGHT, WIDTH = 48, 64


def test_component_boxes_take_each_frames_largest_component_in_one_pass() -> None:
    masks = np.zeros((4, 6, 7), bool)
    masks[0, 1:3, 1] = True  # 2 pixels
    masks[0, 4:6, 3:7] = True  # 8 pixels: the largest, touching the frame's last row
    masks[1, 0, 0] = masks[1, 5, 6] = True  # a tie of single pixels: the first in raster order
    masks[3, 0, 0:2] = masks[3, 1, 2] = True  # diagonal neighbours are one component (8-connected)
    prob = masks * 0.6
    prob[0, 5, 6], prob[0, 1, 1] = 0.95, 0.99  # the score is the maximum over the chosen component only
    boxes, scores = component_boxes(masks, prob)
    expected = [[3, 4, 7, 6], [0, 0, 1, 1], [NAN] * 4, [0, 0, 3, 2]]
    np.testing.assert_array_equal(boxes, expected)
    np.testing.assert_allclose(scores, [0.95, 0.6, NAN, 0.6])
    np.testing.assert_array_equal(mask_boxes(masks), [[1, 1, 7, 6], [0, 0, 7, 6], [NAN] * 4, [0, 0, 3, 2]])


def test_peak_box_is_the_component_extent_at_the_peak_clipped_to_the_frame() -> None:
    boxes = np.array([[3, 4, 7, 6], [NAN] * 4], float)
    peaks = np.array([[1.0, 2.0], [5.0, 5.0]])
    np.testing.assert_array_equal(peak_boxes(peaks, boxes, 6, 7), [[0, 1, 3, 3], [NAN] * 4])
    a, b = np.array([[0, 0, 10, 10], [0, 0, 1, 1.0]]), np.array([[0, 0, 8, 8], [NAN] * 4])
    np.testing.assert_allclose(box_iou(a, b), [0.64, NAN])


def test_coco_ap_hand_computed() -> None:
    truth = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [NAN] * 4])
    # frame 0: exact (IoU 1); frame 1: IoU 0.64 (a match at 0.50, 0.55, 0.60); frame 2 has no lesion, no box
    boxes, scores = np.array([[0, 0, 10, 10], [0, 0, 8, 8], [NAN] * 4]), np.array([0.9, 0.8, NAN])
    ap = coco_average_precision(truth, boxes, scores)
    # 101-point precision: 1 at every recall where both match; TP then FP: 1 up to recall 0.5 (51 of 101 points)
    assert ap["ap50"] == pytest.approx(1.0)
    assert ap["ap75"] == pytest.approx(51 / 101)
    assert ap["ap"] == pytest.approx((3 * 1 + 7 * 51 / 101) / 10)
    # a box on the lesion-free frame, ranked first, is a false positive at every threshold
    boxes[2], scores[2] = (2, 2, 4, 4), 0.95
    ap = coco_average_precision(truth, boxes, scores)
    assert ap["ap50"] == pytest.approx(2 / 3)  # FP, TP, TP: precision 1/2 at recall 1/2, 2/3 at recall 1
    assert ap["ap"] == pytest.approx((3 * 2 / 3 + 7 * 51 / 202) / 10)  # FP, TP, FP: 1/2 up to recall 1/2
    assert coco_average_precision(truth[2:], boxes[2:], scores[2:]) == {"ap": None, "ap50": None, "ap75": None}
    none = np.full((3, 4), NAN)
    assert coco_average_precision(truth, none, np.full(3, NAN)) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


def test_scorer_takes_annotated_boxes_over_mask_boxes_and_reports_ap() -> None:
    gt = np.zeros((2, 20, 20), bool)
    gt[:, 5:15, 5:15] = True
    prob = (gt * 255).astype(np.uint8)  # exactly the masks
    annotated = np.array([[0, 0, 20, 20], [NAN] * 4])  # frame 0's annotated box is the whole frame
    with EvaluationScorer(0.5, worst_count=1) as scorer:
        scorer.add("v", ["a", "b"], prob, gt, None, annotated)
        result = scorer.result(num_resamples=20)
    metrics = result.metrics
    assert metrics["detection"]["truth"] == {"annotated_boxes": 1, "mask_boxes": 1, "frames_without_lesion": 0}
    # frame 0: IoU 100/400 = 0.25, a miss at every threshold; frame 1 exact. Equal scores keep the frame
    # order (COCOeval sorts stably): FP, TP, so precision 1/2 up to recall 1/2 (51 of 101 points)
    assert [row["box_iou"] for row in result.per_frame] == [pytest.approx(0.25), pytest.approx(1.0)]
    assert metrics["box_ap"] == metrics["box_ap50"] == metrics["box_ap75"] == pytest.approx(51 / 202)
    assert metrics["peak_box_ap"] is None and "no localisation branch" in metrics["detection"]["note"]
    assert result.per_frame[1]["truth_x1"] == 5.0 and result.per_frame[0]["truth_x2"] == 20.0


def _cva_net(root: Path, corners: list[tuple[int, int] | None]) -> None:
    """One video ``a`` under ``rawframes/`` with 12x10 lesion boxes at the given corners in ``val.json``
    (``None``: a listed, lesion-free frame)."""
    images, annotations = [], []
    folder = root / "rawframes" / "a"
    folder.mkdir(parents=True)
    for index, corner in enumerate(corners):
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        images.append({"id": index + 1, "file_name": f"a/{index:06d}.png", "width": WIDTH, "height": HEIGHT})
        if corner is not None:
            x, y = corner
            frame[y:y + 10, x:x + 12] = 230
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1, "bbox": [x, y, 12, 10]})
        cv2.imwrite(str(folder / f"{index:06d}.png"), frame)
    (root / "val.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def test_box_only_set_is_scored_as_detection_from_a_prediction_folder(tmp_path: Path) -> None:
    data, pred, out = tmp_path / "cva", tmp_path / "pred" / "a", tmp_path / "eval"
    _cva_net(data, [(10, 6), None, (20, 30)])
    pred.mkdir(parents=True)
    frames = np.zeros((3, HEIGHT, WIDTH), np.uint8)
    frames[0, 6:16, 10:22] = 200  # exactly the box: IoU 1
    frames[1, 0:4, 0:4] = 230  # on the lesion-free frame, the highest score: a false positive
    frames[2, 30:40, 22:32] = 180  # box (22, 30, 32, 40) in (20, 30, 32, 40): IoU 100/120, a match up to 0.80
    for index, frame in enumerate(frames):
        cv2.imwrite(str(pred / f"{index:06d}.png"), frame)
    args = ["evaluate", "--pred-dir", str(pred.parent), "--data", str(data), "--split", "all", "--out", str(out),
            "--resamples", "20", "--no-progress", "--jobs", "1"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # FP, TP, TP at the 7 thresholds 0.50..0.80: precision 2/3 at every recall; FP, TP, FP at 0.85..0.95
    assert metrics["box_ap50"] == pytest.approx(2 / 3) and metrics["box_ap75"] == pytest.approx(2 / 3)
    assert metrics["box_ap"] == pytest.approx((7 * 2 / 3 + 3 * 51 / 202) / 10)
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == 0.0 and metrics["auroc"] == 0.0
    assert metrics["loc_error_px"] == pytest.approx(0.5)  # centroids (16, 11) and (27, 35), box centres (16, 11), (26, 35)
    assert metrics["dice"] is None and metrics["flicker"] is None and not metrics["segmentation"]["applicable"]
    assert metrics["context"]["scoring"] == "detection only (box-only frames)"
    with (out / "per_frame.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["box_iou"] for row in rows][:2] == ["1.0", ""] and float(rows[2]["box_iou"]) == pytest.approx(100 / 120)
    table = (out / "table.md").read_text()
    assert "### Detection (COCO AP of one box per frame)" in table and "segmentation not applicable" in table
    assert (out / "viewer.html").is_file()


def test_checkpoint_on_a_box_only_set_reports_component_and_peak_box_ap(tmp_path: Path, checkpoint: Path) -> None:
    data, out = tmp_path / "cva", tmp_path / "eval"
    _cva_net(data, [(10, 6), None, (20, 30), (22, 30)])
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "all", "--out", str(out),
            "--resamples", "20", "--no-progress", "--jobs", "1", "--num-workers", "0", "--device", "cpu"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_frames"] == 4 and metrics["detection"]["frames"] == 4
    assert metrics["detection"]["truth"] == {"annotated_boxes": 3, "mask_boxes": 0, "frames_without_lesion": 1}
    for key in ("box_ap", "box_ap50", "box_ap75", "peak_box_ap", "peak_box_ap50", "peak_box_ap75"):
        assert isinstance(metrics[key], float) and 0 <= metrics[key] <= 1, key
    assert metrics["dice"] is None and metrics["sensitivity"] is not None
