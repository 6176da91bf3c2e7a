"""The host as a device: numpy buffers, no streams (ONNX Runtime on the CPU)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["HostDevice"]


class HostDevice:
    kind = "cpu"
    index = 0

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        return np.empty(shape, dtype)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        return np.empty(shape, dtype)

    def stream(self) -> None:
        return None

    def upload(self, dst: np.ndarray, src: np.ndarray, stream: Any) -> None:
        np.copyto(dst, src.reshape(dst.shape))

    def download(self, dst: np.ndarray, src: np.ndarray, stream: Any) -> None:
        np.copyto(dst, src.reshape(dst.shape))

    def record(self, stream: Any) -> None:
        return None

    def wait(self, event: Any) -> None:
        return None

    def join(self, stream: Any, other: Any) -> None:
        return None

    def stream_handle(self, stream: Any) -> int:
        return 0

    def free_memory(self) -> int:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return 2 << 30
