"""Workers of ``flanet bench`` beyond model-only throughput: end to end, authors' model, decode share.

* ``end-to-end``: ``predict_to_folder`` on a synthetic mp4 (``video_frames`` frames of ``video_size`` WxH,
  1920x1080 by default): decoding, preprocessing, the model, resizing/thresholding, masks, overlay video,
  viewer and CSV, i.e. what ``flanet predict`` does, beside the model-only stream of the same decoded
  frames in the same process (issue 28: end to end at >= 0.85x the model-only rate);
* ``authors``: the authors' architecture (compute replica, ``benchmarks/authors_model_replica.py``),
  one ``model(clip)`` per output frame as their code evaluates a video;
* :func:`decode_share`: time of the fusion + decoders (one ``decode`` of cached features) over
  the time of a whole streamed frame (issue 15: <= 15 %); with N frames in flight, over the time
  one worker spends on its frame (N frame intervals), since each decode then runs on a worker's
  share of the threads.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["authors_fps", "decode_share", "end_to_end_fps", "write_test_video"]


def write_test_video(path: Path, frames: int, size_wh: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """A smooth synthetic mp4 (moving bright disc on a speckled background), mp4v codec."""
    rng = np.random.default_rng(seed)
    width, height = size_wh
    background = cv2.GaussianBlur(rng.integers(0, 90, (height, width, 3), dtype=np.uint8), (9, 9), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for i in range(frames):
        frame = background.copy()
        cv2.circle(frame, (width // 4 + 4 * i, height // 2), min(width, height) // 8, (200, 190, 180), -1)
        writer.write(frame)
    writer.release()
    return path


def end_to_end_fps(model: torch.nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """``predict_to_folder`` on a synthetic recording beside the model-only stream of the same frames.

    The model is saved as a checkpoint that both load (as ``flanet predict --checkpoint`` does, the segmenter
    owns its model). One untimed run of each (which also fills an exported backend's cache), then ``runs``
    pairs, alternating: ``predict_to_folder`` (timed whole: ``fps``, with start-up; and from its first frame
    to its last write, the ``fps_achieved`` of its summary: ``streaming_fps``) and the model-only stream of
    the decoded frames (already in memory) through a segmenter built once (``model_only_fps``).
    ``x_model_only``: the median over pairs of ``streaming_fps / model_only_fps`` (issue 28: >= 0.85).
    """
    from flanet.data.video_io import iter_video_frames
    from flanet.inference.core.segmenter import VideoSegmenter
    from flanet.inference.core.settings import SegmenterSettings
    from flanet.inference.runs.predict import predict_to_folder
    from flanet.models.checkpoint import save_checkpoint

    size_wh = tuple(config.get("video_size") or (1920, 1080))
    count = config.get("video_frames") or config["frames"]
    settings = SegmenterSettings(image_size=config["image_size"], device=config["device"], backend=config["backend"],
                                 frames_in_flight=config.get("frames_in_flight", 1))
    with tempfile.TemporaryDirectory(prefix="flanet-bench-") as folder:
        video = write_test_video(Path(folder) / "scan.mp4", count, size_wh)
        checkpoint = save_checkpoint(Path(folder) / "model.pt", model, {"image_size": config["image_size"]})
        decoded = list(iter_video_frames(video))
        segmenter = VideoSegmenter.from_checkpoint(checkpoint, settings)
        walls, streaming, model_only = [], [], []
        for run in range(max(1, config["warmup"]) + config["runs"]):
            start = time.perf_counter()
            out = predict_to_folder(checkpoint, video, Path(folder) / "out", force=True, progress=False,
                                    settings=settings)
            wall = time.perf_counter() - start
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            start = time.perf_counter()
            for _ in segmenter.stream(decoded):
                pass
            alone = time.perf_counter() - start
            if run >= max(1, config["warmup"]):
                walls.append(wall)
                streaming.append(summary["fps_achieved"])
                model_only.append(count / alone)
    median = statistics.median(walls)
    return {"fps": count / median, "ms_per_frame": 1000 * median / count, "run_seconds": walls,
            "video_size": list(size_wh), "video_frames": count, "streaming_fps": statistics.median(streaming),
            "model_only_fps": statistics.median(model_only), "rounds_pairs": [list(p) for p in zip(streaming, model_only)],
            "x_model_only": statistics.median(a / b for a, b in zip(streaming, model_only))}


def authors_fps(replica: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Output frames/s of the authors' architecture: ``model(clip)`` per frame, batch 1."""
    spec = importlib.util.spec_from_file_location("authors_model_replica", replica)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{replica}: cannot load the authors' model replica")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    device, size = torch.device(config["device"]), config["image_size"]
    model = module.AuthorsFLANetReplica().to(device).eval()
    clip = torch.randn(1, 3, 3, size, size, device=device)
    seconds = []
    with torch.inference_mode():
        for run in range(config["warmup"] + config["runs"]):
            start = time.perf_counter()
            for _ in range(config["frames"]):
                model(clip)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if run >= config["warmup"]:
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"fps": config["frames"] / median, "ms_per_frame": 1000 * median / config["frames"], "run_seconds": seconds}


def decode_share(segmenter: Any, frames: list[np.ndarray], repeats: int = 5) -> dict[str, float]:
    """Median ms of one fusion + decoders call and of one whole streamed frame, and their ratio.

    One frame at a time, the decode is timed alone on cached features and the frame is the median
    streamed frame. With N frames in flight (an exported backend's runner), the decodes are timed inside
    the stream, where another worker runs beside each of them, and the frame is the elapsed time over the
    frames, since they finish in bursts (two at once, then none); the share is a worker's: one decode over
    N frame intervals.
    """
    from flanet.data import to_model_input
    from flanet.models.windows import CausalWindows, frame_features

    in_flight, runner = segmenter.frames_in_flight, segmenter.runner
    decode, frame, in_stream = [], [], []
    with torch.inference_mode():
        if in_flight == 1:
            images = [to_model_input(f, segmenter.image_size).to(segmenter.device, segmenter.input_dtype)[None]
                      .contiguous(memory_format=segmenter.memory_format) for f in frames[: segmenter.num_frames]]
            windows = CausalWindows(segmenter.num_frames)
            for image in images:  # the window of the last of these frames: num_frames distinct frames
                window = frame_features(windows.push(runner.per_frame_state(image)))
            for _ in range(repeats):
                start = time.perf_counter()
                runner.predict(window)
                if segmenter.device.type == "cuda":
                    torch.cuda.synchronize(segmenter.device)
                decode.append(time.perf_counter() - start)
        else:  # the workers call runner.predict: time each call where it runs
            predict = runner.predict

            def timed(states: Any) -> Any:
                start = time.perf_counter()
                outputs = predict(states)
                in_stream.append(time.perf_counter() - start)
                return outputs

            runner.predict = timed
        try:
            stream = segmenter.stream(frames[i % len(frames)] for i in range(repeats + 2 * in_flight))
            for _ in range(in_flight):  # untimed: the first frames in flight start together, later ones staggered
                next(stream)
            started = time.perf_counter()
            for _ in range(repeats):
                start = time.perf_counter()
                next(stream)
                frame.append(time.perf_counter() - start)
            elapsed = time.perf_counter() - started
            stream.close()
        finally:
            if in_flight > 1:
                del runner.predict  # the class's method again
    frame_s = statistics.median(frame) if in_flight == 1 else elapsed / repeats
    decode_s = statistics.median(decode if in_flight == 1 else in_stream[in_flight:])
    decode_ms, frame_ms = 1000 * decode_s, 1000 * frame_s
    return {"decode_ms": decode_ms, "frame_ms": frame_ms, "decode_share": decode_ms / (frame_ms * in_flight)}
