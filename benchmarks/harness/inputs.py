"""Real-image inputs for timing (never noise: the network is ill-conditioned off its data)."""

from __future__ import annotations

import numpy as np

from bsrn_edge.datasets import bundled_set5, find_pairs
from bsrn_edge.imageio import read_rgb
from bsrn_edge.pixels import pad_to_min, to_nchw

__all__ = ["real_frame", "bench_input"]


def real_frame(width: int, height: int) -> np.ndarray:
    """The first bundled Set5 ×4 LR image, mirror-padded (:func:`~bsrn_edge.pixels.pad_to_min`) and
    cropped to ``height × width``; H×W×3 uint8, contiguous, the same pixels on every call."""
    img = read_rgb(find_pairs(bundled_set5(), 4)[0].lr)
    big, _ = pad_to_min(img, max(width, height))
    return np.ascontiguousarray(big[:height, :width])


def bench_input(size: tuple[int, int]) -> np.ndarray:
    """The timing input of bsrn-bench: :func:`real_frame` of ``size`` = (width, height) as 1×3×H×W float32
    in [0, 1]."""
    return to_nchw(real_frame(*size))
