"""16-bit PNG speed: imagecodecs (libpng) vs the pure-Python fallback (pypng reader, zlib encoder).

Builds one 4000×3000 16-bit RGB image from real photographs: a 4×4 grid of Urban100 HR images from
../shared/data (else B100, else the bundled Set5 HR), each resized in float32 (bicubic) to 1000×750 and
scaled to 0..65535, so the low byte holds real interpolated detail rather than zeros or noise. Then it
times :func:`bsrn_edge.imageio.write_image` and :func:`~bsrn_edge.imageio.read_image`
with each codec, reading both codecs' files with both (libpng writes filtered rows, which pypng undoes
in Python; the fallback writes unfiltered ones), and prints the machine, the medians of ``--runs`` runs,
the file sizes and the speed-up ratios. The files are in the page cache, so reads measure decoding.

Example: python benchmarks/png16_speed.py --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import zlib
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import numpy as np

from bsrn_edge.bench import time_calls
from bsrn_edge.datasets import bundled_set5, shared_data_dir
from bsrn_edge.hostinfo import cpu_model, usable_cores
from bsrn_edge.imageio import png16, read_image, write_image

WIDTH, HEIGHT, GRID = 4000, 3000, 4  # a 4×4 grid of 1000×750 tiles


def source_images() -> list[Path]:
    """HR photographs to build the test image from: Urban100, else B100, else the bundled Set5."""
    shared = shared_data_dir()
    for name in ("Urban100", "B100"):
        found = sorted((shared / name).rglob("*_HR.png")) if shared else []
        if found:
            return found
    return sorted(bundled_set5().glob("*_HR.png"))


def real_16_bit_image(sources: list[Path]) -> np.ndarray:
    """WIDTH×HEIGHT×3 uint16 from real images: float32 bicubic resizes scaled to 0..65535, tiled in a grid;
    an image used a second time is mirrored, so no two tiles are the same."""
    from PIL import Image

    tw, th = WIDTH // GRID, HEIGHT // GRID
    rows = []
    for r in range(GRID):
        row = []
        for c in range(GRID):
            i = r * GRID + c
            rgb = np.asarray(Image.open(sources[i % len(sources)]).convert("RGB"))
            if (i // len(sources)) % 2:
                rgb = rgb[:, ::-1]
            planes = [np.asarray(Image.fromarray(rgb[:, :, k].astype(np.float32)).resize((tw, th), Image.BICUBIC))
                      for k in range(3)]
            row.append(np.clip(np.rint(np.stack(planes, axis=2) * (65535 / 255)), 0, 65535).astype(np.uint16))
        rows.append(np.hstack(row))
    return np.ascontiguousarray(np.vstack(rows))


@contextlib.contextmanager
def codec(name: str) -> Iterator[None]:
    """Run the body with the 16-bit PNG codec ``name`` ("imagecodecs" or "pypng")."""
    saved = png16._imagecodecs
    if name == "pypng":
        png16._imagecodecs = lambda: None  # type: ignore[assignment]
    try:
        if png16.png16_codec() != name:
            raise SystemExit(f"the {name} codec is not available here; install imagecodecs (and pypng)")
        yield
    finally:
        png16._imagecodecs = saved  # type: ignore[assignment]


def machine_line() -> str:
    import imagecodecs

    return (f"machine: {cpu_model()}, {usable_cores()} usable cores, {platform.platform()}\n"
            f"python {platform.python_version()}, numpy {np.__version__}, imagecodecs {imagecodecs.__version__} "
            f"({imagecodecs.png_version()}), pypng {version('pypng')}, zlib {zlib.ZLIB_RUNTIME_VERSION}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per codec and operation (median reported)")
    args = ap.parse_args(argv)
    print(machine_line())
    sources = source_images()
    arr = real_16_bit_image(sources)
    print(f"image: {WIDTH}×{HEIGHT} RGB uint16 from {len(sources)} images in {sources[0].parent}; "
          f"{np.count_nonzero(arr % 257):,} of {arr.size:,} samples are not 8-bit values ×257")
    names = ("imagecodecs", "pypng")
    seconds: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: Path(tmp) / f"{name}.png" for name in names}
        for name in names:
            with codec(name):
                seconds["write", name] = time_calls(lambda: write_image(arr, files[name], "PNG"), args.runs, 0).median
        for written_by, path in files.items():
            for name in names:
                with codec(name):
                    if not np.array_equal(read_image(path).pixels, arr):
                        raise SystemExit(f"{name} read {path.name} back with other pixels than were written")
                    seconds[f"read {written_by} file", name] = time_calls(lambda: read_image(path), args.runs, 0).median
        sizes = {name: path.stat().st_size / 1e6 for name, path in files.items()}
    print(f"\n{'operation':<22}{'imagecodecs s':>15}{'pypng/zlib s':>15}{'speed-up':>10}")
    for (op, name), ms in seconds.items():
        if name == "imagecodecs":
            fast, slow = ms / 1000, seconds[op, "pypng"] / 1000
            print(f"{op:<22}{fast:>15.2f}{slow:>15.2f}{slow / fast:>9.1f}×")
    print(f"\nfiles: imagecodecs {sizes['imagecodecs']:.1f} MB (libpng, zlib level {png16._LIBPNG_LEVEL}, "
          f"{png16._LIBPNG_FILTER} filter), fallback {sizes['pypng']:.1f} MB "
          f"(zlib level {png16._ZLIB_LEVEL}, no filter)")
    print(f"medians of {args.runs} runs each; single-threaded codecs; the files are in the page cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
