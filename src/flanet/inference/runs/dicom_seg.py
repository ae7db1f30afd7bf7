"""The predicted masks of a DICOM cine as a DICOM Segmentation (SEG, PS3.3 A.51), built with highdicom.

One SEG per cine, one segment (``lesion``: SCT 49755003 morphologically abnormal structure / SCT
52988006 lesion, algorithm type AUTOMATIC), and one segmentation frame per cine frame with a lesion,
each frame referencing its source frame (Derivation Image Sequence: the cine's SOP instance and its
Referenced Frame Number). The segment's Segmentation Algorithm Identification names flanet, its
version and, as parameters, the model (FLA-Net, Lin et al., MICCAI 2023), its encoder, the checkpoint's
SHA-256, the threshold and the input size.

* ``BINARY`` (default): 1 bit per pixel, exactly the PNG masks (``probability >= threshold``).
* ``FRACTIONAL`` (``--seg-type fractional``): the lesion probability as ``PROBABILITY`` in 0..255. The
  levels are placed so that the PNG mask is exactly the pixels with a stored value >= ``mask_level``
  (``ceil(255 * threshold)``, at least 1; recorded as the algorithm parameter ``mask_level``): a
  probability rounds to the nearest level, except where rounding would cross the threshold.

Cines have no Frame of Reference: their frames differ in time, not in space. highdicom (0.28) builds
segmentations of such images for a single frame only (highdicom issue #284), so the SEG is built by
highdicom for one frame (the cine header seen as a single-frame image) and then given every lesion
frame here: per-frame functional groups referencing the real SOP class and frame number, a second
dimension, Temporal Position Index (the source frame number) beside Referenced Segment Number, and
the frames' pixel data. ``dciodvfy`` accepts the result with no error and highdicom reads it back
(tests/test_inference_dicom_results.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

import flanet
from flanet.colours import PREDICTION_RGB

__all__ = ["Algorithm", "build_segmentation", "fractional_levels", "mask_level", "segmentation_masks"]

_SINGLE_FRAME_US = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage: the one-frame view highdicom accepts
_TEMPORAL_POSITION_INDEX = 0x00209128
_FRAME_CONTENT_SEQUENCE = 0x00209111
SEGMENT_LABEL = "lesion"


@dataclass(frozen=True)
class Algorithm:
    """What made the masks: flanet's version, the model, the checkpoint and the settings."""

    model: str
    encoder: str | None
    checkpoint_sha256: str | None
    threshold: float
    image_size: int
    version: str = flanet.__version__

    def parameters(self) -> dict[str, str]:
        """Algorithm parameters, in the order the SEG lists them."""
        values = {"model": self.model, "encoder": self.encoder or "", "checkpoint_sha256": self.checkpoint_sha256
                  or "none (model not loaded from a file)", "threshold": f"{self.threshold:g}",
                  "image_size": str(self.image_size)}
        return {key: value for key, value in values.items() if value}

    def identification(self, **extra: str) -> object:
        """highdicom's AlgorithmIdentificationSequence (SEG): flanet, its version, the parameters and ``extra``."""
        import highdicom as hd
        from pydicom.sr.codedict import codes

        return hd.AlgorithmIdentificationSequence(
            name="flanet", family=codes.cid7162.ArtificialIntelligence, version=self.version,
            source="flanet: FLA-Net (Lin et al., MICCAI 2023)", parameters={**self.parameters(), **extra})

    def sr_identification(self) -> object:
        """highdicom's TID 4019 Algorithm Identification (SR) for this algorithm."""
        import highdicom as hd

        return hd.sr.AlgorithmIdentification(
            name="flanet", version=self.version, parameters=[f"{k}={v}" for k, v in self.parameters().items()])


def mask_level(threshold: float) -> int:
    """The smallest stored fractional value (of 255) that is lesion at ``threshold``."""
    return max(1, math.ceil(255 * threshold - 1e-9))


def fractional_levels(probability: np.ndarray, mask: np.ndarray, level: int) -> np.ndarray:
    """uint8 probabilities (0..255) whose pixels >= ``level`` are exactly ``mask``."""
    values = np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
    return np.where(mask, np.maximum(values, level), np.minimum(values, level - 1)).astype(np.uint8)


def _one_frame_view(header: Dataset) -> Dataset:
    """The cine's header as a single-frame ultrasound image (what highdicom builds a SEG of)."""
    view = copy.deepcopy(header)
    for keyword in ("NumberOfFrames", "FrameIncrementPointer"):
        if keyword in view:
            del view[keyword]
    view.SOPClassUID = _SINGLE_FRAME_US
    return view


def build_segmentation(
    header: Dataset,
    frames: Sequence[tuple[int, np.ndarray]],
    *,
    algorithm: Algorithm,
    fractional: bool,
    series_uid: str,
    sop_uid: str,
    series_description: str,
) -> Dataset:
    """A SEG of ``frames`` over the cine whose (possibly de-identified) header is ``header``.

    Args:
        header: the cine's header (no pixel data needed), as :class:`flanet.data.dicom_identity.DicomIdentity` gives it.
        frames: ``(source frame number (1-based), values)`` of each frame with a lesion, in order; values are
            (H, W) bool masks, or uint8 levels (:func:`fractional_levels`) when ``fractional``.
        algorithm: what made the masks.
        fractional: write a FRACTIONAL (PROBABILITY) segmentation, else BINARY.
        series_uid, sop_uid: the new SEG's UIDs.
        series_description: the series' description (names the identity mode).

    Raises:
        ValueError: no frame (a SEG holds at least one), or a frame not of the cine's size.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not frames:
        raise ValueError("a DICOM Segmentation needs at least one frame with a lesion")
    stack = np.stack([values for _, values in frames])
    if stack.shape[1:] != (int(header.Rows), int(header.Columns)):
        raise ValueError(f"masks of {stack.shape[1:]} do not fit the cine's {header.Rows}x{header.Columns} frames")
    extra = {"mask_level": str(mask_level(algorithm.threshold))} if fractional else {}
    identification = algorithm.identification(**extra)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification, tracking_uid=hd.UID(), tracking_id=SEGMENT_LABEL,
        display_color=hd.color.CIELabColor.from_rgb(*PREDICTION_RGB))
    first = stack[:1].astype(np.float32) / 255.0 if fractional else stack[:1]
    seg = hd.seg.Segmentation(
        source_images=[_one_frame_view(header)], pixel_array=first,
        segmentation_type="FRACTIONAL" if fractional else "BINARY",
        fractional_type="PROBABILITY" if fractional else None, segment_descriptions=[segment],
        series_instance_uid=series_uid, series_number=9701, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer="flanet", manufacturer_model_name=f"flanet {algorithm.model}",
        software_versions=algorithm.version, device_serial_number="none", omit_empty_frames=False,
        content_description="flanet lesion segmentation", content_label="LESION")
    _all_frames(seg, header, [number for number, _ in frames])
    data = stack.astype(np.uint8).tobytes() if fractional else np.packbits(stack.ravel(), bitorder="little").tobytes()
    seg.PixelData = data + b"\0" * (len(data) % 2)
    seg.SeriesDescription = series_description
    seg.PatientOrientation = ""  # General Image, Type 2C: no Frame of Reference
    return seg


def _all_frames(seg: Dataset, header: Dataset, numbers: list[int]) -> None:
    """Turn highdicom's one-frame SEG into one frame per source frame in ``numbers`` (see module docstring)."""
    template = seg.PerFrameFunctionalGroupsSequence[0]
    items = []
    for number in numbers:
        item = copy.deepcopy(template)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        source.ReferencedSOPClassUID = header.SOPClassUID
        source.ReferencedFrameNumber = number
        content = item.FrameContentSequence[0]
        content.DimensionIndexValues = [1, number]
        content.TemporalPositionIndex = number
        items.append(item)
    seg.PerFrameFunctionalGroupsSequence = items
    temporal = copy.deepcopy(seg.DimensionIndexSequence[0])
    temporal.DimensionIndexPointer = _TEMPORAL_POSITION_INDEX
    temporal.FunctionalGroupPointer = _FRAME_CONTENT_SEQUENCE
    temporal.DimensionDescriptionLabel = "Temporal Position Index"
    seg.DimensionIndexSequence.append(temporal)
    for reference in (seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0], seg.SourceImageSequence[0]):
        reference.ReferencedSOPClassUID = header.SOPClassUID
    seg.NumberOfFrames = len(numbers)


def segmentation_masks(seg: Dataset) -> dict[int, np.ndarray]:
    """The lesion mask of every source frame a flanet SEG holds, read back with highdicom.

    Returns:
        ``{source frame number (1-based): (H, W) bool}``; for a FRACTIONAL SEG the pixels whose stored value
        is >= its ``mask_level`` parameter (the PNG masks).
    """
    import highdicom as hd

    reader = hd.seg.Segmentation.from_dataset(seg, copy=True)  # its frame index, built from the dataset as it is now
    numbers = [int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
               for item in reader.PerFrameFunctionalGroupsSequence]
    pixels = reader.get_pixels_by_source_frame(
        source_sop_instance_uid=reader.SourceImageSequence[0].ReferencedSOPInstanceUID,
        source_frame_numbers=numbers, segment_numbers=[1], combine_segments=False,
        ignore_spatial_locations=True)[..., 0]
    if reader.SegmentationType == "FRACTIONAL":
        identification = reader.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        level = int(dict(p.split("=", 1) for p in str(identification.AlgorithmParameters).split(","))["mask_level"])
        masks = np.rint(pixels * float(reader.MaximumFractionalValue)) >= level
    else:
        masks = pixels > 0
    return {number: masks[index] for index, number in enumerate(numbers)}
