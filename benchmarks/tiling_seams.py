"""Seams of tiled inference: whole-image vs tiled BSRN outputs on real LR/HR pairs (PyTorch, CPU).

For each model and dataset it runs the first N images whole and tiled with ``bsrn_edge.runtime.tiling``
(the blended, ESA-aligned scheme) and with naive overlap-and-crop (the baseline), at the chosen tile,
and again at a *forced* tile: the largest 6k + 3 side at which every image splits into at least
``--min-tiles`` tiles (the default tile leaves small images whole, which is exact but tests nothing).

Columns (PSNR on Y, border = scale, outputs clamped and rounded to uint8, as bsrn_edge.evaluate):
  tiles        mean (min) tiles per image
  whole/tiled  mean PSNR vs HR of whole-image and tiled inference; delta = tiled − whole
  band         mean |tiled − whole| (uint8 levels) in 4-px bands on the lines where tiles meet
  seam         that band mean ÷ the mean elsewhere, pooled over the images (worst image in brackets);
               a ratio only: a scheme with large errors everywhere can have a small one
  local        the same bands ÷ the pixels 8–40 output px from a seam (blind to the image borders)
  vs whole     PSNR of tiled vs whole output, mean (min); maxd = largest |difference| in a pixel

Example: python benchmarks/tiling_seams.py --images 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bsrn_edge import load_model
from bsrn_edge.datasets import find_pairs
from bsrn_edge.imageio import read_rgb
from bsrn_edge.metrics import SeamStats, psnr, psnr_y, seam_stats
from bsrn_edge.pixels import from_nchw, quantize, to_nchw
from bsrn_edge.runtime.bands import stitch
from bsrn_edge.runtime.tiling import DEFAULT_MARGIN, DEFAULT_OVERLAP, DEFAULT_TILE, TilePlan, plan_tiles
from bsrn_edge.sizes import ESA_ALIGNMENT, SizeRequirements

REPO = Path(__file__).resolve().parent.parent
LOCAL = (8, 40)  # output pixels from a seam for the local comparison


@dataclass
class Row:
    """Accumulated results of one scheme at one tile over a dataset's images."""

    label: str
    tile: int
    overlap: int
    tiles: list[int] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    tiled: list[float] = field(default_factory=list)
    vs_whole: list[float] = field(default_factory=list)
    maxd: int = 0
    seam: SeamStats = SeamStats(0.0, 0, 0.0, 0)
    local: SeamStats = SeamStats(0.0, 0, 0.0, 0)
    worst: float = float("nan")

    def add(self, plan: TilePlan, sr_whole: np.ndarray, sr_tiled: np.ndarray, hr: np.ndarray, scale: int) -> None:
        self.tiles.append(len(plan))
        self.whole.append(psnr_y(sr_whole, hr, scale))
        self.tiled.append(psnr_y(sr_tiled, hr, scale))
        self.vs_whole.append(min(psnr(sr_tiled, sr_whole), 99.99))
        self.maxd = max(self.maxd, int(np.abs(sr_tiled.astype(np.int16) - sr_whole.astype(np.int16)).max()))
        one = seam_stats(sr_tiled, sr_whole, plan.seams)
        self.seam = self.seam + one
        self.local = self.local + seam_stats(sr_tiled, sr_whole, plan.seams, near=LOCAL)
        if one.seam_pixels and not (one.ratio <= self.worst):
            self.worst = one.ratio

    def line(self, delta_max: float, seam_max: float, vs_whole_min: float | None) -> str:
        w, t = float(np.mean(self.whole)), float(np.mean(self.tiled))
        delta = t - w
        checks = [f"a{'ok' if abs(delta) <= delta_max else 'NO'}"]
        if self.seam.seam_pixels:
            checks.append(f"b{'ok' if self.seam.ratio <= seam_max else 'NO'}")
        if vs_whole_min is not None:
            checks.append(f"c{'ok' if np.mean(self.vs_whole) >= vs_whole_min else 'NO'}")
        seam = (
            f"{self.seam.seam_mean:5.3f} {self.seam.ratio:5.3f} ({self.worst:4.2f})"
            if self.seam.seam_pixels
            else "   --     -- no seam "
        )
        local = f"{self.local.ratio:5.3f}" if self.local.seam_pixels else "  -- "
        return (
            f"  {self.label:<16} {self.tile:>4} {self.overlap:>3} {np.mean(self.tiles):5.1f} ({min(self.tiles):>2}) "
            f"{w:7.3f} {t:7.3f} {delta:+7.4f}  {seam}  {local}  "
            f"{np.mean(self.vs_whole):5.2f} ({min(self.vs_whole):5.2f}) {self.maxd:>4}  {' '.join(checks)}"
        )


def torch_infer(model):  # type: ignore[no-untyped-def]
    """float32 N×3×h×w numpy → N×3×sh×sw numpy through a torch module."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def forced_tile(shapes: list[tuple[int, int]], tile: int, overlap: int, min_tiles: int, scale: int,
                sizes: SizeRequirements) -> int | None:
    """The largest 6k + 3 side <= ``tile`` splitting every image into at least ``min_tiles`` tiles."""
    side = sizes.snap_tile(tile)
    while side - sizes.alignment >= max(overlap, sizes.minimum):
        if all(len(plan_tiles(h, w, scale=scale, tile=side, overlap=overlap, min_size=sizes.minimum)) >= min_tiles
               for h, w in shapes):
            return side
        side = sizes.snap_down(side)
    return None


def _settings(args: argparse.Namespace, loaded, shapes: list[tuple[int, int]]) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """The tile sides to measure: the default (snapped) and, with --min-tiles, one forcing that many tiles."""
    settings = [(loaded.variant.sizes.snap_tile(args.tile), "default")]
    if args.min_tiles > 0:
        forced = forced_tile(shapes, args.tile, args.overlap, args.min_tiles, loaded.scale, loaded.variant.sizes)
        if forced is not None and forced != settings[0][0]:
            settings.append((forced, f"forced ≥{args.min_tiles}"))
    return settings


def measure_dataset(args: argparse.Namespace, ds: str, loaded, infer, small: bool) -> None:  # type: ignore[no-untyped-def]
    """Blend and naive rows of one dataset: every image whole and tiled at each setting."""
    scale = loaded.scale
    pairs = find_pairs(args.data / ds, scale)[: args.images]
    images = [(p.name, read_rgb(p.lr), read_rgb(p.hr)) for p in pairs]
    shapes = [lr.shape[:2] for _, lr, _ in images]
    settings = _settings(args, loaded, shapes)
    rows: list[Row] = []
    for side, why in settings:
        rows.append(Row(f"{why} blend", side, args.overlap))
        rows.append(Row(f"{why} naive", side, args.overlap))
    for fname, lr, hr in images:
        sr_whole = from_nchw(infer(to_nchw(lr)))
        for k, (side, _) in enumerate(settings):
            common = dict(scale=scale, tile=side, overlap=args.overlap, min_size=loaded.min_size)
            blend = plan_tiles(*lr.shape[:2], margin=args.margin, **common)  # type: ignore[arg-type]
            naive = plan_tiles(*lr.shape[:2], blend="crop", alignment=1, margin=0, snap=False, **common)  # type: ignore[arg-type]
            for row, plan in ((rows[2 * k], blend), (rows[2 * k + 1], naive)):
                row.add(plan, sr_whole, quantize(stitch(infer, to_nchw(lr)[0], plan)), hr, scale)
                if args.verbose:
                    print(f"    {fname} {lr.shape[0]}×{lr.shape[1]} {row.label} tile {side}: {len(plan)} tiles, "
                          f"delta {row.tiled[-1] - row.whole[-1]:+.4f}, vs whole {row.vs_whole[-1]:.2f} dB")
    print(f"  {ds} ({len(images)} images, LR {min(shapes)}..{max(shapes)})")
    for row in rows:
        print(row.line(0.02, 1.1, 45.0 if small else None))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["bsrn-s-x4", "bsrn-x4"], help="bundled names or checkpoint files")
    ap.add_argument("--datasets", nargs="+", default=["Urban100", "B100"], help="folders under --data")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="root of the LR/HR folders")
    ap.add_argument("--images", type=int, default=10, help="first N images of each dataset (default 10: all of the shared Urban100)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"LR tile side (default {DEFAULT_TILE})")
    ap.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"LR overlap (default {DEFAULT_OVERLAP})")
    ap.add_argument("--margin", type=int, default=DEFAULT_MARGIN, help=f"ramp margin (default {DEFAULT_MARGIN})")
    ap.add_argument("--min-tiles", type=int, default=4, help="also run at a tile forcing this many tiles; 0: off")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    ap.add_argument("--verbose", action="store_true", help="print one line per image")
    args = ap.parse_args(argv)

    import torch

    from bsrn_edge.models.deploy import to_deploy

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(
        f"scheme: runtime.tiling cosine blend, ESA-aligned (alignment {ESA_ALIGNMENT}, 6k+3 windows), "
        f"margin {args.margin}; baseline: naive overlap-and-crop (no alignment, crop at mid-overlap)"
    )
    print("criteria: (a) |delta| <= 0.02 dB  (b) seam ratio <= 1.1  (c) tiled vs whole >= 45 dB (BSRN-S)")
    started = time.perf_counter()
    for name in args.models:
        loaded = load_model(name)
        scale = loaded.scale
        infer = torch_infer(to_deploy(loaded.model))
        small = bool(loaded.variant.kwargs.get("small", False))  # criterion (c) is for BSRN-S
        print(f"\n== {loaded.name} (×{scale}, min input {loaded.min_size}) ==")
        print(
            f"  {'dataset/scheme':<16} {'tile':>4} {'ov':>3} {'tiles':>10} {'whole':>7} {'tiled':>7} {'delta':>7}  "
            f"{'band':>5} {'seam (worst)':>12}  {'local':>5}  {'vs whole (min)':>14} {'maxd':>4}  checks"
        )
        for ds in args.datasets:
            measure_dataset(args, ds, loaded, infer, small)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
