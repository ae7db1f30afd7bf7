"""Reading a "CVAT for video 1.1" XML export (one CVAT task = one video) as per-frame masks.

Rules (see docs/data.md, layout ``cvat``):

- Frame ``n`` of the XML is the ``n``-th image of the task's ``images/`` folder in natural
  order (CVAT names the frames of a video task ``frame_000000.PNG``, ...); the XML's
  ``meta/task/size`` must equal the number of images.
- Every frame of the task is labelled: its mask is the union of the ``<mask>`` and
  ``<polygon>`` shapes (of any label) drawn on it with ``outside="0"``; a frame without one
  has no lesion. Other shapes (boxes, points, ...) are ignored with a warning.
- A shape draws on the frame it names. CVAT exports list every frame of a polygon track
  (interpolated ones with ``keyframe="0"``); a polygon track whose listed frames skip some
  frames is reported (those frames read as no lesion). A mask track draws only on its frames.
- ``<mask>``: CVAT's RLE over its box (:func:`flanet.data.rle.decode_cvat`), exact;
  ``<polygon>``: rasterised by pycocotools, as CVAT does when it turns polygons into masks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from flanet.data.errors import DataError, Problem
from flanet.data.images import decode_unchanged, read_bytes
from flanet.data.rle import EncodedMask, decode_cvat, encode_coco, merge_coco, polygons_to_coco

DRAWN_SHAPES: tuple[str, ...] = ("mask", "polygon")


def _task(root: ET.Element, path: Path) -> ET.Element:
    if root.tag != "annotations":
        raise DataError(f"not a CVAT XML file (root element <{root.tag}>, expected <annotations>)", path)
    if root.find("image") is not None:
        raise DataError("a 'CVAT for images' file (it has <image> elements): export the task as "
                        "'CVAT for video 1.1'", path)
    if root.find("meta/project") is not None:
        raise DataError("a CVAT project export: export each task as 'CVAT for video 1.1' into its own "
                        "<video>/ folder", path)
    task = root.find("meta/task")
    task = task if task is not None else root.find("meta/job")
    if task is None or not (task.findtext("size") or "").strip().isdigit():
        raise DataError("malformed CVAT XML: no <meta><task><size> (number of frames)", path)
    return task


def _frame_size(task: ET.Element, first_frame: Path) -> tuple[int, int]:
    """(H, W) from ``original_size``, else from the first frame."""
    width, height = task.findtext("original_size/width"), task.findtext("original_size/height")
    if width and height and width.strip().isdigit() and height.strip().isdigit():
        return int(height), int(width)
    image = decode_unchanged(read_bytes(first_frame), first_frame)
    return image.shape[0], image.shape[1]


def _shape_rle(shape: ET.Element, height: int, width: int) -> dict:
    """COCO RLE of one ``<mask>`` or ``<polygon>`` (ValueError/KeyError when malformed)."""
    if shape.tag == "mask":
        runs = [int(v) for v in shape.attrib["rle"].split(",")]
        box = tuple(int(shape.attrib[key]) for key in ("left", "top", "width", "height"))
        return encode_coco(decode_cvat(runs, box, height, width))  # type: ignore[arg-type]
    points = [float(v) for pair in shape.attrib["points"].split(";") for v in pair.split(",")]
    return polygons_to_coco([points], height, width)


def _gap_problem(path: Path, track: ET.Element, frames: list[tuple[int, bool]], last: int) -> Problem | None:
    """A polygon track that skips frames after a visible shape (keyframes only, not a CVAT export)."""
    frames = sorted(frames)
    following = [f for f, _ in frames[1:]] + [last + 1]
    for (frame, outside), nxt in zip(frames, following):
        if not outside and nxt > frame + 1:
            return Problem("warning", path, f"track {track.attrib.get('id', '?')} lists frame {frame} but not "
                                            f"{frame + 1}..{nxt - 1}: those frames read as no lesion (CVAT's "
                                            "exports list every frame of a track; export again from CVAT)")
    return None


def read_cvat_video(path: Path, frames: list[Path], notes: list[Problem]) -> list[EncodedMask]:
    """The mask of every frame of one CVAT-for-video task.

    Args:
        path: the ``annotations.xml`` file.
        frames: the task's frame files, in natural order.
        notes: receives the problems found (malformed shapes, ignored shapes, gaps).

    Raises:
        DataError: naming the file, when it is not well-formed XML, not a CVAT-for-video file, or
            its frame count differs from the number of frames.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DataError(f"malformed CVAT XML: {error}", path) from error
    except OSError as error:
        raise DataError(f"cannot read CVAT XML ({error.strerror or error})", path) from error
    task = _task(root, path)
    size = int(task.findtext("size").strip())  # type: ignore[union-attr]
    if size != len(frames):
        raise DataError(f"the XML describes {size} frames, its images/ folder holds {len(frames)}", path)
    if size == 0:
        return []
    height, width = _frame_size(task, frames[0])
    per_frame: list[list[dict]] = [[] for _ in range(size)]
    ignored: Counter[str] = Counter()
    for track in root.iter("track"):
        listed: list[tuple[int, bool]] = []
        for shape in track:
            if shape.tag not in DRAWN_SHAPES:
                ignored[shape.tag] += 1
                continue
            try:
                frame = int(shape.attrib["frame"])
                if not 0 <= frame < size:
                    raise ValueError(f"frame {frame} is outside 0..{size - 1}")
                outside = shape.attrib.get("outside", "0") == "1"
                if shape.tag == "polygon":
                    listed.append((frame, outside))
                if not outside:
                    per_frame[frame].append(_shape_rle(shape, height, width))
            except (ValueError, KeyError) as error:
                where = f"track {track.attrib.get('id', '?')}, <{shape.tag} frame={shape.attrib.get('frame')!r}>"
                notes.append(Problem("error", path, f"malformed {where}: {error}"))
        if listed and (gap := _gap_problem(path, track, listed, size - 1)):
            notes.append(gap)
    for tag, count in ignored.items():
        notes.append(Problem("warning", path, f"{count} <{tag}> shape(s) ignored: only masks and polygons are read"))
    return [EncodedMask(path, f"frame {i} ({frames[i].name})", height, width, merge_coco(rles, height, width))
            for i, rles in enumerate(per_frame)]
