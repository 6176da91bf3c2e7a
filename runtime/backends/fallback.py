"""A backend that never returns NaN or infinity as an image: FP16 → FP32 on a non-finite output.

:class:`FallbackBackend` implements the :class:`~.base.Backend` protocol over a primary backend. When the
primary's output is not finite (a float output with NaN or inf, or a uint8-I/O graph whose non-finite
flag is set), the same input runs again on the FP32 artifact beside the FP16 one, opened on first need
(with a warning); without one, or when that output is not finite either, it raises
:class:`~bsrn_edge.errors.NonFiniteOutputError` naming the model and the input size.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from bsrn_edge.errors import NonFiniteOutputError
from bsrn_edge.pixels import row_writer, to_nchw, to_pixels

from .base import FP16_ADVICE, Backend, TileLimits, nonfinite_error, pixel_layout

__all__ = ["FallbackBackend"]

log = logging.getLogger(__name__)


class FallbackBackend:
    """``primary``, with ``fp32`` (a path, opened by ``opener`` on first need) as the fallback; see the module doc.

    Its pixel I/O is the primary's: for a uint8-I/O primary the (float) FP32 fallback's output is
    converted to uint8 pixels. Thread-safe as the primary is.
    """

    def __init__(self, primary: Backend, fp32: Path | None = None, opener: Callable[[Path], Backend] | None = None):
        self.primary, self.fp32_path, self.opener = primary, fp32, opener
        self.name: str = primary.name
        self.meta = primary.meta
        self.tile_limits: TileLimits = primary.tile_limits
        self.max_batch: int = primary.max_batch
        self._pixels = pixel_layout(primary.meta)
        self._fp32: Backend | None = None
        self._lock = threading.Lock()

    # -- the fallback itself -------------------------------------------------------------------
    def nonfinite(self, shape: tuple[int, ...]) -> NonFiniteOutputError:
        """The error for a non-finite output that nothing could replace (``shape``: the input's)."""
        m = self.meta
        return nonfinite_error(f"{m.variant} ({self.name}, {m.precision})", shape,
                               FP16_ADVICE if m.precision == "fp16" else " Check the checkpoint.")

    def _fallback(self) -> Backend | None:
        if self.fp32_path is None or self.opener is None:
            return None
        with self._lock:
            if self._fp32 is None:
                log.warning("%s: FP16 output was not finite; falling back to %s", self.meta.variant, self.fp32_path)
                self._fp32 = self.opener(self.fp32_path)
            return self._fp32

    def recover(self, x: np.ndarray) -> np.ndarray:
        """Float N×3×h×w in [0, 1] → the FP32 fallback's float output, or :meth:`nonfinite` raised."""
        fp32 = self._fallback()
        y = fp32.infer(x) if fp32 is not None else None
        if y is None or not np.isfinite(y).all():
            raise self.nonfinite(tuple(x.shape))
        return y

    def recover_frame(self, frame: np.ndarray, out: np.ndarray) -> None:
        """An H×W×3 uint8 frame through the fallback into ``out`` (the frame pipeline's fallback)."""
        y = self.recover(to_nchw(frame))
        row_writer(out, "rgb", out.shape[:2])(0, out.shape[0], y[0].transpose(1, 2, 0))

    # -- Backend -------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._pixels == "uint8":
            try:
                return self.primary.infer(x)
            except NonFiniteOutputError:  # the graph's own flag
                return to_pixels(self.recover(to_nchw(x)))
        y = self.primary.infer(x)
        return y if np.isfinite(y).all() else self.recover(x)

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        if self._pixels == "uint8":
            out[...] = self.infer(x)
            return
        self.primary.infer_into(x, out)
        if not np.isfinite(np.sum(out, dtype=np.float64)):  # a sum, not a full-size mask: no per-frame allocation
            out[...] = self.recover(x)

    def close(self) -> None:
        self.primary.close()
        if self._fp32 is not None:
            self._fp32.close()
