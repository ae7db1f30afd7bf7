"""Whose study a DICOM result belongs to: the source's (``source``) or nobody's (``deidentify``).

Results written as DICOM objects (a Segmentation, a Structured Report) carry the patient and study
of the images they were derived from. Two modes, chosen by the user and recorded in every file:

* ``source``: the header is the source's (patient, study, Study Instance UID); the results get new
  Series and SOP Instance UIDs in the same study, so a PACS files them beside the cine;
* ``deidentify`` (the default for research outputs): the DICOM PS3.15 Annex E basic application
  level confidentiality profile (Table E.1-1) applied to a copy of the header: the identifying
  attributes of :data:`flanet.data.deidentify.IDENTIFYING_KEYWORDS` are removed or emptied (the
  Type 2 ones the results must carry are emptied; the patient ID becomes a random pseudonym), private
  attributes are removed, and every instance UID (study, series, SOP instance, frame of reference,
  nested references) is replaced by a new UID derived from it and a secret drawn once per run. The
  replacement is consistent, so the Segmentation, the Structured Report and ``summary.json`` of one
  run still reference each other (and one study's cines stay one study), and it cannot be undone:
  the secret is never written. ``PatientIdentityRemoved`` and ``DeidentificationMethod`` (with the
  profile's code, DCM 113100) say so in every object.

No mode puts an identifier in a file name: result files are named by their kind (``seg.dcm``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from flanet.data.deidentify import IDENTIFYING_KEYWORDS

__all__ = ["IDENTITY_MODES", "DicomIdentity"]

IDENTITY_MODES = ("deidentify", "source")
PROFILE = "DICOM PS3.15 Annex E basic application level confidentiality profile"
_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")  # PS3.16 CID 7050
#: Type 2 attributes of the Patient and General Study modules a result must carry: emptied, not removed.
_EMPTIED = ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
            "AccessionNumber", "StudyID")
_PIXELS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UID_KEEP = frozenset({"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"})


def _datasets(ds: Dataset) -> Iterator[Dataset]:
    """``ds`` and every item of its sequences, depth first."""
    yield ds
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _datasets(item)


@dataclass(frozen=True)
class DicomIdentity:
    """The identity rule of one run's DICOM results (see the module docstring).

    Attributes:
        mode: ``"deidentify"`` or ``"source"``.
        secret: drawn once per run; keys the replacement UIDs and the pseudonym (never written anywhere).
    """

    mode: str = "deidentify"
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        if self.mode not in IDENTITY_MODES:
            raise ValueError(f"unknown DICOM identity mode {self.mode!r}: choose one of {', '.join(IDENTITY_MODES)}")

    @property
    def deidentify(self) -> bool:
        return self.mode == "deidentify"

    def uid(self, value: str) -> str:
        """The UID results use for the source's ``value``: itself (source), else its consistent replacement."""
        if not self.deidentify or not value or value in UID_dictionary:  # standard UIDs (classes, syntaxes) stay
            return value
        return generate_uid(entropy_srcs=[self.secret.hex(), value])

    def _pseudonym(self, value: str) -> str:
        return "FLANET-" + hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()[:12].upper()

    def header(self, source: Dataset) -> Dataset:
        """A copy of ``source``'s header (no pixel data) that results derived from it are built from."""
        ds = Dataset()
        for element in source:
            if element.keyword not in _PIXELS:
                ds.add(copy.deepcopy(element))
        for keyword in (*_EMPTIED, "PatientID"):  # Type 2 attributes the results must carry; absent: empty
            if keyword not in ds:
                setattr(ds, keyword, "")
        if not self.deidentify:
            return ds
        patient_id = str(source.get("PatientID", ""))
        for item in list(_datasets(ds)):
            item.remove_private_tags()
            for keyword in IDENTIFYING_KEYWORDS:
                if keyword in item and item[keyword].VR != "UI":  # UIDs are replaced below
                    del item[keyword]
            for element in item:
                if element.VR == "UI" and element.keyword not in _UID_KEEP and element.value:
                    values = element.value if element.VM > 1 else [element.value]
                    replaced = [self.uid(str(v)) for v in values]
                    element.value = replaced if element.VM > 1 else replaced[0]
        for keyword in _EMPTIED:
            setattr(ds, keyword, "")
        ds.PatientID = self._pseudonym(patient_id) if patient_id else ""
        return ds

    def stamp(self, result: Dataset) -> None:
        """Record the mode in a result object (``PatientIdentityRemoved``, ``DeidentificationMethod``).

        In ``source`` mode the new series is also dated (``SeriesDate``/``SeriesTime``: the object's creation);
        both modes keep the creation date and time highdicom stamps (``ContentDate``, ``InstanceCreationDate``:
        when flanet wrote the object, not when the patient was scanned).
        """
        result.PatientIdentityRemoved = "YES" if self.deidentify else "NO"
        if self.deidentify:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
            result.DeidentificationMethod = "PS3.15 E.1 basic profile (flanet deidentify)"  # LO: 64 chars
            result.DeidentificationMethodCodeSequence = [code]
        else:
            for keyword in ("DeidentificationMethod", "DeidentificationMethodCodeSequence"):
                if keyword in result:
                    del result[keyword]
            for series, content in (("SeriesDate", "ContentDate"), ("SeriesTime", "ContentTime")):
                if content in result:  # the new series is dated by its creation (a PACS lists series by date)
                    setattr(result, series, result[content].value)
