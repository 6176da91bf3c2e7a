"""TIFF through tifffile (the ``formats`` extra): 8/16-bit grey, RGB and RGBA in and out, alpha straight."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import BsrnEdgeError, InputError

from .atomic import atomic_file
from .formats import FORMATS_HINT, TIFF_EXIF_TAGS, Picture, as_grey_rgb_rgba, check_size, picture
from .pillow import pillow, read_with_pillow, tiff_exif

__all__ = ["read_tiff", "write_tiff"]

_MINISWHITE, _MINISBLACK, _RGB, _YCBCR = 0, 1, 2, 6
_JPEG_COMPRESSIONS = (6, 7, 33007, 34892)


def read_tiff(path: Path, max_pixels: int) -> Picture:
    """The first page of a TIFF through tifffile (16-bit RGB survives); Pillow for what it does not map."""
    tifffile = require("tifffile")
    try:
        with tifffile.TiffFile(path) as tf:
            decoded = _first_page(path, tf.pages[0], max_pixels, tifffile)
    except (BsrnEdgeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises TiffFileError, ValueError, struct.error, zlib.error ...
        raise InputError(f"{path}: corrupt, truncated or unsupported TIFF ({type(exc).__name__}: {exc})") from exc
    if decoded is None:
        return read_with_pillow(path, max_pixels)
    arr, icc = decoded
    return picture(arr, icc, _tiff_exif_of(path, max_pixels), "TIFF")


def _first_page(path: Path, page: Any, max_pixels: int, tifffile: ModuleType) -> tuple[np.ndarray, bytes | None] | None:
    """(pixels, ICC profile) of a TIFF page; None for the pages left to Pillow's conversion to 8-bit RGB
    (palette, CMYK, Lab, uncompressed YCbCr). Float samples are refused rather than clipped to black."""
    check_size(path, page.imagewidth, page.imagelength, max_pixels)
    if page.dtype is not None and page.dtype.kind in "fc":
        raise InputError(f"{path}: {page.dtype} TIFF samples (HDR or scientific data) are not supported; "
                         f"convert the file to 8 or 16-bit integers")
    if not _tifffile_maps(page):
        return None
    _check_codec(path, page, tifffile)
    icc = _tag(page, 34675)  # InterColorProfile
    return _tiff_pixels(page), bytes(icc) if icc else None


def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _tifffile_maps(page: Any) -> bool:
    """True for the pages :func:`_tiff_pixels` turns into grey/RGB/RGBA itself."""
    photometric = int(page.photometric)
    colour = photometric in (_MINISWHITE, _MINISBLACK, _RGB) or (
        photometric == _YCBCR and int(page.compression) in _JPEG_COMPRESSIONS)
    return colour and page.dtype in (np.uint8, np.uint16, np.bool_) and set(page.axes) <= set("YXS")


def _check_codec(path: Path, page: Any, tifffile: ModuleType) -> None:
    """InputError naming the compression when tifffile cannot decompress this page (most need imagecodecs)."""
    compression = page.compression
    if int(compression) == 1 or compression in tifffile.TIFF.DECOMPRESSORS:
        return
    name = getattr(compression, "name", str(compression))
    if available("imagecodecs"):
        raise InputError(f"{path}: TIFF compression {name} is not supported by tifffile/imagecodecs; "
                         f"save the file with deflate, LZW or no compression")
    raise InputError(f"{path}: this TIFF is {name}-compressed, which needs the imagecodecs package: "
                     f"{FORMATS_HINT} (or re-save the file with deflate or no compression)")


def _tiff_pixels(page: Any) -> np.ndarray:
    """The page's samples as grey, RGB or RGBA, 8 or 16 bits at full range, alpha straight."""
    arr = page.asarray()
    if page.axes.startswith("S"):  # planar configuration 2: one plane per sample
        arr = np.moveaxis(arr, 0, -1)
    arr = _full_range(arr, int(page.bitspersample))
    if int(page.photometric) == _MINISWHITE:  # 0 is white: turn it round (arr is a copy)
        grey = arr if arr.ndim == 2 else arr[:, :, 0]
        grey[...] = np.iinfo(arr.dtype).max - grey
    colours = 1 if int(page.photometric) in (_MINISWHITE, _MINISBLACK) else 3
    extras = [int(e) for e in page.extrasamples]
    if arr.ndim == 3 and arr.shape[2] > colours:
        alpha_at = next((i for i, e in enumerate(extras) if e in (1, 2)), None)  # associated or unassociated
        if alpha_at is None:
            arr = arr[:, :, :colours]
        else:
            alpha = arr[:, :, colours + alpha_at]
            colour = arr[:, :, :colours]
            if extras[alpha_at] == 1:
                colour = _unpremultiply(colour, alpha)
            arr = np.dstack([colour, alpha])
    return as_grey_rgb_rgba(np.ascontiguousarray(arr))


def _full_range(arr: np.ndarray, bits: int) -> np.ndarray:
    """Samples of ``bits`` bits (1, 4, 12, ...) scaled to the full range of uint8 (≤ 8 bits) or uint16."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    arr = arr.astype(dtype)  # bool (1-bit) → 0/1; a writable copy either way
    if bits in (8, 16):
        return arr
    top, full = (1 << bits) - 1, int(np.iinfo(dtype).max)
    return ((arr.astype(np.uint32) * full + top // 2) // top).astype(dtype)


def _unpremultiply(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight colour from colour premultiplied by ``alpha`` (TIFF associated alpha); 0 where alpha is 0."""
    full = float(np.iinfo(colour.dtype).max)
    a = alpha.astype(np.float64)[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(a > 0, colour * full / a, 0.0)
    return np.clip(np.rint(straight), 0, full).astype(colour.dtype)


def _tiff_exif_of(path: Path, max_pixels: int) -> Any:
    """The descriptive EXIF of a TIFF, read by Pillow from the header (None when Pillow cannot open it)."""
    Image = pillow(max_pixels)
    try:
        with Image.open(path) as im:
            return tiff_exif(im.getexif(), Image)
    except Exception:  # noqa: BLE001 - the pixels came from tifffile; metadata Pillow cannot parse is dropped
        return None


def write_tiff(arr: np.ndarray, dest: Path, icc: bytes | None, exif: bytes | None) -> None:
    """Deflate-compressed TIFF with horizontal prediction (no extra codec needed); RGBA as unassociated alpha."""
    tifffile = require("tifffile")
    kwargs: dict[str, Any] = {
        "photometric": "minisblack" if arr.ndim == 2 else "rgb",
        "compression": "zlib",
        "predictor": True,
        "metadata": None,  # no tifffile JSON in ImageDescription
        "software": False,
        "extratags": _tiff_tags(exif),
    }
    if arr.ndim == 3 and arr.shape[2] == 4:
        kwargs["extrasamples"] = ("unassalpha",)
    if icc:
        kwargs["iccprofile"] = icc
    with atomic_file(dest) as fh:
        tifffile.imwrite(fh, arr, **kwargs)


def _tiff_tags(exif: bytes | None) -> list[tuple[int, str, int, str, bool]]:
    """tifffile ``extratags`` for the descriptive ASCII EXIF tags TIFF keeps in its own IFD."""
    if not exif:
        return []
    Image = require("PIL.Image")
    tags = Image.Exif()
    tags.load(exif)
    out = []
    for code in TIFF_EXIF_TAGS:
        value = tags.get(code)
        if isinstance(value, str) and value.isascii():
            out.append((code, "s", 0, value.rstrip("\x00"), True))
    return out
