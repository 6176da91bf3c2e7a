"""Image files in and out: the one place bsrn-edge reads and writes PNG, JPEG, WebP and TIFF (and reads BMP).

Reading gives a :class:`Picture`: the pixels with the EXIF orientation already applied (as a viewer shows
them), the ICC profile, and the EXIF with its Orientation reset to 1. Writing is atomic: the destination is
either absent or complete.

What each output format keeps:

========  ==========  =====  ===  ===============================================================
format    bit depth   alpha  ICC  EXIF
========  ==========  =====  ===  ===============================================================
PNG       8 and 16    yes    yes  yes (``eXIf`` chunk)
TIFF      8 and 16    yes    yes  descriptive tags only: ImageDescription, Make, Model, Software,
                                  DateTime, Artist, Copyright (tifffile writes no EXIF sub-IFD)
WebP      8           yes    yes  yes
JPEG      8           no     yes  yes (alpha is dropped)
========  ==========  =====  ===  ===============================================================

16-bit pixels written to an 8-bit-only format keep their high byte. Libraries: Pillow for PNG (8-bit),
JPEG, WebP and BMP; :mod:`.png16` for 16-bit PNG (imagecodecs' libpng when installed,
else pypng and zlib); ``tifffile`` for TIFF (the ``formats`` extra; without it TIFFs are still read,
as 8-bit, through Pillow, and writing TIFF asks for the extra). LZW-, JPEG- and CCITT-compressed TIFFs
also need ``imagecodecs`` (the same extra); deflate, PackBits and uncompressed ones do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import InputError

from .atomic import write_atomic
from .formats import MAX_PIXELS, MAX_SIDE, OUTPUT_FORMATS, Picture
from .pillow import read_with_pillow, upright_exif, write_with_pillow
from .png16 import encode_png16, png_header
from .tiff import read_tiff, write_tiff

__all__ = ["read_image", "read_rgb", "write_image"]


def read_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> Picture:
    """Read an image file as a :class:`Picture` (orientation applied, ICC and EXIF kept).

    Formats: whatever Pillow opens (PNG, JPEG, WebP, BMP, ...), 16-bit PNG through
    :mod:`.png16`, and TIFF through tifffile when it is installed. Of a multi-page TIFF
    only the first page is read. Files with more than ``max_pixels`` pixels are refused before decoding
    (decompression bombs). Every refusal is an :class:`InputError` naming the file.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(33)  # enough for a TIFF signature and a PNG's IHDR: the file is opened once for both
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and available("tifffile"):
        return read_tiff(path, max_pixels)
    header = png_header(head)
    return read_with_pillow(path, max_pixels, png16=header is not None and header[0] == 16)



def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB, as Pillow converts it (datasets, calibration and test images)."""
    Image = require("PIL.Image")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such image file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc


def write_image(pixels: np.ndarray, dest: Path, fmt: str, *, icc: bytes | None = None, exif: bytes | None = None,
                lossless: bool = False, quality: int = 95) -> None:
    """Encode ``pixels`` as ``fmt`` ("PNG", "JPEG", "WEBP" or "TIFF") and write ``dest`` atomically.

    ``pixels``: H×W, H×W×1, H×W×3 or H×W×4, uint8 or uint16. ``icc`` and ``exif`` (as
    :attr:`Picture.exif`) are kept as the module docstring's table says; EXIF is written with
    Orientation 1, since the pixels are stored the way they are shown. ``quality`` applies to JPEG
    and lossy WebP. ``lossless=True`` makes WebP lossless (exact RGB, also under transparent pixels);
    PNG and TIFF are lossless anyway, and JPEG has no lossless mode, so asking for it is an InputError.
    On any error ``dest`` is left as it was and no temporary file remains.
    """
    fmt = fmt.upper()
    if fmt not in OUTPUT_FORMATS.values():
        raise InputError(f"cannot write {dest}: unknown format {fmt!r}; expected one of "
                         f"{', '.join(OUTPUT_FORMATS.values())}")
    if lossless and fmt == "JPEG":
        raise InputError(f"cannot write {dest}: JPEG has no lossless mode; choose png, webp or tif")
    arr = _checked_pixels(pixels, dest)
    if fmt in MAX_SIDE and max(arr.shape[:2]) > MAX_SIDE[fmt]:
        raise InputError(f"cannot write {dest}: {fmt} images are at most {MAX_SIDE[fmt]} px a side, this one is "
                         f"{arr.shape[1]}×{arr.shape[0]}; choose png or tif")
    exif = upright_exif(exif)
    if fmt == "TIFF":
        write_tiff(arr, dest, icc, exif)
    elif fmt == "PNG" and arr.dtype == np.uint16:
        write_atomic(dest, encode_png16(arr, icc, exif))
    else:
        write_with_pillow(arr, dest, fmt, icc, exif, lossless, quality)


def _checked_pixels(pixels: np.ndarray, dest: Path) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot write {dest}: pixels must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(f"cannot write {dest}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, got {arr.shape}")
    return arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr

