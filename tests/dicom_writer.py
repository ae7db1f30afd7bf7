"""Writing small DICOM cine files with pydicom, one per transfer syntax and photometric interpretation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
IDENTIFIERS = {
    "PatientName": "Doe^Jane", "PatientID": "MRN-48151623", "PatientBirthDate": "19610419",
    "AccessionNumber": "ACC-9931", "InstitutionName": "St Example Hospital", "ReferringPhysicianName": "Who^Doctor",
    "OperatorsName": "Sonographer^Sam", "StationName": "USROOM7", "StudyID": "STUDY-5521",
}


def colour_frames(count: int = 4, height: int = 48, width: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 frames: smooth colour gradients with a moving bright square."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for index in range(count):
        frames[index, ..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
        frames[index, ..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
        frames[index, ..., 2] = 90
        frames[index, 10:26, 8 + 4 * index : 24 + 4 * index] = (230, 200, 40)
    return frames


def _base(syntax: str, identifiers: bool) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the final syntax is set once the pixels are in place
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "US"
    if identifiers:
        for keyword, value in IDENTIFIERS.items():
            setattr(ds, keyword, value)
    return ds


def _native_ybr422(rgb: np.ndarray) -> bytes:
    """Native YBR_FULL_422 bytes: per pair of pixels Y1 Y2 Cb Cr (PS3.5 8.2.1)."""
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    packed = np.empty((*ybr.shape[:-2], ybr.shape[-2] // 2, 4), np.uint8)
    packed[..., 0] = ybr[..., 0::2, 0]
    packed[..., 1] = ybr[..., 1::2, 0]
    packed[..., 2] = ybr[..., 0::2, 1]
    packed[..., 3] = ybr[..., 0::2, 2]
    return packed.tobytes()


def write_cine(
    path: Path,
    frames: np.ndarray,
    syntax: str = ExplicitVRLittleEndian,
    photometric: str = "RGB",
    *,
    frame_time_ms: float | None = 40.0,
    cine_rate: float | None = None,
    display_rate: float | None = None,
    region: tuple[int, int, int, int] | None = None,
    delta_cm: tuple[float, float] = (0.01, 0.02),
    identifiers: bool = False,
    bits_stored: int | None = None,
) -> Path:
    """Write ``frames`` (N, H, W, 3) RGB or (N, H, W) gray as a DICOM cine; returns ``path``.

    ``photometric`` is what the file stores: RGB / YBR_FULL / YBR_FULL_422 from RGB frames, PALETTE COLOR
    (the frames' red channel as indices into a gray-ramp-times-(1, 0.5, 0.25) lookup table),
    MONOCHROME1 (stored inverted) / MONOCHROME2 from gray frames.
    """
    ds = _base(syntax, identifiers)
    gray = frames.ndim == 3
    if photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        stored = frames if gray else frames[..., 0]
        if photometric == "MONOCHROME1":
            stored = 255 - stored
        if bits_stored and bits_stored > 8:
            stored = stored.astype(np.uint16) << (bits_stored - 8)
        ds.set_pixel_data(np.ascontiguousarray(stored), photometric, bits_stored or 8)
    else:
        ds.set_pixel_data(np.ascontiguousarray(frames), "RGB", 8)
    if photometric == "PALETTE COLOR":
        ramp = np.arange(256, dtype=np.uint16) * 257
        for colour, scale in (("Red", 1.0), ("Green", 0.5), ("Blue", 0.25)):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", (ramp * scale).astype("<u2").tobytes())
    if photometric == "YBR_FULL":
        ds.PixelData = convert_color_space(frames, "RGB", "YBR_FULL").tobytes()
        ds.PhotometricInterpretation = "YBR_FULL"
    elif photometric == "YBR_FULL_422" and syntax != JPEGBaseline8Bit:
        ds.PixelData = _native_ybr422(frames)
        ds.PhotometricInterpretation = "YBR_FULL_422"
    if syntax == JPEGBaseline8Bit:
        fragments = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=95, subsampling=1)
            fragments.append(buffer.getvalue())
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422" if not gray else "MONOCHROME2"
        ds.LossyImageCompression = "01"
    elif syntax in (RLELossless, JPEG2000Lossless):
        ds.compress(syntax, generate_instance_uid=False)
    elif syntax == ExplicitVRBigEndian and ds.BitsAllocated == 16:
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword, value in (("FrameTime", frame_time_ms), ("CineRate", cine_rate),
                           ("RecommendedDisplayFrameRate", display_rate)):
        if value is not None:
            setattr(ds, keyword, value)
    if region is not None:
        item = Dataset()
        item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
        item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = region
        item.PhysicalUnitsXDirection = item.PhysicalUnitsYDirection = 3
        item.PhysicalDeltaX, item.PhysicalDeltaY = delta_cm
        ds.SequenceOfUltrasoundRegions = [item]
    implicit = syntax == ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian
    ds.save_as(path, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
    return path
