"""Where bsrn-edge keeps caches (exported ONNX for the bench, TensorRT engines, ONNX Runtime's TensorRT
engine cache): one root for all."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$BSRN_EDGE_CACHE``, else ``$XDG_CACHE_HOME/bsrn-edge`` (``~/.cache/bsrn-edge``)."""
    base = os.environ.get("BSRN_EDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "bsrn-edge")
    return Path(base)
