"""Pixel-format conversion around the network: the one home of every such rule (pure numpy).

The network sees float32 RGB in [0, 1] (N×3×H×W); callers hand us H×W, H×W×1, H×W×3 or H×W×4 arrays
of uint8, uint16 or float32 and get the same layout and dtype back. Float → integer conversion is
clamp, then round half to even (``np.rint``), then cast: the paper's protocol, and exactly what an
exported uint8-I/O graph does (``Clip`` → ``Round`` → ``Cast``).
"""

from __future__ import annotations

import numpy as np

from bsrn_edge.errors import InputError

__all__ = ["check_image", "pad_to_min", "mirror_to", "window_reader", "row_writer", "DTYPES", "to_nchw", "from_nchw",
           "to_pixels", "quantize", "resize", "outscale_size"]

_CHUNK = 32  # output rows converted per step
DTYPES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


def quantize(x: np.ndarray, peak: float = 255.0, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """Float RGB in [0, 1] → integers on ``[0, peak]``: clamped, rounded half to even, cast."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * peak), 0, peak).astype(dtype)


def to_nchw(img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """H×W×3 (or N×H×W×3) uint8 / uint16 / float32 → N×3×H×W float32 in [0, 1]; into ``out`` when given
    (no allocation: a camera frame's reused buffer)."""
    a = np.asarray(img)
    nhwc = a if a.ndim == 4 else a[None]
    peak = np.float32(DTYPES[a.dtype])
    if out is not None:
        np.divide(nhwc.transpose(0, 3, 1, 2), peak, out=out, dtype=np.float32)
        return out
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2).astype(np.float32) / peak)


def from_nchw(x: np.ndarray) -> np.ndarray:
    """1×3×H×W float in [0, 1] → H×W×3 uint8 (clamped, rounded half to even)."""
    return quantize(np.asarray(x)[0].transpose(1, 2, 0))


def to_pixels(x: np.ndarray) -> np.ndarray:
    """N×3×H×W float in [0, 1] → N×H×W×3 uint8 (what a uint8-I/O model takes), clamped and rounded."""
    return np.ascontiguousarray(quantize(np.asarray(x).transpose(0, 2, 3, 1)))


def outscale_size(height: int, width: int, outscale: float) -> tuple[int, int]:
    """The output size for a final scale of ``outscale`` (Real-ESRGAN's rule: ``int(side × outscale)``, at least 1)."""
    if not outscale > 0:
        raise InputError(f"outscale must be a number > 0, got {outscale}")
    return max(1, int(height * outscale)), max(1, int(width * outscale))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` resampled to ``height × width`` with a Lanczos-3 filter (Pillow's), same layout and dtype.

    Each channel is filtered in float32, then clamped, rounded half to even and cast like the network's
    output, so 16-bit and float images keep their depth and alpha is filtered as its own plane.
    """
    from bsrn_edge._lazy import require

    Image = require("PIL.Image")
    a = check_image(image)
    if a.shape[:2] == (height, width):
        return a.copy()
    planes = a[..., None] if a.ndim == 2 else a
    peak = DTYPES[a.dtype]
    out = np.empty((height, width, planes.shape[2]), a.dtype)
    for c in range(planes.shape[2]):
        f = Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32), mode="F")
        r = np.asarray(f.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
        out[..., c] = np.clip(r, 0.0, peak) if a.dtype == np.float32 else quantize(r / peak, peak, a.dtype)
    return out[..., 0] if a.ndim == 2 else out


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an image array once; returns it as an ndarray."""
    a = np.asarray(image)
    if a.dtype not in DTYPES:
        raise InputError(f"pixels must be uint8, uint16 or float32, got {a.dtype}; convert the array first")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InputError(f"expected an H×W (grey), H×W×1, H×W×3 (RGB) or H×W×4 (RGBA) image, got shape {a.shape}")
    return a


def pad_to_min(rgb: np.ndarray, min_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Mirror-pad an H×W×3 image to at least ``min_size`` per side; returns it and the original size."""
    return mirror_to(rgb, min_size, (0, 1), np.concatenate, np.flip), rgb.shape[:2]


def mirror_to(a, minimum: int, axes: tuple[int, ...], cat, flip):  # type: ignore[no-untyped-def]
    """The padding rule below a network's minimum, for any array library: along each of ``axes``, append
    the mirrored end of ``a`` (edge pixel repeated, as ``np.pad(mode="symmetric")``) until the side
    reaches ``minimum``; a tiny side is mirrored more than once. ``cat(arrays, axis)`` and
    ``flip(array, axis)``: numpy's ``np.concatenate``/``np.flip`` or their PyTorch counterparts."""
    for ax in axes:
        while a.shape[ax] < minimum:
            n = min(minimum - a.shape[ax], a.shape[ax])
            tail = a[(slice(None),) * (ax % a.ndim) + (slice(a.shape[ax] - n, None),)]
            a = cat([a, flip(tail, ax)], ax)
    return a


def window_reader(a: np.ndarray, plane: str):  # type: ignore[no-untyped-def]
    """``read(y0, y1, x0, x1)`` → float32 3×h×w in [0, 1], converting only that window.

    ``plane`` is ``"rgb"`` (gray is replicated to RGB, alpha dropped) or ``"alpha"`` (alpha as gray).
    """
    peak = np.float32(DTYPES[a.dtype])
    channels = 1 if a.ndim == 2 else a.shape[2]

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        w = a[y0:y1, x0:x1]
        if w.ndim == 2:
            w = w[..., None]
        if plane == "alpha":
            w = w[..., 3:4]
        elif channels == 4:
            w = w[..., :3]
        f = w.astype(np.float32) / peak
        if a.dtype == np.float32:
            np.clip(f, 0.0, 1.0, out=f)
        if f.shape[2] == 1:
            f = np.repeat(f, 3, axis=2)
        return f.transpose(2, 0, 1)

    return read


def row_writer(out: np.ndarray, plane: str, crop: tuple[int, int]):  # type: ignore[no-untyped-def]
    """``write(y0, y1, block)`` converting float RGB rows into ``out`` (the caller's layout and dtype).

    Rows and columns beyond ``crop`` (the unpadded output size) are dropped.
    """
    peak = DTYPES[out.dtype]
    h, w = crop
    gray = out.ndim == 2 or out.shape[2] == 1 or plane == "alpha"

    def write(y0: int, y1: int, block: np.ndarray) -> None:
        y1c = min(y1, h)
        for a in range(y0, y1c, _CHUNK):  # a few rows at a time: temporaries stay small
            b_ = min(a + _CHUNK, y1c)
            b = block[a - y0: b_ - y0, :w]
            vals = b.mean(axis=2) if gray else b
            if out.dtype == np.float32:
                vals = np.clip(vals, 0.0, 1.0)
            else:
                vals = np.clip(np.rint(vals * peak), 0, peak)
            if out.ndim == 2:
                out[a:b_] = vals
            elif plane == "alpha":
                out[a:b_, :, 3] = vals
            elif gray:
                out[a:b_, :, 0] = vals
            else:
                out[a:b_, :, :3] = vals

    return write
