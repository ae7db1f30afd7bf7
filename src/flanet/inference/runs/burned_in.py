"""Burned-in identifiers: what de-identified outputs show of a frame whose pixels carry patient text.

Ultrasound scanners draw the patient's name, ID and the date into the image, above or beside the
imaging region, and say so with ``BurnedInAnnotation = YES``. The outputs a person opens and
shares (``overlay.mp4`` and the viewer's thumbnails) copied that text, readable (issue 22
item 2). Policy, decided per video before anything is written for it:

* blanking is wanted when the file declares burned-in annotation, on request for every input
  (``--blank-outside-regions``), or when a region to keep is given (``--keep-region X0,Y0,X1,Y1``);
* the regions kept are the file's own ultrasound regions (the union of its 2-D regions), else the
  given ``--keep-region``; every pixel outside them is blanked (black) in the overlay and the
  thumbnails, the model still sees the imaging region;
* blanking is wanted but there is no region to keep (a declared file without regions, a video file,
  a frame folder or a live source with ``--blank-outside-regions``): refused (bad input, exit 2),
  unless ``--allow-burned-in``, which processes it unblanked and says so in ``summary.json``.

Masks and CSVs carry no pixels of the frame and are unchanged. Video files, frame folders and live
sources declare nothing: their text, if any, is blanked only on request (``--keep-region``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flanet.data import DataError
from flanet.data.dicom import Region
from flanet.inference.runs.sources import VideoSource

__all__ = ["DEFAULT_POLICY", "BurnedInPolicy", "burned_in_regions", "policy_from_settings"]


@dataclass(frozen=True)
class BurnedInPolicy:
    """``allow``: process an input that should be blanked but has no region to keep unblanked
    (``--allow-burned-in``); ``blank_always``: blank outside the regions of every input
    (``--blank-outside-regions``); ``keep_region``: the region kept where an input has none of its own
    (``--keep-region``), blanking every input outside it."""

    allow: bool = False
    blank_always: bool = False
    keep_region: Region | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """What an archive records (and a resume compares): the options as given."""
        region = self.keep_region
        return {"allow_burned_in": self.allow, "blank_outside_regions": self.blank_always,
                "keep_region": None if region is None else [region.x0, region.y0, region.x1, region.y1]}


#: Blank declared burned-in files, refuse those without regions (no option given).
DEFAULT_POLICY = BurnedInPolicy()


def policy_from_settings(settings: dict[str, Any]) -> BurnedInPolicy:
    """The policy an archive recorded (:attr:`BurnedInPolicy.settings`); absent keys: the defaults."""
    region = settings.get("keep_region")
    return BurnedInPolicy(bool(settings.get("allow_burned_in", False)), bool(settings.get("blank_outside_regions", False)),
                          None if region is None else Region(*(int(v) for v in region)))


def burned_in_regions(source: VideoSource | None, policy: BurnedInPolicy,
                      location: str | Path | None = None) -> tuple[tuple[Region, ...], dict[str, Any]]:
    """The regions to keep in the outputs of ``source`` (empty: nothing blanked) and its summary entry.

    ``source`` None is a live source (``location`` names it): it declares nothing and has no regions.

    Raises:
        DataError: blanking is wanted (declared, ``--blank-outside-regions``) and the input has no region
            to keep, unless ``policy.allow``.
    """
    info = source.dicom if source is not None else None
    where = source.location if source is not None else location
    declared = info.burned_in if info is not None else None
    own = info.regions if info is not None else ()
    given = () if policy.keep_region is None else (policy.keep_region,)
    if not (declared or policy.blank_always or given):
        nothing = "none declared, nothing blanked" if info is not None else "not a DICOM file: nothing declared, nothing blanked"
        return (), {"declared": declared, "handling": nothing}
    if own:
        return own, {"declared": declared, "handling": f"blanked outside {len(own)} ultrasound region(s)"}
    if given:
        region = given[0]
        return given, {"declared": declared, "handling": f"blanked outside the given region (--keep-region "
                                                         f"{region.x0},{region.y0},{region.x1},{region.y1})"}
    if policy.allow:
        return (), {"declared": declared, "handling": "not blanked (--allow-burned-in): outputs may show identifiers"}
    if declared:
        why = "declares BurnedInAnnotation YES (identifiers drawn into the image) and has no ultrasound region to keep"
    else:
        kind = "a DICOM file without ultrasound regions" if info is not None else (
            "a live source" if source is None else "not a DICOM file")
        why = f"--blank-outside-regions asks to blank outside the ultrasound regions, but it has none ({kind})"
    raise DataError(f"{why}: refused for de-identified outputs; --keep-region X0,Y0,X1,Y1 keeps that rectangle "
                    "of every frame, --allow-burned-in processes it unblanked (the overlay and the viewer then show "
                    "any text)", where)
