"""bsrn-upscale: upscale image files or folders (thin wrapper over ``Upscaler``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import write_atomic

from .png16 import apply_orientation, encode_png16, is_png16_color, read_png16

_EXT = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
MAX_PIXELS = 64_000_000  # LR pixels; larger files are treated as decompression bombs


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bsrn-upscale", description="Upscale images with a BSRN model.")
    ap.add_argument("-i", "--input", required=True, type=Path, help="image file or folder")
    ap.add_argument("-o", "--output", required=True, type=Path, help="output file (for one input) or folder")
    ap.add_argument("--model", required=True, help=".onnx, .engine, checkpoint file or bundled name")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt", "torch"])
    ap.add_argument("--tile", default="auto", help="LR tile side, 'auto' (default) or 'none'")
    ap.add_argument("--overlap", type=int, default=None, help="LR overlap between tiles")
    ap.add_argument("--batch", type=int, default=1, help="tiles per inference call")
    ap.add_argument("--format", choices=sorted(_FORMATS), help="output format (default: the input's, else png)")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs (never inputs)")
    return ap


def read_image(path: Path):  # type: ignore[no-untyped-def]
    """Read a file with EXIF orientation applied; returns (array, ICC profile bytes or None)."""
    Image = require("PIL.Image")
    ImageOps = require("PIL.ImageOps")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        with Image.open(path) as im:  # reads the header only
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{path}: refused as a possible decompression bomb ({im.width}×{im.height} px, "
                                 f"more than {MAX_PIXELS:,}); split the image or raise the limit")
            im.load()
            icc = im.info.get("icc_profile")
            if im.format == "PNG" and is_png16_color(path):  # Pillow would drop to 8 bits
                return apply_orientation(read_png16(path), im.getexif().get(0x0112, 1)), icc
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.uint16)
            elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                arr = np.asarray(im.convert("RGBA"))
            elif im.mode == "L":
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: corrupt, truncated or unsupported image ({exc})") from exc
    return arr, icc


def write_image(arr: np.ndarray, dest: Path, fmt: str, icc: bytes | None) -> None:
    Image = require("PIL.Image")
    from bsrn_edge.imageio import atomic_path

    if arr.dtype == np.uint16 and arr.ndim == 3 and fmt == "PNG":
        write_atomic(dest, encode_png16(arr if arr.shape[2] != 1 else np.repeat(arr, 3, axis=2), icc))
        return
    if arr.dtype == np.uint16:  # 16-bit to a format without 16-bit colour: keep the high byte
        im = Image.fromarray(arr if arr.ndim == 2 else (arr >> 8).astype(np.uint8))
    else:
        im = Image.fromarray(arr)
    if fmt == "JPEG" and im.mode == "RGBA":
        im = im.convert("RGB")
    kwargs = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        kwargs["quality"] = 95
    with atomic_path(dest) as tmp:
        im.save(tmp, format=fmt, **kwargs)


def _jobs(src: Path, dst: Path, fmt: str | None) -> list[tuple[Path, Path, str]]:
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in _EXT) if src.is_dir() else [src]
    if src.is_dir() and not files:
        raise InputError(f"{src}: no images ({', '.join(sorted(_EXT))})")
    jobs = []
    for f in files:
        ext = fmt or (f.suffix.lower().lstrip(".").replace("jpeg", "jpg") if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") else "png")
        if src.is_dir() or dst.is_dir() or not dst.suffix:
            out = dst / f"{f.stem}.{ext}"
        else:
            out = dst
            ext = fmt or dst.suffix.lower().lstrip(".").replace("jpeg", "jpg")
            if ext not in _FORMATS:
                raise InputError(f"{dst}: unsupported output extension; use .png, .jpg or .webp")
        jobs.append((f, out, _FORMATS[ext]))
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tqdm = require("tqdm").tqdm
    try:
        from . import Upscaler

        tile = None if args.tile == "none" else "auto" if args.tile == "auto" else int(args.tile)
        jobs = _jobs(args.input, args.output, args.format)
        inputs = {f.resolve() for f, _, _ in jobs}
        up = Upscaler(args.model, args.backend, tile=tile, overlap=args.overlap, batch=args.batch)
    except (BsrnEdgeError, ValueError) as exc:
        print(f"bsrn-upscale: error: {exc}", file=sys.stderr)
        return 2
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}", file=sys.stderr)
    failed = 0
    for src, dst, fmt in tqdm(jobs, desc="upscaling", unit="img", file=sys.stderr, disable=len(jobs) < 2):
        try:
            if dst.resolve() in inputs:
                raise InputError(f"{dst}: is an input file; refusing to overwrite it (choose another -o)")
            if dst.exists() and not args.force:
                raise InputError(f"{dst}: exists; pass --force to overwrite")
            arr, icc = read_image(src)
            write_image(up.upscale(arr), dst, fmt, icc)
        except BsrnEdgeError as exc:
            failed += 1
            tqdm.write(f"bsrn-upscale: skipped {src}: {exc}", file=sys.stderr)
    print(f"bsrn-upscale: {len(jobs) - failed} written, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
