"""The stitcher: tiled inference whose memory is bounded by the tile, not the image.

Tiles run row by row. Blended outputs accumulate in a float32 *band* only as tall as one row of
tiles; as soon as a row of tiles is done, every output row that no later tile touches is final and is
handed to ``write`` (which converts it into the caller's output), and the band slides down. Beyond
the caller's input and output, memory is one band plus one batch of tiles.

The same code blends numpy arrays on the host and tensors on a GPU: what differs is an
:class:`ArrayOps` (numpy's is the default; ``device_tiling`` has PyTorch's).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from bsrn_edge.errors import InputError

from .tiling import Tile, TilePlan, tile_weights

__all__ = ["ReadWindow", "WriteRows", "ArrayOps", "NUMPY_OPS", "banded_apply", "band_bytes", "stitch"]

#: ``read(y0, y1, x0, x1)`` → float 3×h×w in [0, 1] for that LR window.
ReadWindow = Callable[[int, int, int, int], Any]
#: ``write(y0, y1, block)``: output rows ``[y0, y1)`` are final; ``block`` is float (y1−y0)×sW×3.
WriteRows = Callable[[int, int, Any], None]
#: Maps a float N×3×h×w batch (as ``ArrayOps.stack`` made it) to N×3×sh×sw.
InferFn = Callable[[Any], Any]


class ArrayOps(Protocol):
    """The few array operations the stitcher needs, for one array library and device."""

    def zeros(self, shape: tuple[int, ...]) -> Any: ...

    def stack(self, arrays: list[Any]) -> Any: ...

    def weights(self, w: np.ndarray) -> Any:
        """Host float32 blending weights as an array the band can be multiplied with."""
        ...

    def hwc(self, chw: Any) -> Any:
        """A C×h×w block viewed as h×w×C."""
        ...

    def shift(self, band: Any, start: int, count: int) -> None:
        """Move band rows ``[start, start + count)`` to ``[0, count)`` (the ranges may overlap)."""
        ...


class _NumpyOps:
    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def stack(self, arrays: list[Any]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(arrays), dtype=np.float32)

    def weights(self, w: np.ndarray) -> np.ndarray:
        return w

    def hwc(self, chw: np.ndarray) -> np.ndarray:
        return chw.transpose(1, 2, 0)

    def shift(self, band: np.ndarray, start: int, count: int) -> None:
        band[:, :count] = band[:, start:start + count]  # numpy buffers overlapping copies


NUMPY_OPS: ArrayOps = _NumpyOps()


def _row_extent(plan: TilePlan, i: int) -> tuple[int, int]:
    out, _, _ = tile_weights(plan, Tile(i * len(plan.col_spans), plan.row_spans[i], plan.col_spans[0]))
    return out[0].start, out[0].stop


def band_bytes(plan: TilePlan) -> int:
    """Bytes of the float32 band for ``plan`` (what tiling costs beyond the tiles themselves)."""
    tall = max(b - a for a, b in (_row_extent(plan, i) for i in range(len(plan.row_spans))))
    return tall * plan.width * plan.scale * 3 * 4


def _runs(tiles: list[Tile], batch: int) -> list[list[Tile]]:
    """Consecutive tiles grouped into runs of up to ``batch`` of equal size."""
    runs: list[list[Tile]] = []
    for t in tiles:
        if runs and len(runs[-1]) < batch and runs[-1][0].size == t.size:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def _check_shape(y: Any, want: tuple[int, ...], scale: int) -> None:
    if tuple(y.shape) != want:
        raise InputError(f"infer returned {tuple(y.shape)} for tiles of {want}; check the model's scale ({scale})")


def banded_apply(infer: InferFn, read: ReadWindow, plan: TilePlan, write: WriteRows, *, batch: int = 1,
                 ops: ArrayOps = NUMPY_OPS, progress: Callable[[int, int], None] | None = None) -> None:
    """Run every tile of ``plan`` and deliver the stitched output in final row blocks, top to bottom.

    ``progress(done, total)``, when given, is called after each call of ``infer`` with the tiles run so far."""
    if batch < 1:
        raise InputError(f"batch must be ≥ 1, got {batch}")
    s, width_out = plan.scale, plan.width * plan.scale
    if len(plan) == 1:  # one window covers the image: its output is final, no blending band needed
        y = infer(ops.stack([read(0, plan.height, 0, plan.width)]))
        _check_shape(y, (1, 3, plan.height * s, width_out), s)
        write(0, plan.height * s, ops.hwc(y[0]))
        if progress is not None:
            progress(1, 1)
        return
    rows = len(plan.row_spans)
    extents = [_row_extent(plan, i) for i in range(rows)]
    band = ops.zeros((3, max(b - a for a, b in extents), width_out))  # C × rows × sW, like the tiles
    base, ran = extents[0][0], 0
    for i in range(rows):
        tiles = [plan.tile_at(i * len(plan.col_spans) + j) for j in range(len(plan.col_spans))]
        for run in _runs(tiles, batch):
            y = infer(ops.stack([read(t.rows.start, t.rows.stop, t.cols.start, t.cols.stop) for t in run]))
            _check_shape(y, (len(run), 3, run[0].rows.size * s, run[0].cols.size * s), s)
            for t, tile_out in zip(run, y):
                out, own, w = tile_weights(plan, t)
                band[:, out[0].start - base:out[0].stop - base, out[1]] += ops.weights(w) * tile_out[:, own[0], own[1]]
            ran += len(run)
            if progress is not None:
                progress(ran, len(plan))
        done = extents[i + 1][0] if i + 1 < rows else extents[i][1]
        n = done - base
        if n > 0:
            write(base, done, ops.hwc(band[:, :n]))
            keep = extents[i][1] - done
            if keep > 0:
                ops.shift(band, n, keep)
            band[:, max(keep, 0):] = 0.0
            base = done


def stitch(infer: InferFn, image: np.ndarray, plan: TilePlan, *, batch: int = 1) -> np.ndarray:
    """The stitched float32 sH×sW×3 output of ``infer`` over a float 3×H×W image, through
    :func:`banded_apply` (for tests and benchmarks that compare tiled with whole-image output)."""
    if image.shape != (3, plan.height, plan.width):
        raise InputError(f"the image is {image.shape} but the plan is for 3×{plan.height}×{plan.width}; "
                         "make the plan from this image's size")
    out = np.empty((*plan.output_shape, 3), np.float32)

    def write(y0: int, y1: int, block: np.ndarray) -> None:
        out[y0:y1] = block

    banded_apply(infer, lambda y0, y1, x0, x1: image[:, y0:y1, x0:x1], plan, write, batch=batch)
    return out
