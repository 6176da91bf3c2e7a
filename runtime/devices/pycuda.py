"""pycuda buffers and streams, for TensorRT without PyTorch.

Uses the device's *primary* context (``pycuda.autoprimaryctx``), the one ONNX Runtime, PyTorch and
TensorRT share; ``pycuda.autoinit`` would create a second context beside it. A CUDA context is current
only in the thread that made it current, so every call here pushes it and pops it again.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from bsrn_edge._lazy import require

__all__ = ["PycudaDevice", "PycudaBuffer"]


class PycudaBuffer:
    """A device allocation with a shape and dtype; exposes ``__cuda_array_interface__``."""

    def __init__(self, alloc: Any, shape: tuple[int, ...], dtype: np.dtype):
        self.alloc, self.shape, self.dtype = alloc, tuple(shape), np.dtype(dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (int(self.alloc), False), "version": 3}


class PycudaDevice:
    kind = "cuda"
    index = 0

    def __init__(self) -> None:
        self.cuda = require("pycuda.driver")
        self.context = require("pycuda.autoprimaryctx").context

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the primary context current in this thread for the duration."""
        self.context.push()
        try:
            yield
        finally:
            self.context.pop()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> PycudaBuffer:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        with self.active():
            return PycudaBuffer(self.cuda.mem_alloc(nbytes), shape, np.dtype(dtype))

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        with self.active():
            return self.cuda.pagelocked_empty(shape, dtype)

    def stream(self) -> Any:
        with self.active():
            return self.cuda.Stream()

    def upload(self, dst: PycudaBuffer, src: np.ndarray, stream: Any) -> None:
        with self.active():
            self.cuda.memcpy_htod_async(dst.alloc, src, stream)

    def download(self, dst: np.ndarray, src: PycudaBuffer, stream: Any) -> None:
        with self.active():
            self.cuda.memcpy_dtoh_async(dst, src.alloc, stream)

    def record(self, stream: Any) -> Any:
        with self.active():
            ev = self.cuda.Event()
            ev.record(stream)
            return ev

    def wait(self, event: Any) -> None:
        if event is not None:
            with self.active():
                event.synchronize()

    def join(self, stream: Any, other: Any) -> None:
        if stream is not None and other is not None and stream is not other:
            with self.active():
                ev = self.cuda.Event()
                ev.record(other)
                stream.wait_for_event(ev)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle) if stream is not None else 0

    def free_memory(self) -> int:
        with self.active():
            return int(self.cuda.mem_get_info()[0])
