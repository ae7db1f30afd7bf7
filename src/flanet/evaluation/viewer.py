"""``viewer.html``: one self-contained page to play, scrub and inspect predicted videos.

Written by ``flanet evaluate`` (:class:`ViewerCollector`, fed during scoring: frames with ground
truth, value = Dice) and ``flanet predict`` (:meth:`ViewerCollector.add_streamed`, fed while the
video streams: value = predicted lesion area; then :func:`write_prediction_viewer`). Frames keep
their source resolution up to :data:`MAX_SIDE` px (the page's stage is 512 px wide, so a frame is
never stretched past its pixels unless the source is smaller) and are stored as JPEG; ground truth,
prediction and heatmap are transparent PNG overlays at the same size in the one colour convention
of :mod:`flanet.colours`; everything is embedded as base64, so the page works offline from disk.

Size limits: at most ``max_frames`` (default :data:`MAX_FRAMES`) frames and ``max_bytes`` (default
:data:`MAX_BYTES`) of images in all; longer inputs keep every k-th frame (``k = ceil(frames /
max_frames)`` when the frame count is known in advance, and k doubles whenever the page would grow
past either limit; stated in the page). Bytes per frame with its overlays, measured (2026-12-07):
8 kB for pydicom's 320x240 ultrasound cine, 72 kB for a speckled 800x600 synthetic frame and 103 kB
for a 512x512 one at 512 px (15-20 kB at the former 192 px), so the byte limit keeps 600-900 such
frames, and 2000 frames of a smooth cine.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flanet import colours
from flanet.evaluation.viewer_page import render_page
from flanet.fileio import atomic_write_text

MAX_SIDE = 512
MAX_FRAMES = 2000
MAX_BYTES = 64 * 2**20
WORST_COUNT = 10
JPEG_QUALITY = 80


@dataclass(frozen=True)
class FrameImages:
    """The page's images of one frame, as data URIs: prediction and truth overlays, heatmap, the frame itself."""

    pred: str
    gt: str | None
    heat: str | None
    img: str | None


@dataclass
class _Frame:
    name: str
    index: int
    value: float | None
    pred: str
    gt: str | None
    heat: str | None
    position: int  # among every frame offered to the collector (for the stride)
    img: str | None = None  # the frame's JPEG, when it was given with the overlays
    attention: float | None = None  # the diagnosis head's attention weight of the frame (flanet predict)

    @property
    def size(self) -> int:
        """Bytes of its images in the page (the JPEG once it is known)."""
        return sum(len(part) for part in (self.pred, self.gt, self.heat, self.img) if part)


def _uri(image: np.ndarray, ext: str = ".png") -> str:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {ext} viewer image")
    mime = "image/jpeg" if ext == ".jpg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data.tobytes()).decode("ascii")


def viewer_size(height: int, width: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(w, h) of a frame in the viewer: at most ``max_side`` on the longer side, never enlarged."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_overlay(mask: np.ndarray, rgb: tuple[int, int, int], size: tuple[int, int]) -> str:
    """PNG data URI: the mask's contour (opaque) and a light fill in ``rgb`` on transparent, at ``size`` (w, h)."""
    small = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 127
    canvas = np.zeros((size[1], size[0], 4), np.uint8)
    canvas[small] = (*colours.bgr(rgb), 60)
    contours, _ = cv2.findContours(small.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, (*colours.bgr(rgb), 255), 1)
    return _uri(canvas)


def heat_overlay(heat: np.ndarray, size: tuple[int, int]) -> str:
    """PNG data URI of a uint8 heatmap: the heatmap colour with opacity ``0.7 h``.

    The heatmap is smooth (a Gaussian), so it is stored at half of ``size`` (w, h) with the opacity
    in 16 levels (a few kB instead of about 15); the page scales it up smoothly.
    """
    half = (max(1, size[0] // 2), max(1, size[1] // 2))
    small = cv2.resize(heat, half, interpolation=cv2.INTER_AREA).astype(np.float32)
    canvas = np.zeros((half[1], half[0], 4), np.uint8)
    canvas[..., :3] = colours.bgr(colours.HEATMAP_RGB)
    canvas[..., 3] = ((small * 0.7) // 16 * 16).astype(np.uint8)
    return _uri(canvas)


def frame_jpeg(rgb: np.ndarray, max_side: int = MAX_SIDE) -> str:
    """JPEG data URI of an RGB frame downscaled to at most ``max_side`` px (:func:`viewer_size`)."""
    size = viewer_size(*rgb.shape[:2], max_side)
    # resized first, then the channels swapped: the same pixels (channels resize independently), less work
    return _uri(cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR), ".jpg")


class ViewerCollector:
    """Keeps compact overlays of the frames a run predicts, then writes ``viewer.html``.

    Args:
        total_frames: frames that will be offered (sets the stride), None when unknown (the stride
            then doubles whenever more than ``max_frames`` are kept).
        max_frames: size limit of the page (frames in all).
        max_side: longest side of a frame in the page.
        max_bytes: size limit of the page's images (bytes in all); past it the stride doubles.
    """

    def __init__(self, total_frames: int | None, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE,
                 max_bytes: int = MAX_BYTES) -> None:
        self.stride = max(1, math.ceil(total_frames / max_frames)) if total_frames else 1
        self.max_side = max_side
        self.videos: dict[str, list[_Frame]] = {}
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._seen = 0
        self._count = 0

    def kept(self, count: int) -> np.ndarray:
        """Positions (of the next ``count`` frames) that the page keeps: every ``stride``-th frame."""
        positions = np.flatnonzero((self._seen + np.arange(count)) % self.stride == 0)
        self._seen += count
        return positions

    def add_frame(
        self, video: str, name: str, index: int, value: float | None, pred: np.ndarray,
        gt: np.ndarray | None = None, heatmap: np.ndarray | None = None, rgb: np.ndarray | None = None,
        position: int | None = None,
    ) -> None:
        """Add one kept frame: ``pred`` / ``gt`` (H, W) bool, ``heatmap`` uint8 (any size), ``rgb`` the frame.

        Without ``rgb`` the frame is read at :meth:`write` time. ``position``: the frame's place
        among all offered frames (default: the last one offered).
        """
        self._add(video, name, index, value, self.draw(pred, gt, heatmap, rgb), position)

    def draw(self, pred: np.ndarray, gt: np.ndarray | None = None, heatmap: np.ndarray | None = None,
             rgb: np.ndarray | None = None) -> FrameImages:
        """The page's images of one frame (thread-safe: nothing of the collector changes)."""
        size = viewer_size(*pred.shape, self.max_side)
        return FrameImages(
            mask_overlay(pred, colours.PREDICTION_RGB, size),
            None if gt is None else mask_overlay(gt, colours.TRUTH_RGB, size),
            None if heatmap is None else heat_overlay(heatmap, size),
            None if rgb is None else frame_jpeg(rgb, self.max_side),
        )

    def _add(self, video: str, name: str, index: int, value: float | None, images: FrameImages,
             position: int | None) -> None:
        self.videos.setdefault(video, []).append(_Frame(
            str(name), int(index), value, images.pred, images.gt, images.heat,
            self._seen - 1 if position is None else position, images.img,
        ))
        self._count += 1
        while self._count > self.max_frames or self._bytes() > self.max_bytes:
            self._thin()  # more frames or bytes than the page holds: keep every other kept frame

    def _bytes(self) -> int:
        return sum(frame.size for frames in self.videos.values() for frame in frames)

    def _thin(self) -> None:
        """Double the stride and drop the kept frames off it (the first frame always stays)."""
        self.stride *= 2
        for key, frames in self.videos.items():
            self.videos[key] = [f for f in frames if f.position % self.stride == 0]
        self._count = sum(len(frames) for frames in self.videos.values())

    def add_streamed(
        self, video: str, name: str, index: int, value: float, pred: np.ndarray,
        heatmap: np.ndarray | None, rgb: np.ndarray, images: FrameImages | None = None,
    ) -> None:
        """Offer one frame of a stream (``flanet predict``); it is kept on the stride.

        Args:
            video / name / index: video id, frame name and index in the video.
            value: the plotted value (predicted lesion area).
            pred: (H, W) bool mask; ``heatmap``: (H, W) float heatmap at the frame's size, or None.
            rgb: (H, W, 3) uint8 frame.
            images: the frame's images drawn ahead by :meth:`draw_streamed` (in a worker), if any.
        """
        if not self.kept(1).size:
            return
        self._add(video, name, index, value, images or self.draw_streamed(pred, heatmap, rgb), None)

    def draw_streamed(self, pred: np.ndarray, heatmap: np.ndarray | None, rgb: np.ndarray) -> FrameImages:
        """:meth:`add_streamed`'s images of one frame, drawn ahead (thread-safe)."""
        heat = None
        if heatmap is not None:  # round(clip(h, 0, 1) * 255) as uint8, in place on one copy
            scaled = np.clip(heatmap, 0, 1)
            scaled *= 255
            heat = np.rint(scaled, out=scaled).astype(np.uint8)
        return self.draw(pred, heatmap=heat, rgb=rgb)

    def may_keep(self, position: int) -> bool:
        """Whether the frame offered at ``position`` (0-based, among all offered) can still be kept.

        False is final (the stride only doubles); True may become False by the time it is offered.
        """
        return position % self.stride == 0

    @property
    def offered(self) -> int:
        """Frames offered so far (the position of the next one)."""
        return self._seen

    def add(
        self, video: str, names: Sequence[str], indices: Sequence[int], prob: np.ndarray,
        gt: np.ndarray | None = None, heatmap: np.ndarray | None = None,
    ) -> None:
        """Add consecutive frames: ``prob`` (N, H, W) uint8, ``gt`` (N, H, W) bool, ``heatmap`` (N, S, S) uint8."""
        first = self._seen
        for i in self.kept(len(names)):  # per kept frame: one small PNG per overlay
            self.add_frame(video, names[i], indices[i], None, prob[i] > 127,
                           None if gt is None else gt[i], None if heatmap is None else heatmap[i], position=first + int(i))

    def set_attention(self, video: str, weights: dict[int, float]) -> None:
        """The diagnosis head's attention weight of each frame of ``video`` by frame index (the plot's second curve)."""
        for frame in self.videos.get(video, []):
            frame.attention = weights.get(frame.index)

    def set_values(self, values: dict[tuple[str, str], float]) -> None:
        """Per-frame values (e.g. Dice) by ``(video, frame name)``, known after scoring."""
        for video, frames in self.videos.items():
            for frame in frames:
                frame.value = values.get((video, frame.name), frame.value)

    def write(
        self, path: Path, read_rgb: Callable[[str, int], np.ndarray] | None, title: str, value_name: str,
        worst: str = "lowest", note: str = "",
    ) -> Path:
        """Write the page; ``read_rgb(video, frame index)`` returns the RGB frames not given to :meth:`add_frame`.

        ``worst``: ``lowest`` lists each video's frames of lowest value (Dice), ``jumps`` those with
        the largest change of value from the previous frame (lesion area without ground truth).
        """
        for video, frames in self.videos.items():
            for frame in frames:
                if frame.img is None and read_rgb is None:
                    raise ValueError(f"{video} / {frame.name}: no frame image and no reader for the viewer")
                if frame.img is None:
                    frame.img = frame_jpeg(read_rgb(video, frame.index), self.max_side)  # type: ignore[misc]
        while self._bytes() > self.max_bytes and self._count > 1:
            self._thin()
        videos = []
        for video, frames in self.videos.items():
            entries = [{"name": f.name, "index": f.index, "value": f.value, "img": f.img, "gt": f.gt,
                        "pred": f.pred, "heat": f.heat, "attention": f.attention} for f in frames]
            videos.append({"id": video, "value_name": value_name, "frames": entries, "worst_rule": worst,
                           "worst": worst_positions([f.value for f in frames], worst)})
        sampled = (f" Every {self.stride}th frame is shown (size limit {self.max_frames} frames, "
                   f"{self.max_bytes / 2**20:g} MiB of images)." if self.stride > 1 else "")
        frames = [frame for frames in self.videos.values() for frame in frames]
        layers = {"gt": any(f.gt for f in frames), "pred": True, "heat": any(f.heat for f in frames)}
        data = {"title": title, "note": note + sampled + " Keys: space plays/pauses, arrows step.",
                "layers": layers, "videos": videos}
        payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        worst_title = ("Worst frames (lowest " + value_name + ")" if worst == "lowest"
                       else "Largest changes of " + value_name + " from the previous frame")
        page = render_page(payload, colours.hex_colour(colours.TRUTH_RGB), colours.hex_colour(colours.PREDICTION_RGB),
                           colours.hex_colour(colours.HEATMAP_RGB), worst_title)
        atomic_write_text(path, page)
        return path


def worst_positions(values: Sequence[float | None], rule: str = "lowest", count: int = WORST_COUNT) -> list[int]:
    """Positions of the ``count`` worst frames: lowest value, or largest jump from the previous frame."""
    array = np.array([np.nan if v is None else v for v in values], float)
    if rule == "jumps":
        array = -np.abs(np.diff(array, prepend=array[:1]))
    order = np.argsort(np.where(np.isfinite(array), array, np.inf), kind="stable")
    return [int(i) for i in order[: min(count, len(order))]]


def write_prediction_viewer(out: Path, collector: ViewerCollector, videos: Sequence[dict[str, Any]]) -> Path:
    """``viewer.html`` of a ``flanet predict`` output folder, from the frames streamed into ``collector``.

    Args:
        out: the output folder (``viewer.html`` is written there).
        collector: fed with :meth:`ViewerCollector.add_streamed` while the videos were segmented.
        videos: their summary entries (for the title).
    """
    return collector.write(
        out / "viewer.html", None, "flanet predict: " + ", ".join(v["video"] for v in videos), "lesion area (px)",
        worst="jumps", note="Prediction: the binary mask written to masks/; heatmap: the localisation heatmap h "
                            "(opacity 0.7 h; models without one have none). Values: predicted lesion area."
                            + diagnosis_note(videos),
    )


def diagnosis_note(videos: Sequence[dict[str, Any]]) -> str:
    """The viewer's line per diagnosed video: each label's probability and the frames whose attention weighed most."""
    lines = []
    for video in videos:
        found = video.get("diagnosis")
        if not found:
            continue
        labels = ", ".join(f"{label} {entry['probability']:.2f}" for label, entry in found["labels"].items())
        top = ", ".join(f"{t['frame']} ({t['weight']:.2f})" for t in found["top_frames"])
        lines.append(f" Diagnosis of {video['video']}: {labels}; frames that weighed most (0-based index, "
                     f"attention): {top}; the plot's purple curve is the attention of every frame.")
    return "".join(lines)
