"""Which DICOM header attributes identify a patient, an institution or a person (never written out).

flanet writes no header value to any output; :func:`withheld_tags` lists the identifying
attributes a file carries so that ``summary.json`` can say what was withheld. The list follows
the attributes the DICOM basic application level confidentiality profile removes or replaces
(PS3.15 Annex E, Table E.1-1) that occur in ultrasound and endoscopy files; private attributes
are withheld as a group. Identifiers burned into the pixels are blanked with :func:`blank_outside`
(what is kept: the ultrasound regions; :mod:`flanet.inference.runs.burned_in` for the policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pydicom is imported where a DICOM file is read, not by every predict (start-up time)
    from pydicom.dataset import Dataset


class _Box(Protocol):
    x0: int
    y0: int
    x1: int
    y1: int


def blank_outside(rgb: np.ndarray, regions: Sequence[_Box]) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3) black outside the union of ``regions`` (inclusive); ``rgb`` itself when none."""
    if not regions:
        return rgb
    keep = np.zeros(rgb.shape[:2], bool)
    for region in regions:
        keep[region.y0:region.y1 + 1, region.x0:region.x1 + 1] = True
    return np.where(keep[..., None], rgb, np.uint8(0))

# PS3.15 Table E.1-1, basic profile: attributes with action X/Z/D/U (removed, emptied, dummy, new UID).
IDENTIFYING_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge",
    "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName", "MilitaryRank",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments", "MedicalRecordLocator",
    "PatientInsurancePlanCodeSequence", "PatientReligiousPreference", "CountryOfResidence", "RegionOfResidence",
    "IssuerOfPatientID", "PregnancyStatus", "ResponsiblePerson", "ResponsibleOrganization",
    "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
    "MediaStorageSOPInstanceUID", "FrameOfReferenceUID", "ReferencedSOPInstanceUID", "IrradiationEventUID",
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceSerialNumber", "DeviceUID", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "OperatorsName", "RequestingPhysician", "ScheduledPerformingPhysicianName",
    "RequestAttributesSequence", "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepDescription", "StudyDescription",
    "SeriesDescription", "ImageComments", "DerivationDescription", "RequestedProcedureDescription",
    "AdmittingDiagnosesDescription", "ReasonForStudy", "ProtocolName", "ContentCreatorName",
    "ReferencedPatientSequence", "ReferencedStudySequence", "InstanceCreatorUID", "TimezoneOffsetFromUTC",
)


def withheld_tags(ds: Dataset) -> tuple[str, ...]:
    """Keywords of the identifying attributes present (non-empty) in ``ds``, plus ``"private attributes (N)"``."""
    present = [kw for kw in IDENTIFYING_KEYWORDS if kw in ds and not ds[kw].is_empty]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "MediaStorageSOPInstanceUID" not in present:
        present.append("MediaStorageSOPInstanceUID")
    private = sum(1 for element in ds if element.tag.is_private)
    if private:
        present.append(f"private attributes ({private})")
    return tuple(present)
