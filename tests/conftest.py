"""Shared test settings (deterministic seeds, no network) and the builders tests share: frames, videos and
the tiny checkpoints."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights in tests

FrameFactory = Callable[..., list[np.ndarray]]
VideoWriter = Callable[..., Path]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _disc_frames(count: int, height: int = 64, width: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Smooth RGB frames with a bright disc moving right by 5 px a frame (compresses well, like a scan)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 30 + rng.integers(0, 20), np.uint8)
        cv2.circle(frame, (20 + 5 * i, height // 2), 10, (200, 190, 180), -1)
        frames.append(frame)
    return frames


def _noise_frames(count: int, height: int = 48, width: int = 80, seed: int = 0) -> list[np.ndarray]:
    """Uniform-noise RGB frames (every pixel independent: nothing for a model to get right by luck)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _solid_frames(values: list[int], height: int = 16, width: int = 24) -> list[np.ndarray]:
    """Black RGB frames whose red channel is each of ``values`` (tells frames apart after lossy coding)."""
    frames = [np.zeros((height, width, 3), np.uint8) for _ in values]
    for frame, value in zip(frames, values):
        frame[..., 0] = value
    return frames


def _write_video(
    path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "mp4v", color: bool = True
) -> Path:
    """Write RGB ``frames`` as a video file (``color=False``: their first channel, grey)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), color)
    assert writer.isOpened(), f"OpenCV cannot write {path.name} with {fourcc}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if color else frame[:, :, 0])
    writer.release()
    return path


@pytest.fixture(scope="session")
def disc_frames() -> FrameFactory:
    """``disc_frames(count, height=64, width=96, seed=0)``: frames with a moving bright disc."""
    return _disc_frames


@pytest.fixture(scope="session")
def noise_frames() -> FrameFactory:
    """``noise_frames(count, height=48, width=80, seed=0)``: uniform-noise frames."""
    return _noise_frames


@pytest.fixture(scope="session")
def solid_frames() -> FrameFactory:
    """``solid_frames(values, height=16, width=24)``: black frames with the red channel set per frame."""
    return _solid_frames


@pytest.fixture(scope="session")
def write_video() -> VideoWriter:
    """``write_video(path, frames, fps=10.0, fourcc="mp4v", color=True)``: RGB frames to a video file."""
    return _write_video


def _save_flanet(path: Path, seed: int = 0, **options: object) -> Path:
    """A FLA-Net of random weights (seeded), saved as a checkpoint trained at image size 64.

    Its mask head keeps PyTorch's default initialisation (``mask_prior=None``: p near 0.5), so that
    random weights draw lesions and the tests exercise every output a lesion produces; a trained
    model's head starts at the lesion prior instead (``FLANetOptions.mask_prior``).
    """
    from flanet.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    options = {"mask_prior": None, **options}
    return save_checkpoint(path, create_model("flanet", **options), {"image_size": 64})


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FLA-Net checkpoint (ResNet-18 encoder, random weights, seed 0) made for image size 64."""
    return _save_flanet(tmp_path_factory.mktemp("ckpt") / "model.pt", encoder="resnet18")


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest FLA-Net checkpoint (MobileNetV3-small encoder, narrow neck and decoder; image size 64):
    quick to load in CLI and subprocess tests."""
    return _save_flanet(tmp_path_factory.mktemp("small-ckpt") / "model.pt", encoder="mobilenetv3_small_100",
                        neck_channels=[16, 24, 48, 96], decoder_channels=[64, 32, 24, 16], head_channels=16)
