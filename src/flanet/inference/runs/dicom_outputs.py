"""``flanet predict --dicom-out seg sr``: a cine's results as DICOM objects a PACS stores and a viewer overlays.

Per DICOM cine, beside the masks, overlay, CSV and summary::

    <video>/dicom/seg.dcm   DICOM Segmentation of the lesion (flanet.inference.runs.dicom_seg)
    <video>/dicom/sr.dcm    TID 1500 Comprehensive 3D SR: largest area and diameter (flanet.inference.runs.dicom_sr)

``sr`` implies ``seg``: its measurements name the SEG frames they are measured on. Whose study the
objects belong to is the :class:`~flanet.data.dicom_identity.DicomIdentity` mode (``--dicom-identity``),
recorded in each object (``PatientIdentityRemoved``, ``DeidentificationMethod``, the series description)
and in ``summary.json``. A cine without a lesion in any frame gets no SEG (a SEG holds at least one frame)
and an SR without measurement groups; ``summary.json`` says so. Files are written atomically, after the
cine has been segmented, so a ``dicom/`` file is always complete.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from flanet.data import DataError
from flanet.data.dicom import read_dicom
from flanet.data.dicom_identity import PROFILE, DicomIdentity
from flanet.fileio import atomic_path, file_sha256
from flanet.inference.core.segmenter import FrameResult, VideoSegmenter
from flanet.inference.runs.dicom_seg import Algorithm, build_segmentation, fractional_levels, mask_level
from flanet.inference.runs.dicom_sr import Largest, build_measurement_report
from flanet.inference.runs.sources import VideoSource

__all__ = ["DICOM_OUTPUT_KINDS", "SEG_TYPES", "DicomOutputs", "DicomResultCollector", "run_algorithm"]

log = logging.getLogger(__name__)

DICOM_OUTPUT_KINDS = ("seg", "sr")
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
SEG_TYPES = ("binary", "fractional")


@dataclass(frozen=True)
class DicomOutputs:
    """Which DICOM objects to write (``kinds``: any of ``seg``, ``sr``), the SEG's type and the identity rule."""

    kinds: tuple[str, ...] = ()
    seg_type: str = "binary"
    identity: DicomIdentity = field(default_factory=DicomIdentity)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(DICOM_OUTPUT_KINDS)
        if unknown or self.seg_type not in SEG_TYPES:
            raise ValueError(f"unknown DICOM output {sorted(unknown) or self.seg_type}: choose from "
                             f"{', '.join(DICOM_OUTPUT_KINDS)} and a SEG type of {', '.join(SEG_TYPES)}")

    @property
    def wanted(self) -> bool:
        return bool(self.kinds)

    @property
    def fractional(self) -> bool:
        return self.seg_type == "fractional"


def run_algorithm(segmenter: VideoSegmenter, checkpoint: str | Path | None) -> Algorithm:
    """The :class:`Algorithm` a run's DICOM objects name: model, encoder, checkpoint SHA-256, threshold, size."""
    config = segmenter.model.config or {}
    path = Path(checkpoint) if checkpoint is not None else None
    return Algorithm(
        model=str(config.get("name", type(segmenter.model).__name__)),
        encoder=(config.get("options") or {}).get("encoder"),
        checkpoint_sha256=file_sha256(path) if path is not None and path.is_file() else None,
        threshold=float(segmenter.threshold), image_size=int(segmenter.image_size))


def _save(ds: Dataset, path: Path) -> None:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


class DicomResultCollector:
    """Keeps a cine's lesion frames while it is segmented, then writes its SEG and SR."""

    def __init__(self, outputs: DicomOutputs, source: VideoSource, threshold: float) -> None:
        if source.dicom is None:
            raise ValueError(f"{source.location}: --dicom-out needs a DICOM cine input (the SEG references its frames)")
        source_header = read_dicom(source.location)[0]
        missing = [k for k in _REQUIRED if not str(source_header.get(k, "") or "").strip()]
        if missing:
            raise DataError(f"no {', '.join(missing)}: a DICOM result must reference its study, series and "
                            "instance", source.location)
        self.outputs = outputs
        self.source = source
        self.header = outputs.identity.header(source_header)  # what the SEG and SR are built from
        self.level = mask_level(threshold)
        self.frames: list[tuple[int, np.ndarray]] = []

    def add(self, result: FrameResult) -> None:
        """Keep one full-frame prediction's mask (or fractional levels) when it has a lesion."""
        mask = result.mask
        if not mask.any():
            return
        values = fractional_levels(result.probability, mask, self.level) if self.outputs.fractional else mask.copy()
        self.frames.append((result.index + 1, values))  # DICOM numbers frames from 1

    def _largest(self, video: dict[str, Any]) -> list[Largest]:
        unit = str(video["measurement_unit"])
        found = []
        for kind, key, suffix in (("area", f"largest_area_{unit}2", "2"), ("diameter", f"largest_max_diameter_{unit}", "")):
            if video.get(key) is not None:
                found.append(Largest(kind, float(video[key]), f"{unit}{suffix}", int(video[f"{key}_frame"]) + 1))
        return found

    def write(self, video_dir: Path, video: dict[str, Any], algorithm: Algorithm) -> dict[str, Any]:
        """See :meth:`_write`; highdicom's warning about a source's one-part patient name (the scanner's) is not repeated."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
            return self._write(video_dir, video, algorithm)

    def _write(self, video_dir: Path, video: dict[str, Any], algorithm: Algorithm) -> dict[str, Any]:
        """Write ``dicom/seg.dcm`` and ``dicom/sr.dcm`` for the video whose summary entry is ``video``.

        Returns:
            The video's ``dicom_outputs`` entry for ``summary.json`` (files, UIDs of the new objects, identity).
        """
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # its INFO lines narrate every module it copies
        identity = self.outputs.identity
        header = self.header
        entry: dict[str, Any] = {"identity": identity.mode, "deidentification": PROFILE if identity.deidentify else None,
                                 "study_instance_uid": str(header.get("StudyInstanceUID", "")) if identity.deidentify
                                 else "the source's (not repeated here)", "seg": None, "sr": None}
        seg = None
        if self.frames:
            seg = build_segmentation(
                header, self.frames, algorithm=algorithm, fractional=self.outputs.fractional,
                series_uid=generate_uid(), sop_uid=generate_uid(),
                series_description=f"flanet lesion segmentation (identity: {identity.mode})")
            identity.stamp(seg)
            _save(seg, video_dir / "dicom" / "seg.dcm")
            entry["seg"] = {"file": "dicom/seg.dcm", "type": str(seg.SegmentationType), "frames": len(self.frames),
                            "series_instance_uid": str(seg.SeriesInstanceUID), "sop_instance_uid": str(seg.SOPInstanceUID),
                            "tracking_uid": str(seg.SegmentSequence[0].TrackingUID)}
        else:
            entry["seg_note"] = "no frame with a lesion: no SEG written (a DICOM Segmentation holds at least one frame)"
            log.warning("%s: no frame with a lesion, no SEG written", self.source.id)
        if "sr" in self.outputs.kinds:
            largest = self._largest(video) if seg is not None else []
            sr = build_measurement_report(
                header, seg, largest, algorithm=algorithm, series_uid=generate_uid(), sop_uid=generate_uid(),
                series_description=f"flanet lesion measurements (identity: {identity.mode})")
            identity.stamp(sr)
            _save(sr, video_dir / "dicom" / "sr.dcm")
            entry["sr"] = {"file": "dicom/sr.dcm", "series_instance_uid": str(sr.SeriesInstanceUID),
                           "sop_instance_uid": str(sr.SOPInstanceUID),
                           "measurements": {m.kind: {"value": m.value, "unit": m.unit, "frame": m.frame} for m in largest}}
        return entry
