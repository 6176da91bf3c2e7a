"""Band-streamed stitching: exact partition of unity, row order, and memory bounded by the tile."""

import numpy as np
import pytest

from bsrn_edge.pixels import to_nchw, window_reader
from bsrn_edge.runtime.bands import band_bytes, banded_apply, stitch
from bsrn_edge.runtime.tiling import plan_tiles, tile_weights


def nearest_x2(x: np.ndarray) -> np.ndarray:
    """A position-independent stand-in 'network': its tiles must blend back to the whole image exactly."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


@pytest.mark.parametrize("tile,overlap,batch", [(45, 12, 1), (33, 8, 3), (27, 6, 2)])
def test_bands_reassemble_a_real_image_exactly(lr_images, tile, overlap, batch):
    img = lr_images[0][:110, :97]
    plan = plan_tiles(110, 97, scale=2, tile=tile, overlap=overlap, min_size=15)
    assert len(plan.row_spans) >= 3 and len(plan.col_spans) >= 3
    out = np.zeros((220, 194, 3), np.float32)
    order: list[int] = []

    def write(y0, y1, block):
        order.append(y0)
        out[y0:y1] = block

    banded_apply(nearest_x2, window_reader(img, "rgb"), plan, write, batch=batch)
    want = nearest_x2(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(out, want, atol=2e-6)
    assert order == sorted(order) and order[0] == 0  # final rows are delivered top to bottom, once
    # stitch() (what tests and benchmarks use) against the whole image, computed without any tiles
    np.testing.assert_allclose(stitch(nearest_x2, to_nchw(img)[0], plan, batch=batch), want, atol=2e-6)


def contrast_x2(x: np.ndarray) -> np.ndarray:
    """A stand-in whose output depends on the whole tile (like BSRN's CCA): overlapping tiles disagree, so the
    result depends on how they are blended."""
    return nearest_x2(x) * (1.0 + x.mean(axis=(1, 2, 3), keepdims=True))


@pytest.mark.parametrize("tile,overlap,batch", [(45, 12, 1), (33, 8, 3)])
def test_stitch_equals_a_whole_canvas_blend(lr_images, tile, overlap, batch):
    """A second implementation of the stitch: every tile run alone, weighted and summed into a full-size
    float64 canvas (no bands, no batches, no sliding); the weights' partition of unity is checked here too."""
    img = to_nchw(lr_images[0][:110, :97])[0]
    plan = plan_tiles(110, 97, scale=2, tile=tile, overlap=overlap, min_size=15)
    canvas, cover = np.zeros((3, 220, 194)), np.zeros((220, 194))
    for k in range(len(plan)):
        t = plan.tile_at(k)
        y = contrast_x2(img[None, :, t.rows.start:t.rows.stop, t.cols.start:t.cols.stop])[0]
        out, own, w = tile_weights(plan, t)
        canvas[:, out[0], out[1]] += w * y[:, own[0], own[1]]
        cover[out] += w
    np.testing.assert_allclose(cover, 1.0, atol=1e-6)
    got = stitch(contrast_x2, img, plan, batch=batch)
    np.testing.assert_allclose(got, canvas.transpose(1, 2, 0), atol=1e-5)
    seams = np.abs(got - stitch(nearest_x2, img, plan) * (1.0 + img.mean())).max()
    assert seams > 1e-3  # the tiles really disagree: the comparison above is not trivially true


def test_band_memory_is_a_row_of_tiles_not_the_image():
    plan = plan_tiles(3000, 4000, scale=4, tile=201, overlap=48, min_size=15)
    output_bytes = 12000 * 16000 * 3  # uint8 output
    assert band_bytes(plan) < output_bytes / 3  # ≈ one row of tiles: 144 MB against a 576 MB output
