"""Burned-in identifiers: what de-identified outputs show of a frame whose pixels carry patient text.

Ultrasound scanners draw the patient's name, ID and the date into the image, above or beside the
imaging region, and say so with ``BurnedInAnnotation = YES``. The outputs a person opens and
shares (``overlay.mp4`` and the viewer's thumbnails) copied that text, readable (issue 22
item 2). Policy, decided per video before anything is written for it:

* the file declares burned-in annotation (or ``--blank-outside-regions`` asks for it on every
  DICOM file) and has ultrasound regions: every pixel outside the union of its 2-D regions is
  blanked (black) in the overlay and the thumbnails; the model still sees the imaging region;
* it declares burned-in annotation but has no region to keep: refused (bad input, exit 2),
  unless ``--allow-burned-in``, which processes it unblanked and says so in ``summary.json``.

Masks and CSVs carry no pixels of the frame and are unchanged. Other inputs (video files, frame
folders) carry no such declaration: ``--blank-outside-regions`` applies to DICOM files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flanet.data import DataError
from flanet.data.dicom import Region
from flanet.inference.runs.sources import VideoSource

__all__ = ["DEFAULT_POLICY", "BurnedInPolicy", "burned_in_regions"]


@dataclass(frozen=True)
class BurnedInPolicy:
    """``allow``: process a burned-in file without regions unblanked (``--allow-burned-in``);
    ``blank_always``: blank outside the regions of every DICOM file (``--blank-outside-regions``)."""

    allow: bool = False
    blank_always: bool = False


#: Blank declared burned-in files, refuse those without regions (no option given).
DEFAULT_POLICY = BurnedInPolicy()


def burned_in_regions(source: VideoSource, policy: BurnedInPolicy) -> tuple[tuple[Region, ...], dict[str, Any]]:
    """The regions to keep in the outputs of ``source`` (empty: nothing blanked) and its summary entry.

    Raises:
        DataError: a file declaring burned-in annotation without ultrasound regions, unless ``policy.allow``.
    """
    info = source.dicom
    if info is None:
        return (), {"declared": None, "handling": "not a DICOM file: nothing declared, nothing blanked"}
    wanted = info.burned_in or policy.blank_always
    if wanted and info.regions:
        return info.regions, {"declared": info.burned_in,
                              "handling": f"blanked outside {len(info.regions)} ultrasound region(s)"}
    if info.burned_in and not policy.allow:
        raise DataError("declares BurnedInAnnotation YES (identifiers drawn into the image) and has no ultrasound "
                        "region to keep: refused for de-identified outputs; --allow-burned-in processes it "
                        "unblanked (the overlay and the viewer then show the text)", source.location)
    if info.burned_in:
        return (), {"declared": True, "handling": "not blanked (--allow-burned-in): outputs may show identifiers"}
    return (), {"declared": False, "handling": "none declared, nothing blanked"}
