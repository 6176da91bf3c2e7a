"""The device protocol: buffers, page-locked host memory, copies and streams, nothing else."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from bsrn_edge.errors import InputError

__all__ = ["Device", "device_pointer"]


@runtime_checkable
class Device(Protocol):
    """Where a backend's buffers live. Copies and waits are enqueued on streams; ``None`` is allowed as a
    stream on a device that has none (the host), and then every call completes before it returns.

    ``kind`` is ``"cpu"`` or ``"cuda"``; ``index`` the device ordinal.
    """

    kind: str
    index: int

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type) -> Any:
        """An uninitialised device buffer (a tensor or an array object with the shape)."""
        ...

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A page-locked host numpy array (plain memory where the device has no such thing)."""
        ...

    def stream(self) -> Any:
        """A new stream (never the default stream: ONNX Runtime treats stream 0 as 'none')."""
        ...

    def upload(self, dst: Any, src: np.ndarray, stream: Any) -> None: ...

    def download(self, dst: np.ndarray, src: Any, stream: Any) -> None: ...

    def record(self, stream: Any) -> Any:
        """An event marking everything enqueued on ``stream`` so far."""
        ...

    def wait(self, event: Any) -> None:
        """Block the host until ``event`` has completed."""
        ...

    def join(self, stream: Any, other: Any) -> None:
        """Make ``stream`` wait (on the device, not the host) for the work enqueued on ``other`` so far."""
        ...

    def stream_handle(self, stream: Any) -> int:
        """The raw ``cudaStream_t`` of ``stream`` (0 on the host)."""
        ...

    def free_memory(self) -> int:
        """Bytes of device memory free now (host: available RAM)."""
        ...


def device_pointer(buf: Any) -> int:
    """The address of a device or host buffer: a torch tensor, an object with
    ``__cuda_array_interface__`` (CuPy, Numba, pycuda GPUArray), any DLPack producer (``__dlpack__``:
    JAX, CuPy, TensorFlow; read through PyTorch, or numpy for host memory), a numpy array, or a pycuda
    allocation. The buffer must be C-contiguous."""
    if hasattr(buf, "data_ptr"):
        return int(buf.data_ptr())
    cai = getattr(buf, "__cuda_array_interface__", None)
    if cai is not None:
        return int(cai["data"][0])
    if isinstance(buf, np.ndarray):
        return int(buf.ctypes.data)
    if hasattr(buf, "__dlpack__"):
        return _dlpack_pointer(buf)
    try:
        return int(buf)  # pycuda DeviceAllocation
    except (TypeError, ValueError):
        raise InputError(f"cannot take the address of a {type(buf).__name__}: pass a torch tensor, an object with "
                         "__cuda_array_interface__, a numpy array or a pycuda allocation") from None


def _dlpack_pointer(buf: Any) -> int:
    """The address behind a DLPack producer (the capsule stays owned by ``buf``)."""
    from bsrn_edge._lazy import available

    kind, _ = buf.__dlpack_device__()
    if available("torch"):
        import torch

        return int(torch.from_dlpack(buf).data_ptr())
    if int(kind) == 1:  # kDLCPU
        return int(np.from_dlpack(buf).ctypes.data)
    raise InputError("a DLPack buffer on a GPU needs PyTorch installed to be read; pass a torch tensor or an "
                     "object with __cuda_array_interface__ instead")
