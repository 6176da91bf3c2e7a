"""PyTorch tensors as device buffers, on a CUDA GPU or on the CPU (where streams are ``None``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bsrn_edge._lazy import require

__all__ = ["TorchDevice"]


class TorchDevice:
    def __init__(self, device: str = "cuda"):
        self.torch = torch = require("torch")
        self.dev = torch.device(device)
        self.kind = self.dev.type
        self.index = (self.dev.index or 0) if self.kind == "cuda" else 0
        if self.kind == "cuda" and self.dev.index is None:
            self.dev = torch.device("cuda", torch.cuda.current_device())
            self.index = self.dev.index

    def _dtype(self, dtype: np.dtype | type) -> Any:
        return self.torch.from_numpy(np.empty(0, dtype)).dtype

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> Any:
        return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.dev)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        t = self.torch.empty(shape, dtype=self._dtype(dtype), pin_memory=self.kind == "cuda")
        arr = t.numpy()  # shares the page-locked memory; the tensor stays alive through numpy's base
        return arr

    def stream(self) -> Any:
        return self.torch.cuda.Stream(device=self.dev) if self.kind == "cuda" else None

    def _on(self, stream: Any) -> Any:
        import contextlib

        return self.torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def upload(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        with self._on(stream):
            dst.copy_(self.torch.from_numpy(src).view(dst.shape), non_blocking=True)

    def download(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        with self._on(stream):
            self.torch.from_numpy(dst).view(src.shape).copy_(src, non_blocking=True)

    def record(self, stream: Any) -> Any:
        if stream is None:
            return None
        ev = self.torch.cuda.Event()
        ev.record(stream)
        return ev

    def wait(self, event: Any) -> None:
        if event is not None:
            event.synchronize()

    def join(self, stream: Any, other: Any) -> None:
        if stream is not None and other is not None and stream is not other:
            stream.wait_stream(other)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream) if stream is not None else 0

    def free_memory(self) -> int:
        if self.kind == "cuda":
            return int(self.torch.cuda.mem_get_info(self.dev)[0])
        from .host import HostDevice

        return HostDevice().free_memory()
