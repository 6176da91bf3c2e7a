"""The tile policy: from a memory budget and an image size to a tile plan, on the CPU and on a GPU.

Pure arithmetic over the model's metadata and the backend's limits; the only thing it asks the
outside world is the free device memory, through ``free_memory`` (on a GPU): once per image that
:meth:`TilePolicy.tile_for` plans, and once per frame size for :meth:`TilePolicy.whole` (cached).
"""

from __future__ import annotations

from typing import Callable, Literal

from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

from .backends.base import TileLimits
from .tiling import DEFAULT_OVERLAP, TilePlan, plan_tiles

__all__ = ["TilePolicy", "TileSetting"]

TileSetting = int | Literal["auto"] | None
# live feature maps per LR pixel and channel, measured as ONNX Runtime's peak RSS increase
# (bsrn-bench): ≈15 for BSRN-S (48 channels), ≈30 for BSRN (64 channels); rounded up
_ACT_MAPS_SMALL, _ACT_MAPS = 16, 32
#: share of the GPU's free memory that tile="auto" plans for (the rest: allocator slack, other users)
GPU_BUDGET_SHARE = 0.5


class TilePolicy:
    """Decides, per image size, whether to run whole or in tiles, and plans the tiles.

    ``tile``: ``"auto"`` runs whole when the network's activations fit the budget (``memory_mb`` on the
    host; :data:`GPU_BUDGET_SHARE` of ``free_memory()`` on a GPU) and tiles the rest with the model's
    recommended tile, made smaller when the budget or an engine's profile requires; 0 or ``None`` never
    tiles (unless an engine's profile forces it); an int forces that LR tile side. ``overlap`` is in LR
    pixels (None: the default). ``batch``: tiles per call, capped by the engine's maximum.
    """

    def __init__(self, meta: ModelMeta, limits: TileLimits, *, tile: TileSetting = "auto", overlap: int | None = None,
                 batch: int = 1, max_batch: int = 0, memory_mb: int = 768, half_on_gpu: bool = False,
                 free_memory: Callable[[], int] | None = None, backend_name: str = ""):
        if batch < 1:
            raise InputError(f"batch must be ≥ 1, got {batch}")
        if tile == 0 and not isinstance(tile, bool):
            tile = None  # 0: no tiling, as -t 0 on the command line and in Real-ESRGAN
        if isinstance(tile, int) and not isinstance(tile, bool) and tile < 1:
            raise InputError(f"tile must be a positive LR side, 0 (no tiles), 'auto' or None, got {tile}")
        if overlap is not None and overlap < 0:
            raise InputError(f"overlap must be 0 or more LR pixels, got {overlap}")
        lo, hi = limits
        if isinstance(tile, int) and not isinstance(tile, bool) and (tile < lo or (hi and tile > hi)):
            raise InputError(f"tile {tile}: {meta.variant} on {backend_name} takes LR tiles of "
                             f"{f'{lo}…{hi}' if hi else f'at least {lo}'} pixels")
        self.meta, self.limits, self.tile, self.memory_mb = meta, limits, tile, memory_mb
        self.overlap = DEFAULT_OVERLAP if overlap is None else overlap
        self.batch = batch if not max_batch else min(batch, max_batch)
        self.half_on_gpu = half_on_gpu
        self.free_memory = free_memory
        self._whole: dict[tuple[int, int], bool] = {}

    def act_bytes(self, pixels: int) -> int:
        """Bytes of live activations for ``pixels`` LR pixels."""
        maps = _ACT_MAPS_SMALL if self.meta.channels <= 48 else _ACT_MAPS
        width = 2 if self.half_on_gpu else 4
        return pixels * width * max(self.meta.channels, 3) * maps

    def budget(self) -> int:
        if self.free_memory is not None:
            return int(self.free_memory() * GPU_BUDGET_SHARE)
        return self.memory_mb * (1 << 20)

    def tile_for(self, height: int, width: int) -> int | None:
        """The LR tile side used for an image of this size (None: the whole image in one run)."""
        lo, hi = self.limits
        if self.tile is None:
            return None if not hi or max(height, width) <= hi else hi
        if self.tile != "auto":
            return int(self.tile)
        budget = self.budget()
        if self.act_bytes(height * width) <= budget and (not hi or max(height, width) <= hi):
            return None
        scale, sizes = self.meta.scale, self.meta.sizes
        band_per_row = scale * width * scale * 3 * 4  # float32 band bytes per LR row of tile
        side = sizes.snap_tile(min(hi or self.meta.tile, self.meta.tile))
        while side > lo and self.act_bytes(side * side * self.batch) + side * band_per_row > budget:
            side = sizes.snap_down(side)
        return max(lo, min(side, hi) if hi else side)

    def whole(self, h: int, w: int) -> bool:
        """Whether frames of this size run whole; decided once per size (on a GPU :meth:`tile_for` asks the driver
        for free memory, which a camera loop should not do per frame, nor flip between paths as it changes)."""
        whole = self._whole.get((h, w))
        if whole is None:
            whole = self._whole[(h, w)] = min(h, w) >= self.limits[0] and self.tile_for(h, w) is None
        return whole

    def plan(self, ph: int, pw: int, tile: int | None) -> TilePlan:
        """The tile plan for a (padded) ``ph``×``pw`` plane with LR tile side ``tile`` (None: one window)."""
        lo = self.limits[0]
        if tile is None or (ph <= tile and pw <= tile):  # one window: the exact whole-image result
            return plan_tiles(ph, pw, scale=self.meta.scale, tile=max(ph, pw, lo), overlap=0, min_size=lo, snap=False)
        overlap = min(self.overlap, self.meta.sizes.snap_tile(tile) // 2)  # the plan snaps the side to 6k + 3
        return plan_tiles(ph, pw, scale=self.meta.scale, tile=tile, overlap=overlap, min_size=lo)

    def smaller(self, tile: int | None, ph: int, pw: int) -> int:
        """The tile side to retry with after running out of memory with ``tile`` (None: the whole image)."""
        return self.meta.sizes.snap_tile(max(self.limits[0], (tile or max(ph, pw)) // 2))
