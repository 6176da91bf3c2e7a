"""The tile policy alone: memory budget → whole or tiles, on the CPU and a GPU, with no model and no backend.

Expected values are computed here from the policy's documented rule (activations = LR pixels × 4 bytes ×
channels × 16 maps for a 48-channel network, 32 for wider ones; tiles snapped to 6k + 3)."""

from __future__ import annotations

import pytest

from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta
from bsrn_edge.runtime.tile_policy import GPU_BUDGET_SHARE, TilePolicy

BSRN_S = ModelMeta(variant="bsrn-s-x4", arch="bsrn", scale=4, channels=48, min_size=15, tile=195, overlap=48,
                   checkpoint_sha256="", exporter_version="test")
BSRN = ModelMeta(variant="bsrn-x4", arch="bsrn", scale=4, channels=64, min_size=15, tile=195, overlap=48,
                 checkpoint_sha256="", exporter_version="test")


def test_auto_runs_whole_exactly_up_to_the_budget() -> None:
    policy = TilePolicy(BSRN_S, (15, 0), memory_mb=768)
    per_pixel = 4 * 48 * 16  # float32 × channels × live maps
    limit = 768 * (1 << 20) // per_pixel  # 262,144 LR pixels
    assert policy.tile_for(512, limit // 512) is None
    assert policy.tile_for(512, limit // 512 + 1) is not None
    wide = TilePolicy(BSRN, (15, 0), memory_mb=768)  # 64 channels and 32 maps: 8 KiB a pixel, 98,304 pixels
    assert wide.tile_for(256, 384) is None and wide.tile_for(256, 385) is not None


def test_tiles_are_snapped_within_the_budget_and_never_below_the_minimum() -> None:
    policy = TilePolicy(BSRN_S, (15, 0), memory_mb=64)
    side = policy.tile_for(3000, 4000)
    assert side is not None and side % 6 == 3 and 15 <= side <= 195
    band = 4 * 4000 * 4 * 3 * 4 * side  # the float32 stitching band for one row of tiles
    assert policy.act_bytes(side * side) + band <= 64 * (1 << 20)
    tiny = TilePolicy(BSRN_S, (15, 0), memory_mb=1)
    assert tiny.tile_for(3000, 4000) == 15


def test_fixed_none_and_zero_tiles_and_engine_limits() -> None:
    assert TilePolicy(BSRN_S, (15, 0), tile=99).tile_for(2000, 2000) == 99
    assert TilePolicy(BSRN_S, (15, 0), tile=None).tile_for(2000, 2000) is None
    assert TilePolicy(BSRN_S, (15, 0), tile=0).tile_for(2000, 2000) is None  # 0 = no tiling, as bsrn-upscale -t 0
    engine = TilePolicy(BSRN_S, (32, 256), tile=None)  # an engine profile caps the side: tiles of its maximum
    assert engine.tile_for(200, 250) is None and engine.tile_for(300, 200) == 256
    auto = TilePolicy(BSRN_S, (32, 96), memory_mb=4096)
    assert auto.tile_for(90, 90) is None and auto.tile_for(120, 90) == 93  # ≤ 96 and 6k + 3


@pytest.mark.parametrize("kwargs, words", [
    ({"tile": 7}, "at least 15"), ({"tile": 300, "limits": (32, 256)}, "32…256"), ({"tile": -1}, "positive"),
    ({"overlap": -2}, "overlap"), ({"batch": 0}, "batch"),
])
def test_impossible_settings_are_refused_with_the_range(kwargs: dict, words: str) -> None:
    limits = kwargs.pop("limits", (15, 0))
    with pytest.raises(InputError, match=words):
        TilePolicy(BSRN_S, limits, **kwargs)


def test_gpu_budget_is_a_share_of_free_memory_asked_once_per_size() -> None:
    calls: list[int] = []

    def free() -> int:
        calls.append(1)
        return 2 << 30

    policy = TilePolicy(BSRN_S, (15, 0), free_memory=free, half_on_gpu=True)
    assert policy.budget() == int((2 << 30) * GPU_BUDGET_SHARE)
    assert policy.act_bytes(100) == 100 * 2 * 48 * 16  # FP16 on a GPU: two bytes a value
    calls.clear()
    assert policy.whole(540, 960) and policy.whole(540, 960) and len(calls) == 1
    assert not policy.whole(10, 960)  # below the minimum side: never whole (the image is padded)


def test_plans_one_window_or_overlapping_tiles_and_a_smaller_retry() -> None:
    policy = TilePolicy(BSRN_S, (15, 0), overlap=100, batch=8, max_batch=4)
    assert policy.batch == 4  # capped by the engine's maximum
    whole = policy.plan(40, 50, None)
    assert len(whole) == 1 and whole.output_shape == (160, 200)
    tiled = policy.plan(300, 300, 63)
    assert len(tiled) > 1 and tiled.tile == 63 and tiled.overlap <= 63 // 2  # overlap capped at half the tile
    assert policy.smaller(63, 300, 300) == 27 and policy.smaller(None, 300, 300) == 147
