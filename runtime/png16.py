"""16-bit-per-channel RGB/RGBA PNG support (Pillow reads those as 8-bit, losing the bit depth).

Reading uses pypng (pure Python); writing is a small zlib encoder with an optional ICC profile.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError

__all__ = ["is_png16_color", "read_png16", "encode_png16", "apply_orientation"]

_SIG = b"\x89PNG\r\n\x1a\n"


def is_png16_color(path: Path) -> bool:
    """True for a PNG with 16 bits per sample and colour (RGB or RGBA)."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != _SIG or head[12:16] != b"IHDR":
        return False
    depth, colour = head[24], head[25]
    return depth == 16 and colour in (2, 6)


def read_png16(path: Path) -> np.ndarray:
    """H×W×3 or H×W×4 uint16 pixels of a 16-bit colour PNG."""
    png = require("png")
    try:
        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except Exception as exc:  # noqa: BLE001 - pypng raises its own FormatError and zlib errors
        raise InputError(f"{path}: corrupt or truncated 16-bit PNG ({exc})") from exc
    return arr.reshape(h, w, info["planes"])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(arr: np.ndarray, icc: bytes | None = None) -> bytes:
    """PNG bytes for an H×W×3/H×W×4 uint16 array (filter 0, zlib level 6)."""
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"encode_png16 takes H×W×3 or H×W×4 uint16, got {arr.shape} {arr.dtype}")
    h, w, c = arr.shape
    big = arr.astype(">u2").reshape(h, w * c)
    raw = np.hstack([np.zeros((h, 1), np.uint8), big.view(np.uint8).reshape(h, w * c * 2)])  # filter 0 per row
    out = [_SIG, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0))]
    if icc:
        out.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    out += [_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1–8) to an H×W(×C) array, as a viewer would."""
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
