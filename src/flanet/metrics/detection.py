"""Lesion detection scored as detection: one box per frame from a segmentation, COCO average precision.

The data set of the paper carries a lesion box on every frame "which enables benchmarking breast
lesion detection" (Lin et al., MICCAI 2023, Section 2). A segmentation model is scored as a
detector by turning each frame's prediction into one scored box:

* **component box**: the box of the largest 8-connected component of ``P = {p > threshold}`` (ties:
  the first in raster order), scored by the maximum probability inside that component; a frame
  with an empty ``P`` has no box;
* **peak box** (models with the localisation branch): a box of the same width and height centred at
  the heatmap peak, clipped to the frame, with the same score.

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``), as
:mod:`flanet.data.bboxes`. :func:`coco_average_precision` scores them with pycocotools' COCOeval
(Lin et al., "Microsoft COCO", ECCV 2014): AP = the mean over IoU thresholds 0.50:0.05:0.95 of the
101-point interpolated precision, AP50 / AP75 at one threshold, one category, every area.
"""

from __future__ import annotations

import contextlib
import io

import cv2
import numpy as np

Box = tuple[float, float, float, float]
#: metrics.json keys of :func:`coco_average_precision`, by IoU threshold.
AP_KEYS: tuple[str, ...] = ("ap", "ap50", "ap75")


def component_boxes(binary: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box and score of the largest 8-connected component of every frame, in one labelling pass.

    The frames are stacked into one image with a background row between consecutive frames (so no
    component spans two frames) and labelled once by OpenCV; the largest component of each frame is
    chosen by sorting the component table, and its score is the maximum of ``prob`` over its pixels
    (gathered with a lookup table and reduced per component).

    Args:
        binary: (N, H, W) bool predicted masks.
        prob: (N, H, W) probabilities of the same frames (any real dtype: uint8 ``round(255 p)`` is read
            as it is, without a copy, and its scores are then in 0..255).

    Returns:
        ``(boxes, scores)``: (N, 4) float64 ``(x1, y1, x2, y2)`` and (N,) float64; NaN for a frame
        without a component.
    """
    n, height, width = binary.shape
    boxes = np.full((n, 4), np.nan)
    scores = np.full(n, np.nan)
    if n == 0 or not binary.any():
        return boxes, scores
    stacked = np.zeros((n, height + 1, width), np.uint8)
    stacked[:, :height] = binary
    count, labels, stats, _ = cv2.connectedComponentsWithStats(stacked.reshape(n * (height + 1), width), connectivity=8)
    label = np.arange(1, count)
    x, y, w, h, area = (stats[1:, k].astype(np.int64) for k in range(5))
    frame = y // (height + 1)
    order = np.lexsort((label, -area, frame))  # per frame: largest first, then the first in raster order
    frames, first = np.unique(frame[order], return_index=True)
    chosen = order[first]
    top = y[chosen] - frames * (height + 1)
    boxes[frames] = np.stack([x[chosen], top, x[chosen] + w[chosen], top + h[chosen]], axis=1)
    per_frame = labels.reshape(n, height + 1, width)[:, :height]  # the separator rows dropped: prob's shape
    wanted = np.zeros(count, bool)
    wanted[label[chosen]] = True
    inside = wanted[per_frame]  # pixels of the chosen components only (a lookup, no sort of the frame)
    owner, values = per_frame[inside], prob[inside]
    order = np.argsort(owner, kind="stable")
    owner, values = owner[order], values[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    maxima = np.maximum.reduceat(values, starts)  # per chosen component, in label order
    scores[frames] = maxima[np.searchsorted(owner[starts], label[chosen])]
    return boxes, scores


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, 4) ``(x1, y1, x2, y2)`` box of the True pixels of every (N, H, W) mask (all components); NaN if empty.

    The box spans ``[min col, max col + 1) x [min row, max row + 1)``, as :func:`flanet.data.bboxes.mask_bbox`.
    """
    n, height, width = masks.shape
    cols, rows = masks.any(axis=1), masks.any(axis=2)  # (N, W), (N, H)
    found = rows.any(axis=1)
    x1, y1 = cols.argmax(axis=1), rows.argmax(axis=1)
    x2, y2 = width - cols[:, ::-1].argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float64)
    boxes[~found] = np.nan
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) IoU of the boxes of two (N, 4) arrays, row by row; NaN where either row is NaN."""
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.where(np.isnan(union), np.nan, 0.0))


def peak_boxes(peaks: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes of the sizes of ``boxes`` centred at ``peaks`` (``(x, y)``), clipped to the frame.

    Args:
        peaks: (N, 2) heatmap peaks in pixel-edge coordinates of the frame.
        boxes: (N, 4) component boxes (their width and height are used; NaN rows stay NaN).
        height / width: the frame size, for clipping.
    """
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    low = np.clip(peaks - half, 0, [width, height])
    high = np.clip(peaks + half, 0, [width, height])
    return np.concatenate([low, high], axis=1)


def coco_average_precision(truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """COCO AP, AP50 and AP75 of one box per frame against at most one true box per frame.

    Every frame is one COCO image: a frame without a true box (lesion-free) turns its predicted box
    into a false positive; a frame without a predicted box (NaN row) misses its true box.

    Args:
        truth: (N, 4) true ``(x1, y1, x2, y2)`` per frame, NaN rows for none.
        boxes: (N, 4) predicted boxes, NaN rows for none.
        scores: (N,) their confidences.

    Returns:
        ``{"ap", "ap50", "ap75"}``; None for each when no frame has a true box (AP is undefined).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(boxes) or len(boxes) != len(scores):
        raise ValueError(f"{len(truth)} true boxes, {len(boxes)} boxes, {len(scores)} scores: one per frame each")
    annotations = [
        {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": _xywh(box), "area": _xywh(box)[2] * _xywh(box)[3],
         "iscrowd": 0}
        for i, box in enumerate(truth) if np.isfinite(box).all()
    ]
    if not annotations:
        return dict.fromkeys(AP_KEYS)
    found = np.flatnonzero(np.isfinite(boxes).all(axis=1))
    if found.size == 0:
        return dict.fromkeys(AP_KEYS, 0.0)
    detections = [
        {"image_id": int(i) + 1, "category_id": 1, "bbox": _xywh(boxes[i]), "score": float(scores[i])} for i in found
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground = COCO()
        ground.dataset = {"images": [{"id": i + 1} for i in range(len(truth))], "annotations": annotations,
                          "categories": [{"id": 1, "name": "lesion"}]}
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {key: float(evaluation.stats[k]) for k, key in enumerate(AP_KEYS)}


def _xywh(box: Box | np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]
