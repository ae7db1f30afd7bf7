"""Workers of ``flanet bench`` beyond model-only throughput: end to end, authors' model, decode share.

* ``end-to-end``: ``predict_to_folder`` on a synthetic mp4 (``frames`` frames of
  ``video_size`` WxH): decoding, preprocessing, the model, resizing/thresholding, masks,
  overlay video and CSV, i.e. what ``flanet predict`` does; frames / median(run seconds), after
  an untimed warm-up run (which also fills the ONNX export cache);
* ``authors``: the authors' architecture (compute replica, ``benchmarks/authors_model_replica.py``),
  one ``model(clip)`` per output frame as their code evaluates a video;
* :func:`decode_share`: time of the fusion + decoders (one ``decode`` of cached features) over
  the time of a whole streamed frame (issue 15: <= 15 %); with N frames in flight, over the time
  one worker spends on its frame (N frame intervals), since each decode then runs on a worker's
  share of the threads.
"""

from __future__ import annotations

import importlib.util
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
    """Frames/s of ``predict_to_folder`` on a synthetic video; one untimed run first."""
    from flanet.inference.runs.predict import predict_to_folder

    size_wh = tuple(config.get("video_size", (640, 480)))
    with tempfile.TemporaryDirectory(prefix="flanet-bench-") as folder:
        video = write_test_video(Path(folder) / "scan.mp4", config["frames"], size_wh)
        seconds = []
        for run in range(max(1, config["warmup"]) + config["runs"]):
            start = time.perf_counter()
            predict_to_folder(model, video, Path(folder) / "out", force=True, image_size=config["image_size"],
                              device=config["device"], progress=False, backend=config["backend"],
                              compile=config.get("compile", False) if config["backend"] == "pytorch" else False)
            if run >= max(1, config["warmup"]):
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"fps": config["frames"] / median, "ms_per_frame": 1000 * median / config["frames"],
            "run_seconds": seconds, "video_size": list(size_wh)}


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
    from flanet.models.windows import CausalWindows

    in_flight, runner = segmenter.frames_in_flight, segmenter.runner
    decode, frame, in_stream = [], [], []
    with torch.inference_mode():
        if in_flight == 1:
            images = [to_model_input(f, segmenter.image_size).to(segmenter.device, segmenter.input_dtype)[None]
                      .contiguous(memory_format=segmenter.memory_format) for f in frames[: segmenter.num_frames]]
            windows = CausalWindows(segmenter.num_frames)
            for image in images:  # the window of the last of these frames: num_frames distinct frames
                window = windows.push(segmenter._per_frame_state(image))
            for _ in range(repeats):
                start = time.perf_counter()
                segmenter._predict(window)
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
