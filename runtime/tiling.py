"""Tiled inference for BSRN: a pure plan, blending weights, a stitcher and seam measurement (numpy only).

BSRN cannot be tiled exactly: ESA pools on a grid that starts at the tile origin and resizes its
attention map with a ratio that depends on the tile size, and BSRN's CCA takes statistics over the
whole tile. Two neighbouring tiles therefore disagree in their overlap, and a hard crop turns that
disagreement into a seam. This module hides it:

- every tile has the same size (``tile``), so every tile sees the same ESA resize ratio and
  tiles of one size can be batched; tiles at the image border start exactly at the border, as the
  whole-image inference does;
- neighbouring tiles overlap by at least ``overlap`` LR pixels and are *blended* across the middle of
  the overlap with a raised-cosine ramp, keeping ``margin`` pixels next to each window edge (where
  the tile lacks context) out of the ramp. The weights of all tiles form an exact partition of unity,
  so the stitcher adds ``weight × tile`` into one float32 output without a normaliser image.

``blend="crop"`` gives the naive overlap-and-crop scheme (a step at the middle of the overlap) that the
benchmark keeps as a baseline. Nothing here knows about models, backends or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from bsrn_edge.errors import InputError

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
    "Stitcher",
    "tiled_apply",
    "seam_ratio",
    "InferFn",
]

DEFAULT_TILE = 128
DEFAULT_OVERLAP = 32
DEFAULT_MARGIN = 4

Blend = Literal["cosine", "linear", "crop"]
InferFn = Callable[[np.ndarray], np.ndarray]
_BLENDS: tuple[str, ...] = ("cosine", "linear", "crop")


@dataclass(frozen=True)
class Span:
    """One tile along one axis, in LR pixels.

    The window ``[start, stop)`` is what the network reads. The tile's weight is 0 before ``fade_in``,
    rises to 1 over ``[fade_in, full_from)``, stays 1 until ``full_to`` and falls to 0 over
    ``[full_to, fade_out)``; ``fade_in == full_from`` (or ``full_to == fade_out``) is a hard step.
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
    """One tile: its row and column spans, and its position in the plan."""

    index: int
    rows: Span
    cols: Span

    @property
    def window(self) -> tuple[int, int, int, int]:
        """Input window ``(y0, x0, y1, x1)`` in LR pixels."""
        return self.rows.start, self.cols.start, self.rows.stop, self.cols.stop

    @property
    def size(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size


@dataclass(frozen=True)
class TilePlan:
    """How to cover an ``height × width`` LR image with tiles, and how to blend their outputs."""

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

    @property
    def tiles(self) -> list[Tile]:
        """All tiles, row-major."""
        return [
            Tile(i * len(self.col_spans) + j, r, c)
            for i, r in enumerate(self.row_spans)
            for j, c in enumerate(self.col_spans)
        ]

    def __len__(self) -> int:
        return len(self.row_spans) * len(self.col_spans)

    @property
    def output_shape(self) -> tuple[int, int]:
        return self.height * self.scale, self.width * self.scale

    @property
    def seams(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Interior lines where neighbouring tiles meet (middle of each overlap), in output pixels: (rows, cols)."""
        return _meet_lines(self.row_spans, self.scale), _meet_lines(self.col_spans, self.scale)


def _meet_lines(spans: Sequence[Span], scale: int) -> tuple[int, ...]:
    # the meeting line is the centre of the ramp between two neighbours
    return tuple(
        scale * (a.full_to + a.fade_out) // 2 for a in spans[:-1]
    )


def _check_int(name: str, value: object, lowest: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r} ({type(value).__name__}); {hint}")
    if value < lowest:
        raise InputError(f"{name} must be at least {lowest}, got {value}; {hint}")
    return int(value)


def _windows(length: int, tile: int, overlap: int, alignment: int, last: str = "shrink") -> tuple[list[int], list[int]]:
    """Windows along one axis: evenly spread starts on multiples of ``alignment``; the last one ends at the border."""
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [0]
    for i in range(1, count):
        ideal = i * (length - tile) / (count - 1)
        starts.append(int(ideal // alignment) * alignment)
    stops = [s + tile for s in starts]
    if last == "flush":
        starts[-1] = length - tile
    elif last == "grow":
        starts[-1] = int((length - tile) // alignment) * alignment
    else:  # shrink
        starts[-1] = -int(-(length - tile) // alignment) * alignment
    stops[-1] = length
    return starts, stops


def _spans(length: int, tile: int, overlap: int, margin: int, alignment: int, blend: str, last: str = "shrink") -> tuple[Span, ...]:
    if length <= tile:
        return (Span(0, length, 0, 0, length, length),)
    starts, stops = _windows(length, tile, overlap, alignment, last)
    # one ramp per pair of neighbours, centred on the middle of their overlap
    meets = [(starts[i + 1] + stops[i]) // 2 for i in range(len(starts) - 1)]
    halves: list[int] = []
    for i, m in enumerate(meets):
        if blend == "crop":
            halves.append(0)
            continue
        h = min(m - (starts[i + 1] + margin), (stops[i] - margin) - m)
        if i > 0:
            h = min(h, (m - meets[i - 1]) // 2)
        if i + 1 < len(meets):
            h = min(h, (meets[i + 1] - m) // 2)
        halves.append(max(h, 0))
    spans = []
    for i, (a, b) in enumerate(zip(starts, stops)):
        if i == 0:
            fade_in = full_from = 0
        else:
            fade_in, full_from = meets[i - 1] - halves[i - 1], meets[i - 1] + halves[i - 1]
        if i == len(starts) - 1:
            full_to = fade_out = length
        else:
            full_to, fade_out = meets[i] - halves[i], meets[i] + halves[i]
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
    alignment: int = 1,
    margin: int = DEFAULT_MARGIN,
    blend: Blend = "cosine",
    last: str = "shrink",
) -> TilePlan:
    """Plan the tiles of an LR image of ``height × width`` for a ×``scale`` network.

    An axis no longer than ``tile`` is one tile; a longer one gets equal windows of ``tile`` pixels,
    overlapping by at least ``overlap``, the first and last flush with the image borders, the others
    starting on multiples of ``alignment``. Raises :class:`InputError` for impossible arguments and
    for images smaller than ``min_size`` (pad those first).
    """
    height = _check_int("height", height, 1, "pass the LR image height in pixels")
    width = _check_int("width", width, 1, "pass the LR image width in pixels")
    scale = _check_int("scale", scale, 1, "pass the network's upscaling factor (e.g. 4)")
    min_size = _check_int("min_size", min_size, 1, "pass the network's minimum input side (15 for BSRN)")
    tile = _check_int("tile", tile, min_size, f"tiles must be at least the network's minimum input side {min_size}")
    overlap = _check_int("overlap", overlap, 0, "pass 0 or more LR pixels of overlap")
    margin = _check_int("margin", margin, 0, "pass 0 or more LR pixels kept out of the blending ramp")
    alignment = _check_int("alignment", alignment, 1, "pass 1 for no alignment, 6 for ESA's pooling grid")
    if blend not in _BLENDS:
        raise InputError(f"blend must be one of {', '.join(_BLENDS)}, got {blend!r}")
    if 2 * overlap > tile:
        raise InputError(
            f"overlap {overlap} is more than half the tile {tile}: windows would overlap three deep; "
            f"use an overlap of at most {tile // 2} or a larger tile"
        )
    if height < min_size or width < min_size:
        raise InputError(
            f"the image is {height}×{width} LR pixels, smaller than the network's minimum input of "
            f"{min_size}×{min_size}; pad it to at least {min_size} pixels per side before tiling"
        )
    return TilePlan(
        height=height,
        width=width,
        scale=scale,
        tile=tile,
        overlap=overlap,
        margin=margin,
        alignment=alignment,
        blend=blend,
        row_spans=_spans(height, tile, overlap, margin, alignment, blend, last),
        col_spans=_spans(width, tile, overlap, margin, alignment, blend, last),
    )


def _ramp(t: np.ndarray, blend: str) -> np.ndarray:
    if blend == "linear":
        return t
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _axis_weights(span: Span, scale: int, blend: str) -> tuple[int, np.ndarray]:
    """Weights of one span on the output grid, from ``scale * fade_in`` to ``scale * fade_out``."""
    lo, hi = scale * span.fade_in, scale * span.fade_out
    u = (np.arange(lo, hi, dtype=np.float64) + 0.5) / scale  # output pixel centres in LR units
    w = np.ones(hi - lo, dtype=np.float64)
    if span.full_from > span.fade_in:
        t = np.clip((u - span.fade_in) / (span.full_from - span.fade_in), 0.0, 1.0)
        w *= _ramp(t, blend)
    if span.fade_out > span.full_to:
        t = np.clip((u - span.full_to) / (span.fade_out - span.full_to), 0.0, 1.0)
        w *= 1.0 - _ramp(t, blend)
    return lo, w


def tile_weights(plan: TilePlan, tile: Tile) -> tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]:
    """Where a tile contributes and with what weight.

    Returns ``(out_region, tile_region, weights)``: slices into the output image, the matching slices
    into the tile's own output, and float32 weights of that region's shape. Over all tiles of a plan
    the weights add up to 1 at every output pixel.
    """
    s = plan.scale
    y0, wy = _axis_weights(tile.rows, s, plan.blend)
    x0, wx = _axis_weights(tile.cols, s, plan.blend)
    out = (slice(y0, y0 + wy.size), slice(x0, x0 + wx.size))
    ty, tx = y0 - s * tile.rows.start, x0 - s * tile.cols.start
    own = (slice(ty, ty + wy.size), slice(tx, tx + wx.size))
    return out, own, np.outer(wy, wx).astype(np.float32)


class Stitcher:
    """Accumulates tile outputs (C × sh × sw) into one preallocated float32 C × sH × sW image.

    Memory beyond the output is one tile's weights at a time. Every tile must be added exactly once
    before :meth:`result`.
    """

    def __init__(self, plan: TilePlan, channels: int = 3):
        self.plan = plan
        self.output = np.zeros((channels, *plan.output_shape), dtype=np.float32)
        self._done: set[int] = set()

    def add(self, tile: Tile, tile_output: np.ndarray) -> None:
        """Add ``weights × tile_output`` to the output."""
        want = (self.output.shape[0], self.plan.scale * tile.rows.size, self.plan.scale * tile.cols.size)
        if tile_output.shape != want:
            raise InputError(
                f"tile {tile.index} output has shape {tuple(tile_output.shape)}, expected {want} "
                f"(C × {self.plan.scale}·h × {self.plan.scale}·w); check that the network's scale matches "
                f"the plan's scale {self.plan.scale}"
            )
        if tile.index in self._done:
            raise InputError(f"tile {tile.index} was already added; add each tile of the plan once")
        out, own, w = tile_weights(self.plan, tile)
        self.output[(slice(None), *out)] += w * tile_output[(slice(None), *own)]
        self._done.add(tile.index)

    def result(self) -> np.ndarray:
        """The stitched C × sH × sW image; raises if a tile is missing."""
        missing = len(self.plan) - len(self._done)
        if missing:
            raise InputError(f"{missing} of {len(self.plan)} tiles were never added; add every tile before result()")
        return self.output


def _batches(plan: TilePlan, batch: int) -> Iterator[list[Tile]]:
    """Tiles in plan order, grouped into runs of at most ``batch`` tiles of equal size."""
    run: list[Tile] = []
    for t in plan.tiles:
        if run and (len(run) == batch or run[0].size != t.size):
            yield run
            run = []
        run.append(t)
    if run:
        yield run


def tiled_apply(infer: InferFn, image: np.ndarray, plan: TilePlan, *, batch: int = 1) -> np.ndarray:
    """Run ``infer`` tile by tile and stitch the results.

    ``infer`` maps float32 N×3×h×w in [0, 1] to N×3×sh×sw. ``image`` is either 1×3×H×W float
    (returns 1×3×sH×sW float32) or H×W×3 (uint8, or float in [0, 1]; returns sH×sW×3 float32).
    Up to ``batch`` tiles of equal size go to ``infer`` together.
    """
    batch = _check_int("batch", batch, 1, "pass how many equal tiles to run together")
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1 and a.shape[1] == 3:
        chw, hwc = a[0], False
    elif a.ndim == 3 and a.shape[2] == 3:
        chw, hwc = a.transpose(2, 0, 1), True
    else:
        raise InputError(
            f"expected a 1×3×H×W array or an H×W×3 image, got shape {a.shape}; "
            "split batches into single images and drop alpha channels first"
        )
    if chw.shape[1:] != (plan.height, plan.width):
        raise InputError(
            f"the image is {chw.shape[1]}×{chw.shape[2]} but the plan is for {plan.height}×{plan.width}; "
            "make the plan from this image's size"
        )
    if a.dtype == np.uint8:
        chw = chw.astype(np.float32) / np.float32(255.0)
    elif not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"expected uint8 or float pixels, got dtype {a.dtype}")
    stitcher = Stitcher(plan, channels=3)
    for group in _batches(plan, batch):
        x = np.stack([chw[:, t.rows.start : t.rows.stop, t.cols.start : t.cols.stop] for t in group])
        y = np.asarray(infer(np.ascontiguousarray(x, dtype=np.float32)))
        if y.ndim != 4 or y.shape[0] != len(group):
            raise InputError(
                f"infer returned shape {y.shape} for {len(group)} tiles; expected {len(group)}×3×sh×sw"
            )
        for t, out in zip(group, y):
            stitcher.add(t, out)
    result = stitcher.result()
    return result.transpose(1, 2, 0) if hwc else result[None]


def seam_ratio(
    tiled: np.ndarray, whole: np.ndarray, plan: TilePlan, *, band: int = 4, lines: Literal["seams", "edges"] = "seams"
) -> float:
    """Mean |tiled − whole| in ``band``-pixel bands along interior tile lines ÷ the mean elsewhere.

    Both images are H×W×C (or H×W) on the output grid, typically uint8 after quantisation.
    ``lines="seams"`` uses the lines where neighbouring tiles meet (the crop borders of
    overlap-and-crop); ``"edges"`` uses the interior window edges, where a tile's input ends.
    1.0 means the error is no worse at the lines than anywhere else; nan when there is no interior line.
    """
    if tiled.shape != whole.shape:
        raise InputError(f"tiled {tiled.shape} and whole {whole.shape} must have the same shape")
    oh, ow = plan.output_shape
    if tiled.shape[:2] != (oh, ow):
        raise InputError(f"images are {tiled.shape[:2]} but the plan's output is {(oh, ow)}")
    if lines == "seams":
        rows, cols = plan.seams
    elif lines == "edges":
        s = plan.scale
        rows = tuple(sorted({s * v for sp in plan.row_spans for v in (sp.start, sp.stop) if 0 < v < plan.height}))
        cols = tuple(sorted({s * v for sp in plan.col_spans for v in (sp.start, sp.stop) if 0 < v < plan.width}))
    else:
        raise InputError(f"lines must be 'seams' or 'edges', got {lines!r}")
    if not rows and not cols:
        return float("nan")
    diff = np.abs(tiled.astype(np.float64) - whole.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    mask = np.zeros((oh, ow), dtype=bool)
    lo, hi = band // 2, band - band // 2
    for r in rows:
        mask[max(r - lo, 0) : r + hi, :] = True
    for c in cols:
        mask[:, max(c - lo, 0) : c + hi] = True
    inside, outside = diff[mask], diff[~mask]
    if outside.size == 0:
        return float("nan")
    mean_out = float(outside.mean())
    mean_in = float(inside.mean())
    if mean_out == 0.0:
        return 1.0 if mean_in == 0.0 else float("inf")
    return mean_in / mean_out
