"""Tiled inference whose memory is bounded by the tile, not the image (pure numpy).

Tiles run row by row. Blended outputs accumulate in a float32 *band* only as tall as one row of
tiles; as soon as a row of tiles is done, every output row that no later tile touches is final and is
handed to ``write`` (which converts it into the caller's preallocated output), and the band slides
down. Beyond the caller's input and output, memory is one band plus one batch of tiles.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bsrn_edge.errors import InputError

from .tiling import InferFn, Tile, TilePlan, add_tile, tile_weights

__all__ = ["ReadWindow", "WriteRows", "banded_apply", "band_bytes"]

#: ``read(y0, y1, x0, x1)`` → float32 3×h×w in [0, 1] for that LR window.
ReadWindow = Callable[[int, int, int, int], np.ndarray]
#: ``write(y0, y1, block)``: output rows ``[y0, y1)`` are final; ``block`` is float32 (y1−y0)×sW×3.
WriteRows = Callable[[int, int, np.ndarray], None]


def _row_extent(plan: TilePlan, i: int) -> tuple[int, int]:
    out, _, _ = tile_weights(plan, Tile(i * len(plan.col_spans), plan.row_spans[i], plan.col_spans[0]))
    return out[0].start, out[0].stop


def band_bytes(plan: TilePlan) -> int:
    """Bytes of the float32 band for ``plan`` (what tiling costs beyond the tiles themselves)."""
    tall = max(b - a for a, b in (_row_extent(plan, i) for i in range(len(plan.row_spans))))
    return tall * plan.width * plan.scale * 3 * 4


def banded_apply(infer: InferFn, read: ReadWindow, plan: TilePlan, write: WriteRows, *, batch: int = 1) -> None:
    """Run every tile of ``plan`` and deliver the stitched output in final row blocks, top to bottom."""
    if batch < 1:
        raise InputError(f"batch must be ≥ 1, got {batch}")
    s, width_out = plan.scale, plan.width * plan.scale
    if len(plan) == 1:  # one window covers the image: its output is final, no blending band needed
        y = np.asarray(infer(np.ascontiguousarray(read(0, plan.height, 0, plan.width)[None], dtype=np.float32)))
        if y.shape != (1, 3, plan.height * s, width_out):
            raise InputError(f"infer returned {y.shape} for a {plan.height}×{plan.width} image; check the model's scale ({s})")
        write(0, plan.height * s, y[0].transpose(1, 2, 0))
        return
    rows = len(plan.row_spans)
    extents = [_row_extent(plan, i) for i in range(rows)]
    tall = max(b - a for a, b in extents)
    band = np.zeros((3, tall, width_out), np.float32)  # C × rows × sW, like the tiles
    base = extents[0][0]
    for i in range(rows):
        tiles = [plan.tile_at(i * len(plan.col_spans) + j) for j in range(len(plan.col_spans))]
        k = 0
        while k < len(tiles):  # runs of up to ``batch`` equal-size tiles
            g = [tiles[k]]
            k += 1
            while k < len(tiles) and len(g) < batch and tiles[k].size == g[0].size:
                g.append(tiles[k])
                k += 1
            x = np.stack([read(t.rows.start, t.rows.stop, t.cols.start, t.cols.stop) for t in g])
            y = np.asarray(infer(np.ascontiguousarray(x, dtype=np.float32)))
            want = (len(g), 3, g[0].rows.size * s, g[0].cols.size * s)
            if y.shape != want:
                raise InputError(f"infer returned {y.shape} for tiles of {want}; check the model's scale ({s})")
            for t, out in zip(g, y):
                add_tile(band, plan, t, out, row0=base)
        done = extents[i + 1][0] if i + 1 < rows else extents[i][1]
        n = done - base
        if n > 0:
            write(base, done, band[:, :n].transpose(1, 2, 0))
            keep = extents[i][1] - done
            if keep > 0:
                band[:, :keep] = band[:, n:n + keep]
            band[:, max(keep, 0):] = 0.0
            base = done
