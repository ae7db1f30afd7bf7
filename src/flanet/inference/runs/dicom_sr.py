"""A cine's lesion measurements as a DICOM Comprehensive 3D SR following TID 1500 (highdicom).

The Measurement Report (TID 1500, title "Imaging Measurement Report", procedure SCT 310169008
ultrasonography) holds one TID 1410 Planar ROI measurement group per measurement, each naming the
ROI by the SEG frame it is measured on (Referenced Segmentation Frame, with the cine frame it was
segmented from as Source Image for Segmentation) and by the SEG segment's Tracking UID / ID (the one
lesion tracked through the cine):

* the lesion's largest area (SCT 42798000 Area) over the cine, in mm2 (UCUM), on the frame where it occurs;
* its largest diameter (SCT 103339001 Long axis: the largest Feret diameter of a connected lesion, as
  ``frames.csv``'s ``max_diameter_mm``, :func:`flanet.inference.runs.measurements.feret_diameter`), in mm,
  on the frame where that occurs.

Both are ``summary.json``'s ``largest_area_mm2`` / ``largest_max_diameter_mm`` and their frames: the same
numbers as ``frames.csv``. Without calibration they are in pixels (UCUM annotations ``{pixels}`` and
``{square_pixels}``). Each measurement also names its frame as Source of Measurement (TID 300), and
the algorithm (TID 4019: flanet, its version, model, checkpoint SHA-256). highdicom (0.28) writes a
Referenced Segment Number beside the Referenced Frame Number of a segmentation frame reference, which
PS3.3 C.10.8.1 (the SR image reference) forbids (``dciodvfy``: "shall not be present"): it is removed
here, the frame number already names the segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from flanet.inference.runs.dicom_seg import Algorithm

__all__ = ["Largest", "build_measurement_report", "report_measurements"]

_UNITS = {"mm2": Code("mm2", "UCUM", "square millimeter"), "mm": Code("mm", "UCUM", "millimeter"),
          "px2": Code("{square_pixels}", "UCUM", "square pixels"), "px": Code("{pixels}", "UCUM", "pixels")}
_UNIT_NAMES = {code.value: name for name, code in _UNITS.items()}
_NAMES = {"area": Code("42798000", "SCT", "Area"), "diameter": Code("103339001", "SCT", "Long axis")}


@dataclass(frozen=True)
class Largest:
    """One reported measurement: ``kind`` ``"area"`` or ``"diameter"``, its value and unit, its cine frame (1-based)."""

    kind: str
    value: float
    unit: str
    frame: int


def _seg_frame(seg: Dataset, source_frame: int) -> int:
    """The SEG frame (1-based) segmented from cine frame ``source_frame``."""
    for position, item in enumerate(seg.PerFrameFunctionalGroupsSequence, 1):
        if int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber) == source_frame:
            return position
    raise ValueError(f"the SEG holds no frame segmented from cine frame {source_frame}")


def build_measurement_report(
    header: Dataset,
    seg: Dataset | None,
    largest: Sequence[Largest],
    *,
    algorithm: Algorithm,
    series_uid: str,
    sop_uid: str,
    series_description: str,
) -> Dataset:
    """A TID 1500 Comprehensive 3D SR of ``largest``, measured on ``seg``'s frames of the cine ``header``.

    Without ``seg`` (no frame with a lesion) the report holds no measurement group.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    groups = []
    for measurement in largest if seg is not None else ():
        segment = seg.SegmentSequence[0]
        tracking = hd.sr.TrackingIdentifier(uid=segment.TrackingUID, identifier=str(segment.TrackingID))
        source = hd.sr.SourceImageForSegmentation(header.SOPClassUID, header.SOPInstanceUID,
                                                  referenced_frame_numbers=[measurement.frame])
        reference = hd.sr.ReferencedSegmentationFrame(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            frame_number=_seg_frame(seg, measurement.frame), segment_number=1, source_image=source)
        del reference[0].ReferencedSOPSequence[0].ReferencedSegmentNumber  # PS3.3 C.10.8.1: not with a frame number
        value = hd.sr.Measurement(
            name=_NAMES[measurement.kind], value=measurement.value, unit=_UNITS[measurement.unit],
            algorithm_id=algorithm.sr_identification(),
            referenced_images=[hd.sr.SourceImageForMeasurement(header.SOPClassUID, header.SOPInstanceUID,
                                                               referenced_frame_numbers=[measurement.frame])])
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_segment=reference, finding_type=codes.SCT.Lesion,
            algorithm_id=algorithm.sr_identification(), measurements=[value]))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["flanet", algorithm.version]), name="flanet",
        manufacturer_name="flanet", model_name=f"flanet {algorithm.model}")
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.Ultrasonography,
                                     imaging_measurements=groups or None)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[header] if seg is None else [header, seg], content=report, series_instance_uid=series_uid, series_number=9702,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="flanet", series_description=series_description,
        is_complete=True, is_final=False, is_verified=False)
    return sr


def report_measurements(sr: Dataset) -> dict[str, tuple[float, str, int, str]]:
    """Read a flanet SR back with highdicom: ``{kind: (value, unit, cine frame, tracking UID)}``."""
    import highdicom as hd

    document = sr if isinstance(sr, hd.sr.Comprehensive3DSR) else hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True)
    kinds = {code.value: kind for kind, code in _NAMES.items()}
    found: dict[str, tuple[float, str, int, str]] = {}
    for group in document.content.get_planar_roi_measurement_groups():
        source = group.referenced_segmentation_frame[1].ReferencedSOPSequence[0]
        for measurement in group.get_measurements():
            found[kinds[measurement.name.value]] = (float(measurement.value), _UNIT_NAMES[measurement.unit.value],
                                                    int(source.ReferencedFrameNumber), str(group.tracking_uid))
    return found

