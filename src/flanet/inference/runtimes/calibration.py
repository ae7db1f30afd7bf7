"""The user's own frames for INT8 quantization: calibration inputs and the held-out Dice check.

Post-training static quantization (:mod:`flanet.inference.runtimes.quantize`) fixes the range of every
quantized activation from a few representative inputs: here, frames of the user's videos (a data root
of any layout of docs/data.md, a video file, a DICOM cine or a folder of frames), prepared exactly as
the segmenter prepares them (:func:`flanet.data.images.to_model_input`). The decoder is calibrated on
the causal windows ``[t, t-1, t-2]`` of consecutive frames (paper, Sec. 3, Fig. 2), their features from
the float32 encoder. :func:`held_out_dice` streams other videos through a float32 and an INT8 runner
and compares their masks with the ground truth (Dice, the paper's Table 2 metric) and with each other.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flanet.data import DataError, discover
from flanet.data.images import read_mask, resize_rgb, to_model_input
from flanet.data.video_io import VideoFrameReader, iter_video_frames
from flanet.metrics.standard import frame_scores
from flanet.models.windows import CausalWindows, frame_features

__all__ = ["CalibrationVideo", "read_videos", "split_held_out", "calibration_inputs", "held_out_dice"]


@dataclass(frozen=True)
class CalibrationVideo:
    """One video of the user's: where it is, and how to read its frames and masks.

    Attributes:
        name: the video's id (data root) or path.
        path: a video file or frame folder, or None for a video of a data root.
        video: the data root's :class:`~flanet.data.Video`, or None.
    """

    name: str
    path: Path | None = None
    video: object | None = None

    def frames(self, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``(RGB uint8 frame, bool mask or None)`` in video order, at most ``limit`` of them."""
        if self.path is not None:
            for index, frame in enumerate(iter_video_frames(self.path)):
                if limit is not None and index >= limit:
                    return
                yield frame, None
            return
        reader, video = VideoFrameReader(), self.video
        count = video.num_frames if limit is None else min(limit, video.num_frames)  # type: ignore[union-attr]
        for index in range(count):
            mask = video.masks[index]  # type: ignore[union-attr]
            yield video.read_frame(index, reader), (None if mask is None else read_mask(mask))  # type: ignore[union-attr]


def read_videos(paths: Sequence[str | Path], split: str | None = None) -> list[CalibrationVideo]:
    """The videos of ``paths``: each a data root (its ``split``, or every video) or a video file / frame folder.

    Raises:
        DataError: a path that is neither, or one that holds no video.
    """
    videos: list[CalibrationVideo] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise DataError("no such file or folder", path)
        root = None
        if path.is_dir():
            try:
                root = discover(path)
            except DataError:
                root = None  # a folder of frames
        if root is not None and root.videos:
            videos += [CalibrationVideo(v.id, video=v) for v in root.subset(split)]
        else:
            videos.append(CalibrationVideo(str(path), path=path))
    if not videos:
        raise DataError("no video to calibrate on or to check with", Path(paths[0]) if paths else None)
    return videos


def split_held_out(videos: Sequence[CalibrationVideo], share: float = 1 / 3,
                   seed: int = 0) -> tuple[list[CalibrationVideo], list[CalibrationVideo]]:
    """``(calibration, held out)``: ``share`` of the videos (at least 1, seeded) held out, by video.

    Raises:
        DataError: fewer than two videos (nothing would be held out).
    """
    if len(videos) < 2:
        raise DataError("one video only: give --held-out videos for the Dice check, or more calibration videos",
                        Path(videos[0].name) if videos else None)
    held = set(random.Random(seed).sample(range(len(videos)), max(1, round(len(videos) * share))))
    held = held if len(held) < len(videos) else set(list(held)[:-1])
    return [v for i, v in enumerate(videos) if i not in held], [v for i, v in enumerate(videos) if i in held]


def calibration_inputs(videos: Sequence[CalibrationVideo], image_size: int, frames: int) -> list[list[np.ndarray]]:
    """Prepared frames ``(1, 3, S, S)`` float32 for calibration: consecutive frames from each video's start.

    About ``frames`` in all, spread over the videos (``ceil(frames / videos)`` each, at most every frame).
    """
    per_video = max(1, math.ceil(frames / len(videos)))
    return [[to_model_input(frame, image_size).numpy()[None] for frame, _ in video.frames(per_video)]
            for video in videos]


def _mask_at(mask: np.ndarray, size: int) -> torch.Tensor:
    """A bool mask resized to ``size x size`` as the training targets are (area/bilinear, threshold 0.5)."""
    return torch.from_numpy(resize_rgb(mask.astype(np.uint8) * 255, size) > 127)[None, None]


def _stream(runner: object, images: Sequence[torch.Tensor], num_frames: int) -> torch.Tensor:
    """Lesion probabilities ``(N, 1, S, S)`` of one video's prepared frames, streamed causally."""
    windows, outputs = CausalWindows(num_frames), []
    for image in images:
        logits, _ = runner.predict(frame_features(windows.push(runner.per_frame_state(image))))  # type: ignore[attr-defined]
        outputs.append(torch.sigmoid(logits.float()))
    return torch.cat(outputs)


@dataclass(frozen=True)
class HeldOutDice:
    """The Dice check of an INT8 model on held-out videos (mean over frames, at the model's input size).

    Attributes:
        videos, frames: held-out videos and frames streamed; ``frames_with_mask``: those with ground truth.
        dice_float32, dice_int8: mean Dice against the ground truth (None without masks).
        dice_drop: ``dice_float32 - dice_int8`` (None without masks).
        agreement: mean Dice of the INT8 masks against the float32 masks, over every frame.
    """

    videos: int
    frames: int
    frames_with_mask: int
    dice_float32: float | None
    dice_int8: float | None
    dice_drop: float | None
    agreement: float

    @property
    def checked_drop(self) -> float:
        """What the limit applies to: the drop against the ground truth, else ``1 - agreement``."""
        return self.dice_drop if self.dice_drop is not None else 1.0 - self.agreement


def held_out_dice(float_runner: object, int8_runner: object, videos: Sequence[CalibrationVideo], image_size: int,
                  num_frames: int, max_frames: int | None = None) -> HeldOutDice:
    """Stream ``videos`` through both runners and compare the masks (threshold 0.5)."""
    scores: dict[str, list[torch.Tensor]] = {"float": [], "int8": [], "agreement": []}
    frames = 0
    for video in videos:
        pairs = list(video.frames(max_frames))
        images = [to_model_input(frame, image_size)[None] for frame, _ in pairs]
        reference, quantized = _stream(float_runner, images, num_frames), _stream(int8_runner, images, num_frames)
        frames += len(images)
        scores["agreement"].append(frame_scores(quantized, reference > 0.5)["dice"])
        known = [i for i, (_, mask) in enumerate(pairs) if mask is not None]
        if known:
            truth = torch.cat([_mask_at(pairs[i][1], image_size) for i in known])  # type: ignore[arg-type]
            scores["float"].append(frame_scores(reference[known], truth)["dice"])
            scores["int8"].append(frame_scores(quantized[known], truth)["dice"])
    with_mask = sum(len(s) for s in scores["float"])
    mean = {k: float(torch.cat(v).mean()) if v and sum(len(x) for x in v) else None for k, v in scores.items()}
    drop = None if mean["float"] is None or mean["int8"] is None else mean["float"] - mean["int8"]
    return HeldOutDice(len(videos), frames, with_mask, mean["float"], mean["int8"], drop, float(mean["agreement"] or 0.0))
