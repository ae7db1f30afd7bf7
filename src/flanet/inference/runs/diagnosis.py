"""The diagnosis head over a stream: a running per-video estimate beside the segmentation (``flanet predict``).

:class:`StreamDiagnoser` takes each frame the segmenter gave a result for, pools the frame's deepest
encoder features under the mask (or heatmap) the segmenter predicted (:func:`flanet.models.diagnosis.pooled_features`,
one extra ``model.encode`` of the frame) and updates the head's attention pooling online
(:class:`~flanet.models.diagnosis.RunningDiagnosis`): after frame ``n`` the estimate is the head's on frames
``0..n``. Every frame is read (a video diagnosed by ``flanet evaluate`` is read from frames spread over it,
so the two estimates of one video differ somewhat).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flanet.data import to_model_input
from flanet.inference.core.segmenter import FrameResult
from flanet.models.checkpoint import LoadedDiagnosis
from flanet.models.contract import VideoSegmentationModel
from flanet.models.diagnosis import RunningDiagnosis, pooled_features

#: Frames listed in ``summary.json`` as the ones that weighed most.
TOP_FRAMES = 5


class StreamDiagnoser:
    """Running diagnosis of one video.

    Args:
        model: the segmentation model (PyTorch; its ``encode`` gives the features).
        diagnosis: the checkpoint's head and validation thresholds.
        image_size: the model input side S the segmenter runs at.
    """

    def __init__(self, model: VideoSegmentationModel, diagnosis: LoadedDiagnosis, image_size: int) -> None:
        self.model, self.diagnosis, self.image_size = model.eval(), diagnosis, image_size
        self.device = next(model.parameters()).device
        self.head = diagnosis.head.to(self.device).eval()
        self.running = RunningDiagnosis(self.head)
        self.frames: list[int] = []
        self.probs: np.ndarray | None = None

    @property
    def columns(self) -> list[str]:
        """The ``frames.csv`` columns of the running estimate: ``<label>_probability`` per label."""
        return [f"{label}_probability" for label in self.head.labels]

    @torch.inference_mode()
    def update(self, rgb: np.ndarray, result: FrameResult) -> dict[str, float]:
        """Add a frame (the RGB frame the model read, its result); the running estimate per column."""
        image = to_model_input(rgb, self.image_size)[None].to(self.device, next(self.model.parameters()).dtype)
        features = self.model.encode(image)[-1]
        if self.head.pool == "heatmap" and result.heatmap is not None:
            weight = result.heatmap[None].float().clamp(0, 1)
        else:
            weight = torch.sigmoid(result.mask_logits[None].float())
        self.probs = self.running.update(pooled_features(features, weight.to(features.device))).float().cpu().numpy()
        self.frames.append(result.index)
        return {column: float(p) for column, p in zip(self.columns, self.probs)}

    def attention_by_frame(self) -> dict[int, float]:
        """The head's attention weight of every frame read (frame index -> weight; they sum to 1)."""
        return dict(zip(self.frames, self.running.attention().tolist()))

    def summary(self) -> dict[str, Any]:
        """Per label the probability, the threshold and the call; the frames that weighed most (0-based index)."""
        if self.probs is None:
            return {"labels": {}, "top_frames": []}
        labels = {}
        for label, probability in zip(self.head.labels, self.probs):
            threshold = self.diagnosis.thresholds.get(label)
            labels[label] = {"probability": float(probability), "threshold": threshold,
                             "positive": None if threshold is None else bool(probability >= threshold)}
        top = [{"frame": self.frames[i], "weight": w} for i, w in self.running.top_frames(TOP_FRAMES)]
        return {"labels": labels, "top_frames": top, "frames_read": len(self.frames)}
