"""The backend protocol and the checks every backend shares."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

__all__ = ["Backend", "check_batch", "TileLimits"]

TileLimits = tuple[int, int]  # (min side, max side) an engine accepts; (min_size, 0) = unbounded


@runtime_checkable
class Backend(Protocol):
    """Runs a super-resolution network on float32 N×3×h×w RGB in [0, 1], returning N×3×sh×sw float32.

    Implementations must be safe to call from several threads at once.
    """

    name: str
    meta: ModelMeta
    tile_limits: TileLimits
    max_batch: int  # 0 = unbounded

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None: ...

    def close(self) -> None: ...


def check_batch(x: np.ndarray, backend: Backend) -> np.ndarray:
    """Validate a batch once, in one place, before any backend code runs."""
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{backend.name}: expected an N×3×H×W array, got {getattr(x, 'shape', type(x).__name__)}")
    lo, hi = backend.tile_limits
    if min(x.shape[2:]) < lo or (hi and max(x.shape[2:]) > hi):
        raise InputError(
            f"{backend.name}: input {x.shape[2]}×{x.shape[3]} is outside the accepted sides "
            f"[{lo}, {hi or '∞'}]; tile or pad the image (Upscaler does this for you)"
        )
    if backend.max_batch and x.shape[0] > backend.max_batch:
        raise InputError(f"{backend.name}: batch {x.shape[0]} exceeds the engine's maximum {backend.max_batch}")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)
