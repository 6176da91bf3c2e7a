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
JPEG, WebP and BMP; :mod:`bsrn_edge.runtime.png16` for 16-bit PNG (imagecodecs' libpng when installed,
else pypng and zlib); ``tifffile`` for TIFF (the ``formats`` extra; without it TIFFs are still read,
as 8-bit, through Pillow, and writing TIFF asks for the extra). LZW-, JPEG- and CCITT-compressed TIFFs
also need ``imagecodecs`` (the same extra); deflate, PackBits and uncompressed ones do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import atomic_path, write_atomic

from .png16 import apply_orientation, encode_png16, png_header, read_png16

__all__ = [
    "MAX_PIXELS",
    "OUTPUT_FORMATS",
    "Picture",
    "apply_orientation",
    "holds_16_bit",
    "holds_alpha",
    "output_ext",
    "output_format",
    "read_image",
    "write_image",
]

MAX_PIXELS: int = 64_000_000  # LR pixels; larger files are treated as decompression bombs
#: output file extension (no dot) → format name; ``jpeg`` and ``tiff`` are accepted by :func:`output_format`
OUTPUT_FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}
_ALIASES = {"jpeg": "jpg", "tiff": "tif"}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
_16_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}  # the formats' own limits, checked before encoding
FORMATS_HINT = "pip install 'bsrn-edge[formats]'"
_ORIENTATION = 0x0112
# EXIF tags that TIFF keeps in its first IFD and that describe the picture, not the file's layout
_TIFF_EXIF_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # ImageDescription … Copyright
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825


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


# -- formats ---------------------------------------------------------------------------------
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


# -- reading ---------------------------------------------------------------------------------
def read_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> Picture:
    """Read an image file as a :class:`Picture` (orientation applied, ICC and EXIF kept).

    Formats: whatever Pillow opens (PNG, JPEG, WebP, BMP, ...), 16-bit PNG through
    :mod:`~bsrn_edge.runtime.png16`, and TIFF through tifffile when it is installed. Of a multi-page TIFF
    only the first page is read. Files with more than ``max_pixels`` pixels are refused before decoding
    (decompression bombs). Every refusal is an :class:`InputError` naming the file.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(33)  # enough for a TIFF signature and a PNG's IHDR: the file is opened once for both
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and available("tifffile"):
        return _read_tiff(path, max_pixels)
    header = png_header(head)
    return _read_with_pillow(path, max_pixels, png16=header is not None and header[0] == 16)


def _bomb(path: Path, detail: str) -> InputError:
    return InputError(f"{path}: refused as a possible decompression bomb ({detail}); "
                      f"pass --max-pixels N to allow it (max_pixels= in Python), or split the image")


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _bomb(path, f"{width}×{height} px, more than {max_pixels:,}")


def _pillow(max_pixels: int) -> ModuleType:
    """PIL.Image, its own bomb limit raised to at least ``max_pixels`` (ours is checked, and names the flag)."""
    Image = require("PIL.Image")
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # only ever raised, so concurrent readers agree
    return Image


def _read_with_pillow(path: Path, max_pixels: int, png16: bool = False) -> Picture:
    """Pillow's reading, except for the pixels of a 16-bit PNG (``png16``, from the header), which Pillow
    would drop to 8 bits."""
    Image = _pillow(max_pixels)
    try:
        with Image.open(path) as im:  # reads the header only
            _check_size(path, im.width, im.height, max_pixels)
            icc = im.info.get("icc_profile") or None
            if im.format == "PNG" and png16:  # the 16-bit codec decodes the pixels
                exif = Image.Image.getexif(im)  # the base method: PNG's own would decode the pixels first
                arr = _as_grey_rgb_rgba(read_png16(path))
            else:
                im.load()
                exif = im.getexif()
                arr = _pillow_pixels(im)
            fmt = im.format or path.suffix.lstrip(".").upper()
            if fmt == "TIFF":
                exif = _tiff_exif(exif, Image)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb(path, str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InputError(f"{path}: corrupt, truncated or unsupported image ({exc})") from exc
    return _picture(arr, icc, exif, fmt)


def _pillow_pixels(im: Any) -> np.ndarray:
    """A loaded Pillow image as grey, RGB or RGBA; 16-bit grey stays uint16."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im).astype(np.uint16)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    if im.mode == "L":
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


def _as_grey_rgb_rgba(arr: np.ndarray) -> np.ndarray:
    """H×W(×1), H×W×2 (grey + alpha), H×W×3 or H×W×4 → H×W, H×W×3 or H×W×4: grey + alpha becomes RGBA."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 2:
        return np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def _picture(arr: np.ndarray, icc: bytes | None, exif: Any, fmt: str) -> Picture:
    """Apply the EXIF orientation to ``arr`` and reset it to 1 in the EXIF kept with the picture."""
    orientation = exif.get(_ORIENTATION, 1) if exif else 1
    if exif and _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return Picture(apply_orientation(arr, orientation), icc, exif.tobytes() if exif else None, fmt)


def _tiff_exif(tags: Any, Image: ModuleType) -> Any:
    """A fresh ``Image.Exif`` of a TIFF's descriptive tags (and its EXIF/GPS sub-IFDs).

    Pillow's EXIF of a TIFF is the whole first IFD, strip offsets and all; only the tags that describe
    the picture are meaningful in another file. The orientation is kept so that it can be applied.
    """
    exif = Image.Exif()
    for tag in (*_TIFF_EXIF_TAGS, _ORIENTATION):
        if tag in tags:
            exif[tag] = tags[tag]
    for ifd in (_EXIF_IFD, _GPS_IFD):
        sub = tags.get_ifd(ifd) if ifd in tags else {}
        if sub:
            exif.get_ifd(ifd).update(sub)
    return exif


# -- TIFF through tifffile -------------------------------------------------------------------
_MINISWHITE, _MINISBLACK, _RGB, _YCBCR = 0, 1, 2, 6
_JPEG_COMPRESSIONS = (6, 7, 33007, 34892)


def _read_tiff(path: Path, max_pixels: int) -> Picture:
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
        return _read_with_pillow(path, max_pixels)
    arr, icc = decoded
    return _picture(arr, icc, _tiff_exif_of(path, max_pixels), "TIFF")


def _first_page(path: Path, page: Any, max_pixels: int, tifffile: ModuleType) -> tuple[np.ndarray, bytes | None] | None:
    """(pixels, ICC profile) of a TIFF page; None for the pages left to Pillow's conversion to 8-bit RGB
    (palette, CMYK, Lab, uncompressed YCbCr). Float samples are refused rather than clipped to black."""
    _check_size(path, page.imagewidth, page.imagelength, max_pixels)
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
    return _as_grey_rgb_rgba(np.ascontiguousarray(arr))


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
    Image = _pillow(max_pixels)
    try:
        with Image.open(path) as im:
            return _tiff_exif(im.getexif(), Image)
    except Exception:  # noqa: BLE001 - the pixels came from tifffile; metadata Pillow cannot parse is dropped
        return None


# -- writing ---------------------------------------------------------------------------------
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
    if fmt in _MAX_SIDE and max(arr.shape[:2]) > _MAX_SIDE[fmt]:
        raise InputError(f"cannot write {dest}: {fmt} images are at most {_MAX_SIDE[fmt]} px a side, this one is "
                         f"{arr.shape[1]}×{arr.shape[0]}; choose png or tif")
    exif = _upright_exif(exif)
    if fmt == "TIFF":
        _write_tiff(arr, dest, icc, exif)
    elif fmt == "PNG" and arr.dtype == np.uint16:
        write_atomic(dest, encode_png16(arr, icc, exif))
    else:
        _write_with_pillow(arr, dest, fmt, icc, exif, lossless, quality)


def _checked_pixels(pixels: np.ndarray, dest: Path) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot write {dest}: pixels must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(f"cannot write {dest}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, got {arr.shape}")
    return arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def _upright_exif(exif: bytes | None) -> bytes | None:
    """``exif`` re-serialised by Pillow (``Exif\\0\\0`` header, no thumbnail) with Orientation 1 where it
    had one: the pixels are written the way they are shown. None when it holds no tags."""
    if not exif:
        return None
    tags = require("PIL.Image").Exif()
    tags.load(exif)
    if _ORIENTATION in tags:
        tags[_ORIENTATION] = 1
    return tags.tobytes() if len(tags) else None


def _write_with_pillow(arr: np.ndarray, dest: Path, fmt: str, icc: bytes | None, exif: bytes | None,
                       lossless: bool, quality: int) -> None:
    Image = require("PIL.Image")
    if arr.dtype == np.uint16:  # 16-bit to an 8-bit format: keep the high byte
        arr = (arr >> 8).astype(np.uint8)
    im = Image.fromarray(arr)
    if fmt == "JPEG" and im.mode == "RGBA":
        im = im.convert("RGB")
    kwargs: dict[str, Any] = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if fmt == "WEBP" and lossless:
        kwargs.update(lossless=True, exact=True)
    elif fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    with atomic_path(dest) as tmp:
        try:
            im.save(tmp, format=fmt, **kwargs)
        except ValueError as exc:  # Pillow's encoders report bad arguments (EXIF too long for JPEG, ...) so
            raise InputError(f"cannot write {dest} as {fmt}: {exc}") from exc


def _write_tiff(arr: np.ndarray, dest: Path, icc: bytes | None, exif: bytes | None) -> None:
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
    with atomic_path(dest) as tmp:
        tifffile.imwrite(tmp, arr, **kwargs)


def _tiff_tags(exif: bytes | None) -> list[tuple[int, str, int, str, bool]]:
    """tifffile ``extratags`` for the descriptive ASCII EXIF tags TIFF keeps in its own IFD."""
    if not exif:
        return []
    Image = require("PIL.Image")
    tags = Image.Exif()
    tags.load(exif)
    out = []
    for code in _TIFF_EXIF_TAGS:
        value = tags.get(code)
        if isinstance(value, str) and value.isascii():
            out.append((code, "s", 0, value.rstrip("\x00"), True))
    return out
