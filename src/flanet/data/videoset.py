"""The in-memory description of a video data set: :class:`Video` (the one frame reader) and :class:`VideoSet`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from flanet.data.errors import DataError, Problem
from flanet.data.splits import split_alias

if TYPE_CHECKING:
    from flanet.data.dicom import DicomInfo
    from flanet.data.rle import EncodedMask
    from flanet.data.video_io import VideoFrameReader, VideoInfo

BBox = tuple[float, float, float, float]


def frame_name(names: Sequence[str] | None, index: int) -> str:
    """The one name of frame ``index`` (0-based) that people and files see: masks, CSV, overlay, viewer.

    The source's own frame name where it has one (a frame folder's file stem), else the 1-based frame
    number, six digits (``000001`` is the first frame of a video or DICOM file, as DICOM numbers its
    frames). The 0-based ``index`` stays in the CSV's ``frame`` column for programs.
    """
    return names[index] if names else f"{index + 1:06d}"


def check_unique_stems(frames: list[Path]) -> None:
    """Refuse frames whose names differ only in suffix (``f1.jpg``, ``f1.png``): outputs are named by stem.

    Masks, predictions and CSV rows are keyed by the frame's stem, so two such frames would
    overwrite each other's results (issue 22 item 6).

    Raises:
        DataError: naming both files.
    """
    seen: dict[tuple[Path, str], Path] = {}
    for frame in frames:
        key = (frame.parent, frame.stem)
        if key in seen:
            raise DataError(f"two frames share the name {frame.stem!r} ({seen[key].name} and {frame.name}): "
                            "their outputs would overwrite each other; rename or remove one", frame.parent)
        seen[key] = frame


@dataclass
class Video:
    """One video: its frames in natural order and the matching masks; the one reader of its frames.

    A video is a file (a container OpenCV decodes, or a DICOM cine) or a list of frame images; only this
    class tells them apart. Training, evaluation and ``flanet predict`` read frames through it
    (:meth:`iter_frames`, :meth:`read_frame`, :attr:`frame_names`) and what the source says about itself
    (frame rate, frame count, size, a DICOM's header) through :attr:`info`.

    Attributes:
        id: video id, unique in its set (e.g. ``"case12"`` or ``"TrainDataset/case1_1"``).
        frames: frame files in natural order; empty when the video is a file (``video_file``).
        masks: one entry per frame, ``None`` where the frame has no mask: a mask file, or an
            :class:`~flanet.data.rle.EncodedMask` held in an annotation file (``cvat``, ``coco``).
            For a video file it has one entry per decoded frame (mask files are matched by the
            frame number in their name).
        bboxes: per-frame ``(x1, y1, x2, y2)`` in original pixel coordinates from ``bbox.json`` or a
            COCO box file (``None`` for frames without a box), or ``None`` when the set has no boxes.
        video_file: the mp4/avi/dcm file the frames are decoded from (layouts ``video-files``, ``dicom``), else None.
        pixel_spacing: ``(row mm, column mm)`` of one pixel (DICOM PixelSpacing order) when the file carries a
            calibration (a DICOM cine: ultrasound region deltas, else PixelSpacing), else None.
        spacing_source: the attribute ``pixel_spacing`` came from (``"SequenceOfUltrasoundRegions"``,
            ``"PixelSpacing"``), else None.
        lesion_free: per frame, True where an annotation file says the frame shows no lesion without
            giving it a mask (a listed frame without a box in a COCO box file), or None when the
            layout cannot say so.
    """

    id: str
    frames: list[Path]
    masks: list[Path | EncodedMask | None]
    bboxes: list[BBox | None] | None = None
    video_file: Path | None = None
    pixel_spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    lesion_free: list[bool] | None = None
    _info: VideoInfo | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_unique_stems([Path(frame) for frame in self.frames])

    @classmethod
    def from_file(cls, path: Path, video_id: str | None = None) -> Video:
        """The video of a file (video container or DICOM cine), probed once: one ``None`` mask per frame it
        declares, a DICOM's calibration as ``pixel_spacing``.

        Raises:
            DataError: a missing, empty or unreadable file.
        """
        from flanet.data.video_io import probe_video

        info = probe_video(path)
        dicom = info.dicom
        spacing = None if dicom is None or dicom.spacing_mm is None else (dicom.spacing_mm[1], dicom.spacing_mm[0])
        return cls(video_id or path.stem, [], [None] * info.frame_count, video_file=path, pixel_spacing=spacing,
                   spacing_source=None if dicom is None else dicom.calibration_source, _info=info)

    @property
    def info(self) -> VideoInfo:
        """What the video says about itself (frame rate, frame count, size, a DICOM's header), read once.

        A frame list states no frame rate (0.0); its size is its first frame's.

        Raises:
            DataError: an unreadable file or first frame.
        """
        if self._info is None:
            from flanet.data.video_io import VideoInfo, probe_video

            if self.video_file is not None:
                self._info = probe_video(self.video_file)
            else:
                height, width = self.read_frame(0).shape[:2] if self.frames else (0, 0)
                self._info = VideoInfo(0.0, len(self.frames), width, height)
        return self._info

    @property
    def dicom(self) -> DicomInfo | None:
        """A DICOM cine's header (regions, calibration, burned-in text), None for any other video."""
        return self.info.dicom if self.video_file is not None else None

    @property
    def num_frames(self) -> int:
        """Number of frames (decoded frames for a video file)."""
        return len(self.masks) if self.video_file is not None else len(self.frames)

    @property
    def num_masks(self) -> int:
        """Number of frames that have a mask."""
        return sum(mask is not None for mask in self.masks)

    @property
    def frame_names(self) -> list[str]:
        """Each frame's name (:func:`frame_name`): its file's stem, or its 1-based number for decoded frames."""
        return [self.frame_name(index) for index in range(self.num_frames)]

    def frame_name(self, index: int) -> str:
        """The name of frame ``index`` (:func:`frame_name`): its file's stem, or its 1-based number for decoded frames."""
        return Path(self.frames[index]).stem if self.video_file is None else frame_name(None, index)

    def iter_frames(self, last: int | None = None) -> Iterator[np.ndarray]:
        """RGB uint8 frames ``0..last`` (every frame by default) in order, decoded one at a time.

        The one place that knows whether a video is a file (video or DICOM cine) or a list of frame images.

        Raises:
            DataError: an unreadable file or frame.
        """
        from flanet.data.images import read_image
        from flanet.data.video_io import iter_video_frames

        if self.video_file is None:
            yield from (read_image(path) for path in self.frames[: None if last is None else last + 1])
            return
        for index, frame in enumerate(iter_video_frames(self.video_file)):
            if last is not None and index > last:
                return
            yield frame

    def read_frame(self, index: int, reader: VideoFrameReader | None = None) -> np.ndarray:
        """Frame ``index`` as RGB uint8; ``reader`` keeps video files open across calls (random access).

        Raises:
            DataError: an unreadable file or frame.
        """
        from flanet.data.images import read_image
        from flanet.data.video_io import VideoFrameReader

        if self.video_file is None:
            return read_image(self.frames[index])
        return (reader or VideoFrameReader(max_open=1)).read(self.video_file, index)

    def box_only_frames(self) -> list[int]:
        """Indices of the frames that have a lesion box but no mask."""
        if self.bboxes is None:
            return []
        return [i for i, (mask, box) in enumerate(zip(self.masks, self.bboxes)) if mask is None and box is not None]

    def known_mask(self, index: int) -> bool:
        """Whether frame ``index``'s mask is known: it has one, or it is annotated lesion-free (empty mask)."""
        return self.masks[index] is not None or (self.lesion_free is not None and self.lesion_free[index])


class LayoutRead(NamedTuple):
    """What the reader of a layout found in a root (:data:`flanet.data.layouts.LAYOUTS`).

    Attributes:
        layout: the layout's name (``VideoSet.layout``).
        videos: the videos; sorted by id in natural order unless ``keep_order``.
        splits: video ids per split that the layout's folders or files give (split lists take precedence).
        split_files: the file or folder each of those splits was read from.
        keep_order: the reader's order is the set's (split folders one after the other).
    """

    layout: str
    videos: list[Video]
    splits: dict[str, list[str]] | None = None
    split_files: dict[str, Path] | None = None
    keep_order: bool = False


@dataclass
class VideoSet:
    """A data set of videos found on disk by :func:`flanet.data.discover`.

    Attributes:
        root: the folder that was read.
        layout: ``"authors"``, ``"buv2022"``, ``"cvat"``, ``"coco"``, ``"cva-net"``, ``"vtus"``,
            ``"video-polyp"``, ``"video-files"``, ``"dicom"``, ``"frame-folders"`` or ``"mixed"`` (video or
            DICOM files beside frame folders: every one is read).
        videos: the videos, in natural order of their ids.
        splits: video ids per split name (e.g. ``"train"``, ``"val"``, ``"test"``); may be empty.
        labels: video-level labels per video id, e.g. ``{"case1": {"pathology": "benign"}}``; may be empty.
        notes: findings made while reading the layout (ignored stray files, unmatched masks...).
        split_files: the file or folder each split was read from (for error messages).
    """

    root: Path
    layout: str
    videos: list[Video]
    splits: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[Problem] = field(default_factory=list)
    split_files: dict[str, Path] = field(default_factory=dict)

    @property
    def box_only(self) -> bool:
        """True when the set has boxes but no mask at all (e.g. CVA-Net's detection set)."""
        return _box_only(self.videos)

    def is_box_only(self, split: str | None) -> bool:
        """True when the split (every video for None) has lesion boxes but no mask: scored as detection only."""
        return _box_only(self.subset(split))

    def ensure_masks(self, split: str | None, use: str = "scoring lesion masks (Dice, IoU, ...)") -> None:
        """Refuse a use that needs masks on a split that has boxes but no masks.

        Args:
            split: the split, or None for every video.
            use: what needs the masks, for the message.

        Raises:
            DataError: for a box-only split (its frames have no mask to learn or score).
        """
        if _box_only(self.subset(split)):
            where = f"split {split!r}" if split else "the data set"
            raise DataError(
                f"{where} has lesion boxes but no masks (box-only, layout {self.layout}): {use} needs masks; "
                "boxes train only the heatmap (localisation) branch of flanet, flanet-lb and flanet-ffa-lb, "
                "and `flanet predict` segments such a set (docs/data.md, box-only sets)",
                self.root,
            )

    def video(self, video_id: str) -> Video:
        """The video with this id.

        Raises:
            DataError: when no video has this id.
        """
        for video in self.videos:
            if video.id == video_id:
                return video
        raise DataError(f"no video with id {video_id!r}", self.root)

    def subset(self, split: str | None) -> list[Video]:
        """Videos of one split (list order), or all videos when ``split`` is None.

        Raises:
            DataError: for an unknown split, a split list naming a video that does not exist, or a
                split sharing videos with another split (training on test videos, or scoring on
                training videos, would give a wrong answer without any other sign).
        """
        if split is None:
            return list(self.videos)
        if split not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none (no split lists found)"
            raise DataError(f"no split {split!r}; splits found: {known}", self.root)
        by_id = {video.id: video for video in self.videos}
        source = self.split_files.get(split, self.root)
        missing = [video_id for video_id in self.splits[split] if video_id not in by_id]
        if missing:
            raise DataError(
                f"split {split!r} names {len(missing)} video(s) that do not exist: "
                + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
                source,
            )
        for other, ids in self.splits.items():
            # a split and its alias (``Train`` and ``train``, ``imagenet_vid_val`` and ``val``) are one split
            same = other == split or split_alias(other) == split or split_alias(split) == other
            elsewhere = set() if same else set(ids)
            if shared := [video_id for video_id in self.splits[split] if video_id in elsewhere]:
                raise DataError(
                    f"split {split!r} shares {len(shared)} video(s) with split {other!r} "
                    f"({self.split_files.get(other, self.root)}): " + ", ".join(shared[:10])
                    + (" ..." if len(shared) > 10 else "") + "; a video may be in one split only",
                    source,
                )
        return [by_id[video_id] for video_id in self.splits[split]]


def _box_only(videos: list[Video]) -> bool:
    return all(video.num_masks == 0 for video in videos) and any(
        video.bboxes is not None and any(box is not None for box in video.bboxes) for video in videos
    )
