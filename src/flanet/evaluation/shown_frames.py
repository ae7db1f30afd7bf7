"""The frames an evaluation shows people (``viewer.html``, ``worst_frames/``), with burned-in text blanked.

Ultrasound scanners draw the patient's name, ID and date into the image outside the imaging region
(``BurnedInAnnotation = YES``). What ``flanet evaluate`` shows of a frame follows the rule of
``flanet predict`` (docs/inference.md, "Burned-in identifiers"), issue 22 item 2:

* blanking is wanted when a DICOM file declares burned-in annotation, for every video with
  ``--blank-outside-regions``, or with a region to keep (``--keep-region X0,Y0,X1,Y1``);
* the regions kept are the file's own ultrasound regions, else the given region; everything outside
  them is black. Where blanking is wanted and there is no region, the whole frame is black (the
  masks are still drawn): a report is never refused for it, it only shows less.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from flanet.data import Video
from flanet.data.deidentify import blank_outside
from flanet.data.dicom import Region
from flanet.data.video_io import VideoFrameReader


@dataclass(frozen=True)
class Blanking:
    """``blank_always``: blank outside the regions of every video (``--blank-outside-regions``);
    ``keep_region``: ``(x0, y0, x1, y1)`` inclusive, kept where a video has no regions of its own (``--keep-region``)."""

    blank_always: bool = False
    keep_region: tuple[int, int, int, int] | None = None


#: Blank what a DICOM file declares, nothing else (no option given).
AS_DECLARED = Blanking()


def regions_to_keep(video: Video, blanking: Blanking = AS_DECLARED) -> tuple[Region, ...] | None:
    """None: the frames are shown whole; else the regions kept (empty: nothing, the frame is black)."""
    dicom = video.dicom  # the header discover read (flanet.data.Video.info); None for other videos
    own, declared = ((), False) if dicom is None else (dicom.regions, bool(dicom.burned_in))
    given = () if blanking.keep_region is None else (Region(*blanking.keep_region),)
    if not (declared or blanking.blank_always or given):
        return None
    return own or given


def read_shown_frame(video: Video, index: int, reader: VideoFrameReader, blanking: Blanking = AS_DECLARED) -> np.ndarray:
    """Frame ``index`` as RGB (:meth:`flanet.data.Video.read_frame`), blanked as the module docstring says."""
    rgb = video.read_frame(index, reader)
    keep = regions_to_keep(video, blanking)
    if keep is None:
        return rgb
    return blank_outside(rgb, keep) if keep else np.zeros_like(rgb)


def worst_images(worst: list, videos: dict[str, Video], blanking: Blanking = AS_DECLARED) -> list[np.ndarray]:
    """Shown frames of the worst frames (``ScoredFrame``s, looked up by name), resized to their maps if needed."""
    reader, images = VideoFrameReader(), []
    for frame in worst:
        video = videos[frame.video]
        index = video.frame_names.index(frame.frame)
        rgb = read_shown_frame(video, index, reader, blanking)
        if rgb.shape[:2] != frame.gt.shape:
            rgb = cv2.resize(rgb, (frame.gt.shape[1], frame.gt.shape[0]))
        images.append(rgb)
    return images
