"""Reading frames and masks, and turning a frame into model input.

Frames are read with OpenCV from the file's bytes, so 8/16-bit, grayscale, RGB(A)
and palette images all come out as uint8 RGB ``(H, W, 3)``. Masks come out as bool
``(H, W)``; palette PNG masks are read by palette index (PIL), every other mask is
binarised at half its maximum value (0/1, 0/255 and 0/65535 masks all work).

An image whose header declares more than :func:`max_image_pixels` pixels (100 MP unless the
``FLANET_MAX_IMAGE_PIXELS`` environment variable says otherwise) is refused before it is decoded:
a few hundred kilobytes of PNG can declare 20000x20000 pixels and cost gigabytes to decode.
"""

from __future__ import annotations

import os
import threading
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import torch

from flanet.data.errors import DataError
from flanet.data.rle import EncodedMask

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
#: Environment variable holding the largest number of pixels an image may declare.
PIXEL_LIMIT_VARIABLE = "FLANET_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_PIL_LIMIT_LOCK = threading.Lock()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


def is_image_file(path: Path) -> bool:
    """True for a file whose extension is a supported image format."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def read_bytes(path: str | Path) -> bytes:
    """Read a whole image file, rejecting missing, empty and truncated files.

    Raises:
        DataError: naming the file, when it is missing, empty or visibly truncated.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read file ({error.strerror or error})", path) from error
    if not data:
        raise DataError("empty file (0 bytes)", path)
    if truncation := truncation_problem(data):
        raise DataError(truncation, path)
    check_pixel_limit(data, path)
    return data


def max_image_pixels() -> int:
    """The pixel limit: ``FLANET_MAX_IMAGE_PIXELS`` when set, else 100 million.

    Raises:
        ValueError: the variable is not a positive whole number (named).
    """
    text = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(float(text))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(f"environment variable {PIXEL_LIMIT_VARIABLE}={text!r}: expected a positive number of pixels")
    return limit


def check_pixel_limit(data: bytes, path: str | Path) -> None:
    """Refuse encoded image bytes whose header declares more than :func:`max_image_pixels` pixels.

    Only the header is read (PIL's lazy open); an image PIL cannot identify is left to the decoder.

    Raises:
        DataError: naming the file and the declared size.
    """
    from PIL import Image

    limit = max_image_pixels()
    try:
        with _PIL_LIMIT_LOCK:
            # PIL's own guard would refuse without the size; ours applies right below, so lift it for the header
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(BytesIO(data)) as image:
                    width, height = image.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:  # noqa: BLE001 - not an image PIL knows: OpenCV decides (and names the file)
        return
    if width * height > limit:
        raise DataError(f"image header declares {width}x{height} pixels, more than the limit of {limit / 1e6:g} MP; "
                        f"refused before decoding (raise it with the environment variable {PIXEL_LIMIT_VARIABLE})",
                        path)


def truncation_problem(data: bytes) -> str | None:
    """Describe why an encoded PNG/JPEG is truncated, or None when its end marker is present."""
    if data.startswith(_PNG_SIGNATURE) and _PNG_END not in data[-64:]:
        return "truncated PNG (no IEND chunk at the end of the file)"
    if data.startswith(b"\xff\xd8") and not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
        return "truncated JPEG (no end-of-image marker)"
    return None


def decode_unchanged(data: bytes, path: str | Path) -> np.ndarray:
    """Decode image bytes with ``cv2.IMREAD_UNCHANGED`` (keeps bit depth and channels)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise DataError("not a readable image (OpenCV cannot decode it)", path)
    return array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def decoded_to_rgb(array: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (gray, BGR, BGRA; 8/16-bit/float) to uint8 RGB (H, W, 3)."""
    array = _to_uint8(array)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    if array.shape[2] == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """Read a frame as uint8 RGB ``(H, W, 3)``.

    Grayscale frames are replicated to 3 channels, 16-bit frames are scaled to 8 bits,
    alpha is dropped.

    Raises:
        DataError: for missing, empty, truncated or undecodable files.
    """
    return decoded_to_rgb(decode_unchanged(read_bytes(path), path))


def is_palette_png(data: bytes) -> bool:
    """True for PNG bytes of an indexed-colour (palette) image."""
    # IHDR is the first chunk: colour type is byte 25 of the file; 3 = indexed colour.
    return data.startswith(_PNG_SIGNATURE) and len(data) > 25 and data[25] == 3


def read_mask_values(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Read a mask's raw values as a 2-D array (palette index for palette PNGs, max over colour channels).

    Args:
        path: the mask file (named in errors).
        data: its bytes when already read (from :func:`read_bytes`).
    """
    data = read_bytes(path) if data is None else data
    if is_palette_png(data):
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(data)) as image:
            return np.asarray(image)
    array = decode_unchanged(data, path)
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2)
    return array


def binarise_mask(values: np.ndarray) -> np.ndarray:
    """Binarise mask values at half their maximum: 0/1, 0/255 and 0/65535 masks all map to {0, 1}."""
    return values > (float(values.max()) / 2.0)


def read_mask(path: str | Path | EncodedMask) -> np.ndarray:
    """Read a mask as bool ``(H, W)`` (lesion = True): a mask file, or a mask held in an annotation file.

    Raises:
        DataError: for missing, empty, truncated or undecodable files.
    """
    if isinstance(path, EncodedMask):
        return path.decode()
    return binarise_mask(read_mask_values(path))


def resize_rgb(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a uint8 frame ``(H, W[, C])`` to ``image_size x image_size``, as in training.

    Shrinking uses pixel-area averaging (anti-aliased, like PIL's bilinear resize that
    torchvision applies, and kind to speckle); enlarging uses bilinear interpolation.
    """
    height, width = rgb.shape[:2]
    if height == image_size and width == image_size:
        return rgb
    shrink = height >= image_size and width >= image_size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(rgb, (image_size, image_size), interpolation=interpolation)


_SCALE = (1.0 / (255.0 * np.array(IMAGENET_STD, np.float32)))[:, None, None]  # (3, 1, 1)
_SHIFT = (np.array(IMAGENET_MEAN, np.float32) / np.array(IMAGENET_STD, np.float32))[:, None, None]


def normalise(frames: np.ndarray) -> torch.Tensor:
    """ImageNet-normalise uint8 RGB frames ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)``.

    Runs in numpy (single-threaded, two passes): torch's intra-op threads only add contention
    for arrays this small, inside DataLoader workers or beside a training process.
    """
    channels_first = np.moveaxis(frames, -1, -3)
    out = np.empty(channels_first.shape, np.float32)
    np.multiply(channels_first, _SCALE, out=out, casting="unsafe")
    out -= _SHIFT
    return torch.from_numpy(out)


def to_model_input(rgb: np.ndarray, image_size: int = 352) -> torch.Tensor:
    """Resize a uint8 RGB frame ``(H, W, 3)`` and normalise it: float32 ``(3, S, S)``.

    Identical to the evaluation-time preprocessing of :class:`flanet.data.ClipDataset`.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"expected a uint8 RGB array (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return normalise(resize_rgb(rgb, image_size))
