"""DICOM header values as their writer meant them: the small deviations real scanners write.

Vendors write headers that bend the standard in small, recognisable ways. Each is read as meant,
said once (a *quirk*, a warning naming the attribute, in ``DicomInfo.problems``) and never allowed to
stop a command or to cost a calibration:

* a ``SpecificCharacterSet`` that is misspelled (``ISO IR 100``, ``ISO-IR 100``, ``ISO_IR100``) is read
  as the character set it names; one that names no known set is read as the default repertoire
  (ISO-IR 6). The data set is corrected once, so pydicom does not warn at every text value;
* an ultrasound region whose ``RegionLocationMaxX1`` / ``MaxY1`` equals the image's width / height
  (one past the last pixel: an exclusive end where DICOM's is inclusive) is read as ending on the
  last pixel, and keeps its calibration;
* empty or non-numeric integer attributes (``RegionSpatialFormat``, ``RegionDataType``, units, region
  corners) are read as absent: such a region item is skipped, said once.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["header_int", "inclusive_end", "normalise_character_set"]

_ISO_IR = re.compile(r"ISO[ _-]*(2022[ _-]*)?IR[ _-]*(\d+)")


def header_int(item: Dataset, keyword: str) -> int | None:
    """An integer attribute's value, or None when it is absent, empty or not a whole number."""
    value = item.get(keyword)
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0] if len(value) else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _term(value: str) -> str | None:
    """The defined term a (possibly misspelled) character set value means, or None when none."""
    if value in python_encoding:
        return value
    match = _ISO_IR.fullmatch(value.strip().upper())
    if match is None:
        return None
    term = f"ISO 2022 IR {match.group(2)}" if match.group(1) else f"ISO_IR {match.group(2)}"
    return term if term in python_encoding else None


def normalise_character_set(ds: Dataset) -> str | None:
    """Correct ``ds.SpecificCharacterSet`` in place to the terms it means; the quirk said, or None.

    An empty first value (the default repertoire) is kept; a value naming no known character set
    becomes the default repertoire (``ISO_IR 6``).
    """
    raw: Any = ds.get("SpecificCharacterSet")
    if raw is None:
        return None
    values = [str(v) for v in raw] if isinstance(raw, (MultiValue, list, tuple)) else [str(raw)]
    fixed = [v if v == "" and i == 0 else (_term(v) or "ISO_IR 6") for i, v in enumerate(values)]
    if fixed == values:
        return None
    ds.SpecificCharacterSet = fixed if len(fixed) > 1 else fixed[0]
    shown, meant = "\\".join(values), "\\".join(fixed)
    return f"SpecificCharacterSet '{shown}' is not a defined term: read as '{meant}'"


def inclusive_end(end: int, size: int, keyword: str) -> tuple[int, str | None]:
    """A region's last pixel: ``end`` itself, or ``size - 1`` with the quirk said when ``end == size``."""
    if end == size:
        return size - 1, (f"{keyword} {end} is one past the last pixel ({size - 1}; DICOM's region ends are "
                          f"inclusive): read as {size - 1}, calibration kept")
    return end, None
