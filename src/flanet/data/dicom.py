"""DICOM cine loops (ultrasound and other modalities): frames, frame rate, imaging region, calibration.

Read with pydicom and the decoders it documents (pylibjpeg-libjpeg for JPEG baseline,
pylibjpeg-openjpeg for JPEG 2000, pydicom / pylibjpeg-rle for RLE; uncompressed little and big
endian natively). Frames come out as uint8 RGB ``(H, W, 3)``, the way pydicom decodes them:
YBR_FULL / YBR_FULL_422 are converted to RGB once, by pydicom (``as_rgb``), never again here;
PALETTE COLOR goes through the file's lookup table; MONOCHROME1 is inverted; more than 8 bits
stored are windowed (VOI LUT / window when the file has one) and scaled to 8 bits.

Frame rate: ``FrameTime`` (ms), else ``CineRate``, else ``RecommendedDisplayFrameRate``; a value
that is not a finite positive number, or gives more than :data:`flanet.limits.MAX_FPS` frames/s, is set aside
with a warning naming the attribute (``rate_problem``), and the next one (or ``--fps``) is used.
Imaging region and millimetres: the 2-D region of ``SequenceOfUltrasoundRegions`` (tissue region
first, largest first) with its ``PhysicalDeltaX/Y`` in cm; without one, ``PixelSpacing`` (mm). Each
is validated here, once, for every command: spacings must be finite and positive (two values for
``PixelSpacing``), else the file is measured in pixels with a warning naming the attribute
(``calibration_problem``), never 0 mm, negative mm or NaN in a JSON file. Small deviations of real
scanners (a misspelled character set, a region ending one past the last pixel, empty integer
attributes) are read as meant and said once (``quirks``, :mod:`flanet.data.dicom_header`); any other
malformed header value is a :class:`DataError` naming the file, never a crash.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_voi_lut, iter_pixels, pixel_array

from flanet.data.deidentify import withheld_tags
from flanet.data.dicom_header import header_int, inclusive_end, normalise_character_set
from flanet.data.errors import DataError, Problem
from flanet.limits import MAX_FPS

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom"})
_CM_UNITS = 3  # PhysicalUnitsX/YDirection code for centimetres (PS3.3 C.8.5.5.1.15)
_SPATIAL_2D = 1  # RegionSpatialFormat: 2-D (tissue or flow)
_TISSUE = 1  # RegionDataType: tissue


def is_dicom_file(path: Path) -> bool:
    """True for a ``.dcm``/``.dicom`` file, or any file with the ``DICM`` marker at byte 128 (PACS exports)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if not path.is_file() or path.suffix:
        return False
    with path.open("rb") as file:
        return file.read(132)[128:132] == b"DICM"


@dataclass(frozen=True)
class Region:
    """An imaging region in frame pixels: columns ``x0..x1`` and rows ``y0..y1``, inclusive (as in DICOM)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1


@dataclass(frozen=True)
class DicomInfo:
    """What a DICOM cine says about its frames (no patient data: see :mod:`flanet.data.deidentify`).

    Attributes:
        fps: frame rate from the header, or None when it states none.
        fps_source: the attribute ``fps`` came from, or None.
        region: the imaging region inside the frame, or None (whole frame).
        spacing_mm: ``(x, y)`` millimetres per pixel, or None without calibration.
        calibration_source: ``"SequenceOfUltrasoundRegions"``, ``"PixelSpacing"`` or None.
        region_problem: why the file's ultrasound regions were not used, or None.
        calibration_problem: why a calibration attribute was set aside (measurements in pixels), or None.
        rate_problem: why a frame-rate attribute was set aside, or None.
        burned_in: the file declares ``BurnedInAnnotation = YES`` (identifiers drawn into the pixels).
        regions: every 2-D ultrasound region that fits the frame (what is kept when text outside them is blanked).
        withheld: header attributes carrying identifiers, never written to any output.
        quirks: deviations from the standard read as meant (:mod:`flanet.data.dicom_header`), one line each.
    """

    frame_count: int
    width: int
    height: int
    fps: float | None
    fps_source: str | None
    transfer_syntax: str
    photometric: str
    region: Region | None
    spacing_mm: tuple[float, float] | None
    calibration_source: str | None
    region_problem: str | None
    withheld: tuple[str, ...]
    calibration_problem: str | None = None
    rate_problem: str | None = None
    burned_in: bool = False
    regions: tuple[Region, ...] = ()
    quirks: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Every header value set aside (region, calibration, rate) or read as meant (quirks), for warnings."""
        return [*self.quirks, *(p for p in (self.region_problem, self.calibration_problem, self.rate_problem) if p)]

    def summary(self) -> dict[str, object]:
        """Technical header facts for ``summary.json`` (the withheld attributes are named, never their values)."""
        region = self.region
        return {
            "transfer_syntax": self.transfer_syntax, "photometric_interpretation": self.photometric,
            "frames": self.frame_count, "fps_source": self.fps_source,
            "image_region": None if region is None else [region.x0, region.y0, region.x1, region.y1],
            "burned_in_annotation": self.burned_in,
            "region_problem": self.region_problem, "calibration_problem": self.calibration_problem,
            "rate_problem": self.rate_problem, "header_quirks": list(self.quirks),
            "calibration": None if self.spacing_mm is None else {
                "source": self.calibration_source, "mm_per_pixel_x": self.spacing_mm[0],
                "mm_per_pixel_y": self.spacing_mm[1],
            },
            "deidentification": {
                "profile": "DICOM PS3.15 Annex E basic profile (attributes withheld from every output)",
                "withheld_tags": list(self.withheld),
            },
        }


def _positive(value: object) -> float | None:
    """A finite number above 0, else None (NaN, inf, 0, negative, text)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _frame_rate(ds: Dataset) -> tuple[float | None, str | None, str | None]:
    """``(frames/s, attribute, problem)``: the first usable rate attribute; the first one set aside, said why."""
    problem = None
    for keyword in ("FrameTime", "CineRate", "RecommendedDisplayFrameRate"):
        raw = ds.get(keyword)
        if raw is None or raw == "":
            continue
        value = _positive(raw)
        rate = None if value is None else 1000.0 / value if keyword == "FrameTime" else value
        if rate is not None and rate <= MAX_FPS:
            return rate, keyword, problem
        unit = " ms" if keyword == "FrameTime" else " frames/s"
        why = "not a positive number" if rate is None else f"{rate:g} frames/s, more than {MAX_FPS:g}"
        problem = problem or f"{keyword} {raw}{unit} is {why}: ignored"
    return None, None, problem


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """``PixelSpacing`` as ``(x, y)`` mm per pixel, or None and why it was set aside (None if absent)."""
    raw = ds.get("PixelSpacing")
    if raw is None or raw == "":
        return None, None
    values = list(raw) if isinstance(raw, (MultiValue, list, tuple)) else [raw]
    numbers = [_positive(v) for v in values]
    if len(numbers) != 2 or None in numbers:
        shown = "\\".join(str(v) for v in values)
        return None, f"PixelSpacing {shown} is not two positive millimetre values: ignored, measurements in pixels"
    return (numbers[1], numbers[0]), None  # DICOM order is (row spacing = y, column spacing = x)


_CORNERS = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")


def _ultrasound_region(
    ds: Dataset, width: int, height: int, quirks: list[str]
) -> tuple[Region | None, tuple[float, float] | None, str | None]:
    """The 2-D imaging region, its mm per pixel (when in cm), and why the regions were not usable.

    Deviations read as meant are appended to ``quirks`` (:mod:`flanet.data.dicom_header`).
    """
    candidates = []
    for number, item in enumerate(ds.get("SequenceOfUltrasoundRegions", []), 1):
        corners = [header_int(item, keyword) for keyword in _CORNERS]
        spatial = header_int(item, "RegionSpatialFormat")
        if spatial is None or None in corners:
            missing = [k for k, v in zip(("RegionSpatialFormat", *_CORNERS), (spatial, *corners)) if v is None]
            quirks.append(f"ultrasound region {number}: {', '.join(missing)} empty or not an integer: region skipped")
            continue
        if spatial != _SPATIAL_2D:
            continue
        region = Region(*corners)  # type: ignore[arg-type]
        if region.width <= 1 or region.height <= 1:
            continue
        tissue = header_int(item, "RegionDataType") == _TISSUE
        candidates.append((tissue, region.width * region.height, region, item))
    if not candidates:
        return None, None, None
    _, _, region, item = max(candidates, key=lambda c: (c[0], c[1]))
    x1, x_quirk = inclusive_end(region.x1, width, "RegionLocationMaxX1")
    y1, y_quirk = inclusive_end(region.y1, height, "RegionLocationMaxY1")
    quirks += [quirk for quirk in (x_quirk, y_quirk) if quirk]
    region = Region(region.x0, region.y0, x1, y1)
    if region.x1 >= width or region.y1 >= height:
        return None, None, (f"ultrasound region x {region.x0}..{region.x1}, y {region.y0}..{region.y1} does not fit "
                            f"the {width}x{height} frame (resampled file?): whole frame used, no calibration")
    units = (header_int(item, "PhysicalUnitsXDirection"), header_int(item, "PhysicalUnitsYDirection"))
    deltas = (_positive(item.get("PhysicalDeltaX")), _positive(item.get("PhysicalDeltaY")))
    if units == (_CM_UNITS, _CM_UNITS) and deltas[0] is not None and deltas[1] is not None:
        return region, (deltas[0] * 10.0, deltas[1] * 10.0), None
    return region, None, None


def _fitting_regions(ds: Dataset, width: int, height: int) -> tuple[Region, ...]:
    """Every 2-D ultrasound region of the file, cut to the ``width`` x ``height`` frame (to keep when blanking)."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions", []):
        try:
            if int(item.get("RegionSpatialFormat", 0)) != _SPATIAL_2D:
                continue
            region = Region(*(int(item.get(k, 0)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                                            "RegionLocationMaxX1", "RegionLocationMaxY1")))
        except (TypeError, ValueError):
            continue
        region = Region(region.x0, region.y0, min(region.x1, width - 1), min(region.y1, height - 1))  # overhang
        if 0 <= region.x0 < region.x1 and 0 <= region.y0 < region.y1:
            regions.append(region)
    return tuple(regions)


def _region_delta_problem(ds: Dataset) -> str | None:
    """Why the used region's cm deltas were set aside (not finite and positive), or None."""
    for item in ds.get("SequenceOfUltrasoundRegions", []):
        units = (header_int(item, "PhysicalUnitsXDirection"), header_int(item, "PhysicalUnitsYDirection"))
        raw = (item.get("PhysicalDeltaX"), item.get("PhysicalDeltaY"))
        if units == (_CM_UNITS, _CM_UNITS) and None in (_positive(raw[0]), _positive(raw[1])):
            return f"PhysicalDeltaX/Y {raw[0]}/{raw[1]} cm are not positive numbers: ignored"
    return None


def _open_dataset(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError("DICOM file not found", path)
    if path.stat().st_size == 0:
        raise DataError("empty DICOM file (0 bytes)", path)
    pydicom_log = logging.getLogger("pydicom")
    level, pydicom_log.level = pydicom_log.level, logging.ERROR  # its warnings are caught below, said once by us
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"not a readable DICOM file ({error})", path) from error
    finally:
        pydicom_log.level = level
    if any("End of file reached" in str(w.message) for w in caught):
        raise DataError("truncated DICOM file (it ends inside the pixel data)", path)
    if "PixelData" not in ds:
        raise DataError("DICOM file holds no pixel data (truncated, or not an image)", path)
    return ds


def _check_length(ds: Dataset, path: Path) -> None:
    """Uncompressed pixel data must hold every frame the header announces."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = 2 if str(ds.PhotometricInterpretation) == "YBR_FULL_422" else int(ds.SamplesPerPixel)  # 4:2:2
    expected = int(ds.Rows) * int(ds.Columns) * samples * frames * int(ds.BitsAllocated) // 8
    if len(ds.PixelData) < expected:
        raise DataError(f"truncated pixel data ({len(ds.PixelData)} of {expected} bytes for {frames} frames)", path)


def read_dicom(path: str | Path) -> tuple[Dataset, DicomInfo]:
    """Read a DICOM file's header and pixel bytes (not decoded) and describe it.

    Raises:
        DataError: naming the file when it is missing, empty, not DICOM, truncated or has no pixel data.
    """
    path = Path(path)
    ds = _open_dataset(path)
    try:
        return ds, _describe(ds, path)
    except DataError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
        raise DataError(f"malformed DICOM header ({type(error).__name__}: {error})", path) from error


def _describe(ds: Dataset, path: Path) -> DicomInfo:
    """:class:`DicomInfo` of an open data set (its character set corrected in place when misspelled)."""
    quirks = [quirk] if (quirk := normalise_character_set(ds)) else []
    _check_length(ds, path)
    width, height = int(ds.Columns), int(ds.Rows)
    fps, fps_source, rate_problem = _frame_rate(ds)
    region, spacing, problem = _ultrasound_region(ds, width, height, quirks)
    source = "SequenceOfUltrasoundRegions" if spacing else None
    calibration_problem = None if spacing or problem else _region_delta_problem(ds)
    if spacing is None and problem is None:
        spacing, spacing_problem = _pixel_spacing(ds)
        source = "PixelSpacing" if spacing else None
        calibration_problem = calibration_problem or spacing_problem
    info = DicomInfo(
        frame_count=int(ds.get("NumberOfFrames", 1) or 1), width=width, height=height, fps=fps,
        fps_source=fps_source, transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        photometric=str(ds.PhotometricInterpretation), region=region, spacing_mm=spacing,
        calibration_source=source, region_problem=problem, withheld=withheld_tags(ds),
        calibration_problem=calibration_problem, rate_problem=rate_problem, quirks=tuple(quirks),
        burned_in=str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES",
        regions=_fitting_regions(ds, width, height),
    )
    return info


def probe_dicom(path: str | Path) -> DicomInfo:
    """:func:`read_dicom` without keeping the data set."""
    return read_dicom(path)[1]


def _to_rgb(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """One decoded frame (as pydicom returns it) -> uint8 RGB ``(H, W, 3)``."""
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
        return (frame >> 8).astype(np.uint8) if frame.dtype.itemsize > 1 else frame.astype(np.uint8)
    if frame.ndim == 2:
        bits = int(ds.BitsStored)
        if bits > 8 or frame.dtype != np.uint8:
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                frame = apply_voi_lut(frame, ds)
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            low = -(2 ** (bits - 1)) if signed else 0
            frame = np.clip((frame.astype(np.float32) - low) * (255.0 / (2**bits - 1)) + 0.5, 0, 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            frame = 255 - frame
        return np.repeat(frame[:, :, None], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3].astype(np.uint8))


def _decode_error(path: Path, index: int | None, error: Exception) -> DataError:
    where = f"frame {index}" if index is not None else "a frame"
    return DataError(f"cannot decode {where} ({type(error).__name__}: {error})", path)


def iter_dicom_frames(path: str | Path, ds: Dataset | None = None) -> Iterator[np.ndarray]:
    """Decode a DICOM file one uint8 RGB frame at a time.

    Raises:
        DataError: for an unreadable or truncated file, or a frame that cannot be decoded.
    """
    path = Path(path)
    ds = ds if ds is not None else read_dicom(path)[0]
    native_422 = not ds.file_meta.TransferSyntaxUID.is_compressed and ds.PhotometricInterpretation == "YBR_FULL_422"
    if native_422:  # pydicom 3.0's iter_pixels mis-sizes every frame after the first of native 4:2:2 data
        count = int(ds.get("NumberOfFrames", 1) or 1)
        frames: Iterator[np.ndarray] = (pixel_array(ds, index=i) for i in range(count))
    else:
        frames = iter_pixels(ds)
    index = 0
    try:
        for frame in frames:
            yield _to_rgb(frame, ds)
            index += 1
    except DataError:
        raise
    except Exception as error:  # decoder plugins raise many types (RuntimeError, ValueError, ...)
        raise _decode_error(path, index, error) from error


def read_dicom_frame(ds: Dataset, index: int, path: Path) -> np.ndarray:
    """Decode frame ``index`` of an open data set as uint8 RGB."""
    try:
        return _to_rgb(pixel_array(ds, index=index), ds)
    except Exception as error:
        raise _decode_error(path, index, error) from error


def dicom_problems(path: str | Path) -> list[Problem]:
    """What ``flanet data check`` reports about a DICOM cine: every frame decoded; region, rate, calibration."""
    path = Path(path)
    try:
        ds, info = read_dicom(path)
        decoded = sum(1 for _ in iter_dicom_frames(path, ds))
    except DataError as error:
        return [Problem("error", path, f"unreadable DICOM: {error.message}")]
    problems = [Problem("note", path, f"DICOM {info.transfer_syntax}, {info.photometric}, {decoded} frame(s), "
                                      f"{info.width}x{info.height}")]
    if decoded != info.frame_count:
        problems.append(Problem("error", path, f"header announces {info.frame_count} frames, {decoded} decoded"))
    if info.fps is None:
        problems.append(Problem("warning", path, "no FrameTime, CineRate or RecommendedDisplayFrameRate: "
                                                 "overlays use the --fps default"))
    problems += [Problem("warning", path, problem) for problem in info.problems]
    if info.burned_in:
        what = ("predict blanks everything outside its ultrasound region(s) in the overlay and viewer" if info.regions
                else "it has no ultrasound region: predict refuses it unless --allow-burned-in")
        problems.append(Problem("warning", path, f"declares BurnedInAnnotation YES (identifiers in the pixels): {what}"))
    if info.region is not None and not info.region_problem:
        problems.append(Problem("note", path, f"ultrasound imaging region x {info.region.x0}..{info.region.x1}, "
                                              f"y {info.region.y0}..{info.region.y1} (what predict segments)"))
    if info.spacing_mm is None:
        problems.append(Problem("note", path, "no calibration: measurements in pixels"))
    return problems
