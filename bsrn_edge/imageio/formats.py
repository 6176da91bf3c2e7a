"""What bsrn-edge reads and writes: image suffixes, output formats and their abilities, the size limit,
and :class:`Picture`, an image read from a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge.errors import InputError

from .png16 import apply_orientation

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "OUTPUT_FORMATS", "FORMATS_HINT", "Picture", "output_ext", "output_format",
           "holds_alpha", "holds_16_bit", "bomb", "check_size", "as_grey_rgb_rgba", "picture",
           "ORIENTATION", "TIFF_EXIF_TAGS", "EXIF_IFD", "GPS_IFD", "MAX_SIDE"]

# File suffixes (lower case) that every folder scan treats as images: datasets, calibration sets, bsrn-upscale.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS: int = 64_000_000  # LR pixels; larger files are treated as decompression bombs
#: output file extension (no dot) → format name; ``jpeg`` and ``tiff`` are accepted by :func:`output_format`
OUTPUT_FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}
_ALIASES = {"jpeg": "jpg", "tiff": "tif"}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
_16_BIT_FORMATS = frozenset({"PNG", "TIFF"})
MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}  # the formats' own limits, checked before encoding
FORMATS_HINT = "pip install 'bsrn-edge[formats]'"
ORIENTATION = 0x0112
# EXIF tags that TIFF keeps in its first IFD and that describe the picture, not the file's layout
TIFF_EXIF_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # ImageDescription … Copyright
EXIF_IFD, GPS_IFD = 0x8769, 0x8825


@dataclass(frozen=True)
class Picture:
    """An image read from a file.

    ``pixels``: H×W grey, H×W×3 RGB or H×W×4 RGBA (straight alpha), uint8 or uint16, with the EXIF
    orientation already applied. ``icc``: the embedded ICC profile. ``exif``: the file's EXIF as
    ``Image.Exif.tobytes()`` gives it (what Pillow's ``save(exif=...)`` takes), Orientation reset to 1
    because the pixels are already turned. ``format``: the source format ("PNG", "JPEG", "TIFF", ...).
    """

    pixels: np.ndarray
    icc: bytes | None
    exif: bytes | None
    format: str


def output_ext(ext: str) -> str | None:
    """The canonical output extension (a key of :data:`OUTPUT_FORMATS`) for ``ext`` (``"JPEG"``, ``".tiff"``,
    ...), or None when bsrn-edge does not write that format (``"bmp"``)."""
    key = ext.lower().lstrip(".")
    key = _ALIASES.get(key, key)
    return key if key in OUTPUT_FORMATS else None


def output_format(ext: str) -> str:
    """The format name for an output extension (``"jpg"``, ``".JPEG"``, ``"tiff"``, ...); InputError if unknown."""
    key = output_ext(ext)
    if key is None:
        choices = ", ".join(sorted(OUTPUT_FORMATS))
        raise InputError(f"{ext!r} is not an output format bsrn-edge writes; choose one of {choices} "
                         f"(jpeg and tiff are accepted too)")
    return OUTPUT_FORMATS[key]


def holds_alpha(fmt: str) -> bool:
    """True when format ``fmt`` ("PNG", "JPEG", ...) stores an alpha channel (JPEG does not)."""
    return fmt.upper() in _ALPHA_FORMATS


def holds_16_bit(fmt: str) -> bool:
    """True when format ``fmt`` stores 16 bits per sample (PNG, TIFF); others get the high byte."""
    return fmt.upper() in _16_BIT_FORMATS


def bomb(path: Path, detail: str) -> InputError:
    return InputError(f"{path}: refused as a possible decompression bomb ({detail}); "
                      f"pass --max-pixels N to allow it (max_pixels= in Python), or split the image")


def check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise bomb(path, f"{width}×{height} px, more than {max_pixels:,}")


def as_grey_rgb_rgba(arr: np.ndarray) -> np.ndarray:
    """H×W(×1), H×W×2 (grey + alpha), H×W×3 or H×W×4 → H×W, H×W×3 or H×W×4: grey + alpha becomes RGBA."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 2:
        return np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def picture(arr: np.ndarray, icc: bytes | None, exif: Any, fmt: str) -> Picture:
    """Apply the EXIF orientation to ``arr`` and reset it to 1 in the EXIF kept with the picture."""
    orientation = exif.get(ORIENTATION, 1) if exif else 1
    if exif and ORIENTATION in exif:
        exif[ORIENTATION] = 1
    return Picture(apply_orientation(arr, orientation), icc, exif.tobytes() if exif else None, fmt)

