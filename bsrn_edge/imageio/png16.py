"""16-bit PNG codec: Pillow reads 16-bit colour PNGs as 8-bit, so these go through a codec of their own.

:func:`_imagecodecs` picks the codec on every call (:func:`png16_codec` names it): ``imagecodecs``
(libpng, compiled; the ``formats`` extra) when it is installed, else the pure-Python fallback (the
``pypng`` reader and a small zlib encoder here). Both decode any 16-bit PNG to the same array, so the
choice changes speed and file size only (benchmarks/png16_speed.py).
Neither codec writes ancillary chunks, so the ICC profile (``iCCP``) and EXIF (``eXIf``) are spliced in
after ``IHDR`` by :func:`add_chunks`, whichever codec encoded the pixels.

:func:`apply_orientation` (EXIF orientation on an array) lives here too; :mod:`bsrn_edge.imageio`
uses it for every format.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import InputError

__all__ = [
    "png16_codec",
    "png_header",
    "read_png16",
    "encode_png16",
    "add_chunks",
    "apply_orientation",
]

_SIG = b"\x89PNG\r\n\x1a\n"
# channels → PNG colour type: grey, grey + alpha, RGB, RGBA
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_ZLIB_LEVEL = 6  # the fallback's zlib level (zlib's own default)
# libpng: zlib level 1 with the Sub filter on every row. On 16-bit photographs this is faster than the
# fallback and still ~8–15 % smaller (the fallback cannot afford filters in Python); adaptive filtering
# at level 6 saves another 1–10 % but takes 2–4 times as long (benchmarks/png16_speed.py).
_LIBPNG_LEVEL, _LIBPNG_FILTER = 1, "SUB"


def png16_codec() -> Literal["imagecodecs", "pypng"]:
    """The codec 16-bit PNGs go through: ``"imagecodecs"`` (libpng) when installed, else ``"pypng"``."""
    return "imagecodecs" if _imagecodecs() is not None else "pypng"


def _imagecodecs() -> ModuleType | None:
    """The imagecodecs module when it imports and was built with libpng, else None."""
    if not available("imagecodecs"):
        return None
    ic = importlib.import_module("imagecodecs")
    return ic if getattr(getattr(ic, "PNG", None), "available", False) else None


# -- reading ---------------------------------------------------------------------------------
def png_header(head: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from the first 33 bytes of a PNG file; None when they are not a PNG header."""
    if len(head) < 33 or head[:8] != _SIG or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def read_png16(path: Path) -> np.ndarray:
    """The uint16 pixels of a 16-bit PNG, as stored: H×W grey, H×W×2 grey + alpha, H×W×3 RGB or H×W×4 RGBA.

    A ``tRNS`` colour key becomes an alpha channel (both codecs expand it). Raises :class:`InputError`
    naming the file when it is corrupt or truncated.
    """
    try:
        ic = _imagecodecs()
        arr = ic.png_decode(Path(path).read_bytes()) if ic is not None else _pypng_decode(path)
    except (OSError, ImportError):  # unreadable file, or neither codec installed: not the file's fault
        raise
    except Exception as exc:  # noqa: BLE001 - libpng (PngError), pypng (FormatError) and zlib raise their own
        raise InputError(f"{path}: corrupt or truncated 16-bit PNG ({exc}); re-export the file") from exc
    if arr.dtype != np.uint16:
        raise InputError(f"{path}: expected 16-bit samples, the PNG decoded to {arr.dtype}")
    return arr


def _pypng_decode(path: Path) -> np.ndarray:
    png = require("png")
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])
    return arr[:, :, 0] if info["planes"] == 1 else arr


# -- writing ---------------------------------------------------------------------------------
def encode_png16(arr: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """PNG bytes for a uint16 H×W, H×W×1, H×W×2, H×W×3 or H×W×4 array, with an optional ICC profile and EXIF.

    ``exif`` is EXIF as Pillow's ``Image.Exif.tobytes()`` gives it (a leading ``Exif\\0\\0`` is dropped,
    as the ``eXIf`` chunk holds the bare TIFF structure).
    """
    if arr.dtype != np.uint16 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in _COLOUR_TYPE):
        raise InputError(f"encode_png16 takes an H×W(×1..4) uint16 array, got {arr.shape} {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    arr = np.ascontiguousarray(arr)
    ic = _imagecodecs()
    if ic is not None:
        data = bytes(ic.png_encode(arr, level=_LIBPNG_LEVEL, filter=ic.PNG.FILTER[_LIBPNG_FILTER]))
    else:
        data = _zlib_encode(arr)
    extra = []
    if icc:
        extra.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if exif:
        extra.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    return add_chunks(data, extra)


def _zlib_encode(arr: np.ndarray) -> bytes:
    """The fallback encoder: filter type 0 (none) on every row, one IDAT, zlib at :data:`_ZLIB_LEVEL`."""
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.hstack([np.zeros((h, 1), np.uint8), rows])  # the filter-type byte leads each row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, _COLOUR_TYPE[c], 0, 0, 0)
    return b"".join([_SIG, _chunk(b"IHDR", ihdr), _chunk(b"IDAT", zlib.compress(raw.tobytes(), _ZLIB_LEVEL)),
                     _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def add_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """``png`` with complete ``chunks`` (length, type, data, CRC) inserted right after IHDR.

    Right after IHDR is before PLTE and IDAT, where the PNG specification wants ``iCCP`` and ``eXIf``.
    """
    if not chunks:
        return png
    if png[:8] != _SIG or png[12:16] != b"IHDR":
        raise InputError("add_chunks: the encoder did not return a PNG starting with IHDR")
    end = 8 + 12 + struct.unpack(">I", png[8:12])[0]  # signature, then IHDR's length + type + data + CRC
    return png[:end] + b"".join(chunks) + png[end:]


# -- orientation -----------------------------------------------------------------------------
def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1–8) to an H×W(×C) array, as a viewer would; other values do nothing."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr
