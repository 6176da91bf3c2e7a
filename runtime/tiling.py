"""Tiled inference that does not show: a pure plan and its blending weights.

numpy only: no torch, no onnxruntime, no model state. The stitcher that runs a plan is ``bands``;
seam statistics (measurement, not runtime) are in ``bsrn_edge.metrics``.

BSRN cannot be tiled exactly. Its ESA pools on a grid that starts at the input origin (3×3 stride-2
conv without padding, then a 7×7 stride-3 max-pool) and resizes the pooled map back with a ratio that
depends on the input size; BSRN's CCA takes channel statistics over the whole input. The tiles are
placed so those effects stay small and spread out:

- **ESA grid.** Every window starts on a multiple of ``alignment`` (6 = 2 × 3, ESA's pooling step),
  the last one included, so tiles pool exactly the cells the whole image pools. The last window is
  flush with the far border and is shrunk (never grown) to keep its origin on the grid.
- **ESA resize ratio.** With ``snap`` the window side is the largest 6k + 3 not above ``tile``: ESA's
  pooling then covers the window exactly and its resize ratio is the closest to the whole image's.
  Away from the image borders a tile's attention map is still shifted from the whole image's, by
  ~9·(1/tile − 1/image) LR px per px (a tile cannot match this); larger tiles make it smaller.
- **Blending.** Neighbours meet in the middle of their overlap and are blended with a raised-cosine
  ramp over the whole overlap less ``margin`` pixels at each window edge, where a tile lacks context.
  The weights of all tiles form an exact partition of unity, so the stitcher adds ``weight × tile``
  into one float32 output without a normaliser image.

``blend="crop"`` is naive overlap-and-crop (a hard step in the middle of the overlap), kept as the
baseline the benchmark compares against.

Measured figures, and the two limits that remain (seams in the image interior with small tiles;
BSRN's CCA on some textures): docs/benchmarks.md, "Tiling that cannot be seen".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bsrn_edge.errors import InputError
from bsrn_edge.sizes import ESA_ALIGNMENT, SizeRequirements

__all__ = [
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "DEFAULT_MARGIN",
    "Blend",
    "Span",
    "Tile",
    "TilePlan",
    "plan_tiles",
    "tile_weights",
]

#: LR tile side, 6k + 3. Exactness grows with the tile (measured 129 to 201 on Urban100 ×4); 195 keeps
#: memory moderate (BSRN peaks at a few hundred MB in eager PyTorch at this size).
DEFAULT_TILE = 195
#: Minimum LR overlap between neighbouring windows (the even spread usually gives more); with the
#: margin it leaves a ramp of at least 24 px, the distance over which a window edge still shows.
DEFAULT_OVERLAP = 48
#: LR pixels next to a window edge left out of the blending ramp (the tile lacks context there).
DEFAULT_MARGIN = 12
Blend = Literal["cosine", "linear", "crop"]
_BLENDS: tuple[str, ...] = ("cosine", "linear", "crop")


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in LR pixels.

    The network reads the window ``[start, stop)``. The tile's weight is 0 before ``fade_in``, rises to
    1 over ``[fade_in, full_from)``, is 1 up to ``full_to`` and falls to 0 over ``[full_to, fade_out)``.
    Equal ends mean a hard step; neighbours meet at the middle of each ramp.
    """

    start: int
    stop: int
    fade_in: int
    full_from: int
    full_to: int
    fade_out: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: its row and column spans and its row-major index."""

    index: int
    rows: Span
    cols: Span

    @property
    def window(self) -> tuple[int, int, int, int]:
        """Input window ``(y0, x0, y1, x1)`` in LR pixels."""
        return self.rows.start, self.cols.start, self.rows.stop, self.cols.stop

    @property
    def size(self) -> tuple[int, int]:
        """Window ``(height, width)`` in LR pixels."""
        return self.rows.size, self.cols.size


@dataclass(frozen=True)
class TilePlan:
    """How to cover a ``height × width`` LR image with tiles, and how to blend their outputs.

    Tiles form a grid: every row span is combined with every column span.
    """

    height: int
    width: int
    scale: int
    tile: int
    overlap: int
    margin: int
    alignment: int
    blend: Blend
    row_spans: tuple[Span, ...]
    col_spans: tuple[Span, ...]

    def __len__(self) -> int:
        return len(self.row_spans) * len(self.col_spans)

    def tile_at(self, index: int) -> Tile:
        """The tile with row-major ``index``."""
        if not 0 <= index < len(self):
            raise InputError(f"tile index {index} is outside this plan's 0..{len(self) - 1}")
        i, j = divmod(index, len(self.col_spans))
        return Tile(index, self.row_spans[i], self.col_spans[j])

    @property
    def tiles(self) -> list[Tile]:
        """All tiles, row-major."""
        return [self.tile_at(k) for k in range(len(self))]

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(scale·height, scale·width)``."""
        return self.height * self.scale, self.width * self.scale

    @property
    def seams(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Output-pixel lines where neighbouring tiles meet (middle of each ramp): ``(rows, cols)``."""
        return _meets(self.row_spans, self.scale), _meets(self.col_spans, self.scale)

    @property
    def edges(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Output-pixel lines of interior window edges, where a tile's input stops: ``(rows, cols)``."""
        s = self.scale
        rows = {s * v for sp in self.row_spans for v in (sp.start, sp.stop) if 0 < v < self.height}
        cols = {s * v for sp in self.col_spans for v in (sp.start, sp.stop) if 0 < v < self.width}
        return tuple(sorted(rows)), tuple(sorted(cols))


def _meets(spans: tuple[Span, ...], scale: int) -> tuple[int, ...]:
    return tuple(scale * ((s.full_to + s.fade_out) // 2) for s in spans[:-1])


def _check_int(name: str, value: object, lowest: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r} ({type(value).__name__}); {hint}")
    if value < lowest:
        raise InputError(f"{name} must be at least {lowest}, got {value}; {hint}")
    return int(value)


def _windows(length: int, tile: int, overlap: int, alignment: int, min_size: int) -> list[tuple[int, int]]:
    """Windows along one axis: aligned starts spread evenly, the last flush with the far border."""
    if length <= tile:
        return [(0, length)]
    last = -(-(length - tile) // alignment) * alignment  # aligned, so the last window is at most `tile`
    if length - last < min_size:
        last = length - tile  # a tile this small cannot keep the grid: stay flush, unaligned
    count = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        starts = [0]
        for i in range(1, count - 1):
            starts.append(int(i * last / (count - 1)) // alignment * alignment)
        starts.append(last)
        starts = sorted(set(starts))
        stops = [s + tile for s in starts[:-1]] + [length]
        if all(stops[i] - starts[i + 1] >= overlap for i in range(len(starts) - 1)) or count >= length:
            return list(zip(starts, stops))
        count += 1  # aligning a start down shortened an overlap: spread one more window


def _spans(length: int, tile: int, overlap: int, margin: int, alignment: int, min_size: int, blend: str) -> tuple[Span, ...]:
    windows = _windows(length, tile, overlap, alignment, min_size)
    n = len(windows)
    ramps: list[tuple[int, int]] = []  # (lo, hi) of the ramp between window i and i + 1
    prev_hi = 0
    for i in range(n - 1):
        ov_lo, ov_hi = windows[i + 1][0], windows[i][1]
        lo, hi = max(ov_lo + margin, prev_hi), ov_hi - margin
        if i + 2 < n:  # windows three deep: leave the next pair half of the stretch they share
            hi = min(hi, (max(lo, windows[i + 2][0] + margin) + hi) // 2)
        if blend == "crop" or hi - lo < 2:
            m = min(max((ov_lo + ov_hi) // 2, prev_hi), ov_hi)
            ramps.append((m, m))
        else:
            h = (hi - lo) // 2
            ramps.append((lo, lo + 2 * h))
        prev_hi = ramps[-1][1]
    spans = []
    for i, (a, b) in enumerate(windows):
        fade_in, full_from = (0, 0) if i == 0 else ramps[i - 1]
        full_to, fade_out = (length, length) if i == n - 1 else ramps[i]
        spans.append(Span(a, b, fade_in, full_from, full_to, fade_out))
    return tuple(spans)


def plan_tiles(
    height: int,
    width: int,
    *,
    scale: int,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    min_size: int = 15,
    alignment: int = ESA_ALIGNMENT,
    margin: int = DEFAULT_MARGIN,
    blend: Blend = "cosine",
    snap: bool = True,
) -> TilePlan:
    """Plan the tiles of an LR image of ``height × width`` for a ×``scale`` network.

    An axis no longer than the tile is one window (exact along that axis). A longer axis gets windows
    of the tile side (snapped to ESA's ``6k + 3`` by :meth:`SizeRequirements.snap_tile` when ``snap``),
    overlapping by at least ``overlap``, starting on multiples of ``alignment``, the first and last flush
    with the image borders. No window is larger than ``tile`` or smaller than ``min_size``. Raises
    :class:`InputError` for impossible arguments and for images smaller than ``min_size`` (pad those first).
    """
    height = _check_int("height", height, 1, "pass the LR image height in pixels")
    width = _check_int("width", width, 1, "pass the LR image width in pixels")
    scale = _check_int("scale", scale, 1, "pass the network's upscaling factor (e.g. 4)")
    min_size = _check_int("min_size", min_size, 1, "pass the network's minimum input side (15 for BSRN)")
    tile = _check_int("tile", tile, min_size, f"a tile must be at least the network's minimum input side {min_size}")
    alignment = _check_int("alignment", alignment, 1, f"pass {ESA_ALIGNMENT} for ESA's pooling grid, 1 for none")
    overlap = _check_int("overlap", overlap, 0, "pass 0 or more LR pixels of overlap")
    margin = _check_int("margin", margin, 0, "pass 0 or more LR pixels kept out of the blending ramp")
    if blend not in _BLENDS:
        raise InputError(f"blend must be one of {', '.join(_BLENDS)}, got {blend!r}")
    side = SizeRequirements(min_size).snap_tile(tile) if snap else tile  # the ESA 6k + 3 side
    if overlap > side - alignment:
        raise InputError(
            f"overlap {overlap} leaves no room to advance a {side}-pixel window by the {alignment}-pixel grid; "
            f"use an overlap of at most {side - alignment} (about a quarter of the tile is usual)"
        )
    SizeRequirements(min_size).require(height, width, "the LR image")
    args = (side, overlap, margin, alignment, min_size, blend)
    return TilePlan(
        height=height,
        width=width,
        scale=scale,
        tile=side,
        overlap=overlap,
        margin=margin,
        alignment=alignment,
        blend=blend,  # type: ignore[arg-type]
        row_spans=_spans(height, *args),
        col_spans=_spans(width, *args),
    )


def _ramp(t: np.ndarray, blend: str) -> np.ndarray:
    return t if blend == "linear" else 0.5 - 0.5 * np.cos(np.pi * t)


def _axis_weights(span: Span, scale: int, blend: str) -> tuple[int, np.ndarray]:
    """Weights of one span on the output grid, from output pixel ``scale·fade_in`` to ``scale·fade_out``."""
    lo, hi = scale * span.fade_in, scale * span.fade_out
    u = (np.arange(lo, hi, dtype=np.float64) + 0.5) / scale  # output pixel centres in LR units
    w = np.ones(hi - lo, dtype=np.float64)
    if span.full_from > span.fade_in:
        w *= _ramp(np.clip((u - span.fade_in) / (span.full_from - span.fade_in), 0.0, 1.0), blend)
    if span.fade_out > span.full_to:
        w *= 1.0 - _ramp(np.clip((u - span.full_to) / (span.fade_out - span.full_to), 0.0, 1.0), blend)
    return lo, w


def tile_weights(plan: TilePlan, tile: Tile) -> tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]:
    """Where a tile contributes and with which weights.

    Returns ``(out_region, tile_region, weights)``: slices into the output image, the matching slices
    into the tile's own output, and float32 weights of that region's shape. Over all tiles of a plan
    the weights add up to 1 at every output pixel (to float rounding).
    """
    s = plan.scale
    y0, wy = _axis_weights(tile.rows, s, plan.blend)
    x0, wx = _axis_weights(tile.cols, s, plan.blend)
    out = (slice(y0, y0 + wy.size), slice(x0, x0 + wx.size))
    ty, tx = y0 - s * tile.rows.start, x0 - s * tile.cols.start
    own = (slice(ty, ty + wy.size), slice(tx, tx + wx.size))
    return out, own, np.outer(wy, wx).astype(np.float32)
