"""The pure tiling plan, its weights, the stitcher (bands), seam statistics, and one real-image check with BSRN-S."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

from bsrn_edge.errors import InputError
from bsrn_edge.metrics import SeamStats, psnr, seam_ratio, seam_stats
from bsrn_edge.pixels import from_nchw, quantize, to_nchw
from bsrn_edge.runtime import tiling
from bsrn_edge.runtime.bands import stitch
from bsrn_edge.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, plan_tiles, tile_weights
from bsrn_edge.sizes import ESA_ALIGNMENT, SizeRequirements

SIZES = [(15, 15), (17, 33), (97, 61), (64, 64), (120, 80), (195, 195), (196, 391), (256, 170), (401, 1000)]
CONFIGS = [
    dict(tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP),
    dict(tile=45, overlap=12, margin=4, blend="linear"),
    dict(tile=21, overlap=8, margin=2),
    dict(tile=15, overlap=0, margin=0, blend="crop"),
    dict(tile=64, overlap=24, alignment=1, snap=False, blend="crop", margin=0),
    dict(tile=99, overlap=90, margin=12),  # windows three deep
]


def weight_sum(plan: tiling.TilePlan) -> np.ndarray:
    acc = np.zeros(plan.output_shape, dtype=np.float64)
    for t in plan.tiles:
        out, _, w = tile_weights(plan, t)
        assert w.dtype == np.float32 and (w >= 0).all()
        acc[out] += w
    return acc


def nearest(scale: int):
    """A stand-in network that tiles exactly: nearest-neighbour upscaling."""

    def run(x: np.ndarray) -> np.ndarray:
        return x.repeat(scale, axis=2).repeat(scale, axis=3)

    return run


@pytest.mark.parametrize("h,w", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"t{c['tile']}-o{c['overlap']}" for c in CONFIGS])
def test_weights_cover_every_output_pixel_once(h, w, cfg):
    plan = plan_tiles(h, w, scale=3, **cfg)
    np.testing.assert_allclose(weight_sum(plan), 1.0, atol=1e-6)


@pytest.mark.parametrize("h,w", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_windows_inside_image_sized_and_aligned(h, w):
    plan = plan_tiles(h, w, scale=4, tile=63, overlap=24)
    assert plan.tile == 63
    for t in plan.tiles:
        y0, x0, y1, x1 = t.window
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        for span, length in ((t.rows, h), (t.cols, w)):
            assert min(length, 15) <= span.size <= plan.tile
            assert span.start % ESA_ALIGNMENT == 0  # 63 leaves room to keep even the last window on the grid
            assert span.start <= span.fade_in <= span.full_from <= span.full_to <= span.fade_out <= span.stop
    for spans in (plan.row_spans, plan.col_spans):
        assert spans[0].start == 0 and spans[-1].stop == (h if spans is plan.row_spans else w)
        for a, b in zip(spans, spans[1:]):
            assert a.stop - b.start >= plan.overlap or len(spans) == 1
            assert a.fade_out - a.full_to == b.full_from - b.fade_in  # one shared ramp


def test_small_image_is_one_exact_tile():
    plan = plan_tiles(97, 61, scale=4)
    assert len(plan) == 1 and plan.tiles[0].window == (0, 0, 97, 61)
    assert plan.seams == ((), ())
    _, _, w = tile_weights(plan, plan.tiles[0])
    assert w.shape == (388, 244) and (w == 1).all()


def test_margin_keeps_ramp_off_window_edges():
    plan = plan_tiles(40, 400, scale=2, tile=99, overlap=48, margin=12)
    for a, b in zip(plan.col_spans, plan.col_spans[1:]):
        assert a.fade_out <= a.stop - 12 and b.fade_in >= b.start + 12
        assert a.fade_out - a.full_to >= 48 - 2 * 12 - 1  # the ramp spans the overlap less the margins


def test_snap_to_esa_sides():
    # by hand: the largest 6k + 3 not above n
    assert [SizeRequirements(1).snap_tile(n) for n in (15, 16, 20, 21, 128, 195, 200)] == [15, 15, 15, 21, 123, 195, 195]
    assert SizeRequirements(15).snap_tile(14) == 14  # below the minimum: left alone
    assert SizeRequirements(15).snap_down(195) == 189 and SizeRequirements(15).snap_down(21, 5) == 15
    assert plan_tiles(400, 400, scale=4, tile=200).tile == 195
    assert plan_tiles(400, 400, scale=4, tile=200, snap=False).tile == 200
    assert DEFAULT_TILE % 6 == 3


def test_last_window_falls_back_to_flush_when_grid_would_make_it_too_small():
    plan = plan_tiles(20, 20, scale=2, tile=15, overlap=0, margin=0)
    assert [(s.start, s.stop) for s in plan.row_spans] == [(0, 15), (5, 20)]


@pytest.mark.parametrize("h,w", [(15, 15), (17, 33), (97, 61), (128, 128)])
def test_stitch_is_exact_for_a_local_network(h, w, lr_images):
    img = to_nchw(lr_images[0][:h, :w])
    plan = plan_tiles(h, w, scale=2, tile=21, overlap=8, margin=2)
    out = stitch(nearest(2), img[0], plan, batch=3)
    np.testing.assert_allclose(out, nearest(2)(img)[0].transpose(1, 2, 0), atol=1e-6)


def test_batches_hold_equal_tiles_only():
    calls: list[tuple[int, ...]] = []

    def spy(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return nearest(2)(x)

    plan = plan_tiles(61, 200, scale=2, tile=27, overlap=8)  # rows of 9 tiles, batched within a row
    stitch(spy, np.zeros((3, 61, 200), np.float32), plan, batch=4)
    assert sum(c[0] for c in calls) == len(plan)
    assert all(c[0] <= 4 for c in calls)
    assert max(c[0] for c in calls) == 4  # equal tiles really are batched
    sizes = {t.size for t in plan.tiles}
    assert {c[2:] for c in calls} == sizes


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(height=14, width=40, scale=4), ["14×40", "pad", "15"]),
        (dict(height=40, width=40, scale=4, tile=10), ["tile", "at least 15"]),
        (dict(height=40, width=40, scale=4, tile=63, overlap=60), ["overlap 60", "at most 57"]),
        (dict(height=40, width=40, scale=4, overlap=-1), ["overlap", "at least 0"]),
        (dict(height=40, width=40, scale=0), ["scale", "upscaling factor"]),
        (dict(height=40.0, width=40, scale=4), ["height must be an integer", "40.0"]),
        (dict(height=40, width=40, scale=4, blend="feather"), ["cosine", "feather"]),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, words):
    with pytest.raises(InputError) as err:
        plan_tiles(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_stitcher_refuses_a_wrong_image_or_network():
    plan = plan_tiles(40, 40, scale=2, tile=21, overlap=8)
    with pytest.raises(InputError, match="plan is for 3×40×40"):
        stitch(nearest(2), np.zeros((3, 41, 40), np.float32), plan)
    with pytest.raises(InputError, match="infer returned"):
        stitch(lambda x: x[:1], np.zeros((3, 40, 40), np.float32), plan, batch=4)
    with pytest.raises(InputError, match="scale"):
        stitch(nearest(1), np.zeros((3, 40, 40), np.float32), plan)  # ×1 output for a ×2 plan


def test_seam_stats_find_a_line_and_pool():
    plan = plan_tiles(40, 40, scale=2, tile=27, overlap=8, blend="crop")
    (row,), (col,) = plan.seams
    whole = np.zeros((80, 80, 3), np.uint8)
    tiled = whole.copy()
    assert seam_ratio(tiled, whole, plan.seams) == 1.0  # identical images: no worse at the seams
    tiled[:, col - 2 : col + 2] = 4  # exactly the 4-pixel band of the column seam
    tiled[0, 0] = 4
    st = seam_stats(tiled, whole, plan.seams)
    assert st.seam_pixels == 4 * 80 + 4 * 80 - 16 and st.other_pixels == 80 * 80 - st.seam_pixels
    assert st.seam_mean == pytest.approx(4 * 320 / st.seam_pixels) and st.other_sum == 4
    pooled = st + st
    assert pooled.ratio == pytest.approx(st.ratio) and pooled.seam_pixels == 2 * st.seam_pixels
    assert seam_stats(tiled, whole, plan.seams, near=(8, 40)).other_pixels < st.other_pixels
    assert np.isnan(SeamStats(0.0, 0, 1.0, 10).ratio)
    one = plan_tiles(20, 20, scale=2)
    assert np.isnan(seam_ratio(whole[:40, :40], whole[:40, :40], one.seams))
    with pytest.raises(ValueError, match="same shape"):
        seam_stats(tiled, whole[:40], plan.seams)


@needs_torch
def test_bsrn_s_tiles_invisibly_on_a_real_image(lr_images):
    """Bundled Set5 'baby' (128×128) in 4 tiles: within 45 dB of whole-image inference, no seam."""
    torch = pytest.importorskip("torch")
    from bsrn_edge import load_model
    from bsrn_edge.models.deploy import to_deploy

    model = to_deploy(load_model("bsrn-s-x4").model)

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    lr = lr_images[0]
    assert lr.shape == (128, 128, 3)
    plan = plan_tiles(128, 128, scale=4, tile=99, min_size=15)
    assert len(plan) == 4
    whole = from_nchw(infer(to_nchw(lr)))
    tiled = quantize(stitch(infer, to_nchw(lr)[0], plan, batch=2))
    naive_plan = plan_tiles(128, 128, scale=4, tile=99, alignment=1, snap=False, blend="crop", margin=0)
    naive = quantize(stitch(infer, to_nchw(lr)[0], naive_plan))
    assert psnr(tiled, whole) >= 45.0
    assert seam_ratio(tiled, whole, plan.seams) <= 1.1
    assert psnr(tiled, whole) > psnr(naive, whole) + 3.0  # measured ~62.7 vs ~55 dB
