"""Pillow's side of image files: PNG (8-bit), JPEG, WebP and BMP, the 8-bit TIFF fallback, and EXIF."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError

from .atomic import atomic_file
from .formats import EXIF_IFD, GPS_IFD, ORIENTATION, TIFF_EXIF_TAGS, Picture, as_grey_rgb_rgba, bomb, check_size, picture
from .png16 import read_png16

__all__ = ["pillow", "read_with_pillow", "tiff_exif", "write_with_pillow", "upright_exif"]


def pillow(max_pixels: int) -> ModuleType:
    """PIL.Image, its own bomb limit raised to at least ``max_pixels`` (ours is checked, and names the flag)."""
    Image: Any = require("PIL.Image")
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # only ever raised, so concurrent readers agree
    return Image


def read_with_pillow(path: Path, max_pixels: int, png16: bool = False) -> Picture:
    """Pillow's reading, except for the pixels of a 16-bit PNG (``png16``, from the header), which Pillow
    would drop to 8 bits."""
    Image = pillow(max_pixels)
    try:
        with Image.open(path) as im:  # reads the header only
            check_size(path, im.width, im.height, max_pixels)
            icc = im.info.get("icc_profile") or None
            if im.format == "PNG" and png16:  # the 16-bit codec decodes the pixels
                exif = Image.Image.getexif(im)  # the base method: PNG's own would decode the pixels first
                arr = as_grey_rgb_rgba(read_png16(path))
            else:
                im.load()
                exif = im.getexif()
                arr = _pillow_pixels(im)
            fmt = im.format or path.suffix.lstrip(".").upper()
            if fmt == "TIFF":
                exif = tiff_exif(exif, Image)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: refused before our check runs
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise bomb(path, f"{int(found[1]):,} px, more than {max_pixels:,}" if found else
                   f"more than {max_pixels:,} px") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InputError(f"{path}: corrupt, truncated or unsupported image ({exc})") from exc
    return picture(arr, icc, exif, fmt)


def _pillow_pixels(im: Any) -> np.ndarray:
    """A loaded Pillow image as grey, RGB or RGBA; 16-bit grey stays uint16."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im).astype(np.uint16)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    if im.mode == "L":
        return np.asarray(im)
    return np.asarray(im.convert("RGB"))


def tiff_exif(tags: Any, Image: ModuleType) -> Any:
    """A fresh ``Image.Exif`` of a TIFF's descriptive tags (and its EXIF/GPS sub-IFDs).

    Pillow's EXIF of a TIFF is the whole first IFD, strip offsets and all; only the tags that describe
    the picture are meaningful in another file. The orientation is kept so that it can be applied.
    """
    exif = Image.Exif()
    for tag in (*TIFF_EXIF_TAGS, ORIENTATION):
        if tag in tags:
            exif[tag] = tags[tag]
    for ifd in (EXIF_IFD, GPS_IFD):
        sub = tags.get_ifd(ifd) if ifd in tags else {}
        if sub:
            exif.get_ifd(ifd).update(sub)
    return exif


def upright_exif(exif: bytes | None) -> bytes | None:
    """``exif`` re-serialised by Pillow (``Exif\\0\\0`` header, no thumbnail) with Orientation 1 where it
    had one: the pixels are written the way they are shown. None when it holds no tags."""
    if not exif:
        return None
    tags = require("PIL.Image").Exif()
    tags.load(exif)
    if ORIENTATION in tags:
        tags[ORIENTATION] = 1
    return tags.tobytes() if len(tags) else None


def write_with_pillow(arr: np.ndarray, dest: Path, fmt: str, icc: bytes | None, exif: bytes | None,
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
    with atomic_file(dest) as fh:
        try:
            im.save(fh, format=fmt, **kwargs)
        except ValueError as exc:  # Pillow's encoders report bad arguments (EXIF too long for JPEG, ...) so
            raise InputError(f"cannot write {dest} as {fmt}: {exc}") from exc

