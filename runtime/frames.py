"""Whole frames through a device backend, pipelined: uint8 in, uint8 out, no float work on the host.

One frame: host uint8 → page-locked buffer → device → network (pixel conversion on the device) →
page-locked buffer → host uint8. :meth:`FramePipeline.stream` keeps up to ``slots`` frames in flight,
each slot with its own buffers and stream, so the upload of frame i+1, the network on frame i and the
download of frame i−1 overlap (the backend orders all network work on one compute stream).

Buffers are allocated once per frame shape and thread, never per frame.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from bsrn_edge.errors import InputError, NonFiniteOutputError

from .backends.base import FP16_ADVICE, DeviceBackend, nonfinite_error

__all__ = ["FramePipeline", "NonFiniteOutputError", "device_of", "check_frame"]


def device_of(backend: object) -> Any:
    """The backend's :class:`~bsrn_edge.runtime.devices.base.Device` when it has a device path, else None."""
    if not isinstance(backend, DeviceBackend):
        return None
    return getattr(backend, "device", None)


def check_frame(frame: np.ndarray) -> tuple[int, int, int]:
    """A camera frame must be an H×W×3 uint8 array; returns its shape."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"frames must be H×W×3 uint8 RGB arrays (Upscaler(channel_order='bgr') for OpenCV's BGR), "
                         f"got {getattr(frame, 'shape', type(frame).__name__)} {getattr(frame, 'dtype', '')}; "
                         "use upscale() for other images")
    return frame.shape  # type: ignore[return-value]


@dataclass
class _Slot:
    h_in: np.ndarray
    d_in: Any
    d_out: Any
    h_out: np.ndarray
    stream: Any
    done: Any = None
    finite: Any = None  # what run_device returned: a FiniteFlag (read after the slot's work), or None when unknown


class FramePipeline:
    """Runs equal-size H×W×3 uint8 frames whole through ``backend.run_device``.

    ``model`` names the model in error messages. ``fallback(frame, out)``, when given, upscales a frame
    whose network output was not finite another way (the Upscaler's FP32 fallback); without it such a
    frame raises :class:`NonFiniteOutputError`. Safe to use from several threads: each thread gets its
    own slots.
    """

    def __init__(self, backend: DeviceBackend, slots: int = 3, model: str = "",
                 fallback: Callable[[np.ndarray, np.ndarray], None] | None = None):
        if slots < 1:
            raise InputError(f"slots must be ≥ 1, got {slots}")
        device = device_of(backend)
        if device is None:
            raise InputError(f"{backend.name}: this backend has no device path (run_device)")
        self.backend, self.device, self.slots = backend, device, slots
        self.scale = backend.meta.scale
        self.model = model or backend.meta.variant
        self.fallback = fallback
        self._local = threading.local()

    def _ring(self, shape: tuple[int, int, int]) -> list[_Slot]:
        st = self._local
        if getattr(st, "shape", None) != shape:
            st.shape = None
            h, w = shape[:2]
            s, dev = self.scale, self.device
            st.ring = [_Slot(dev.pinned((h, w, 3), np.uint8), dev.empty((1, h, w, 3), np.uint8),
                             dev.empty((1, h * s, w * s, 3), np.uint8), dev.pinned((h * s, w * s, 3), np.uint8),
                             dev.stream()) for _ in range(self.slots)]
            st.shape = shape
        return st.ring

    def _enqueue(self, slot: _Slot, frame: np.ndarray) -> None:
        dev = self.device
        np.copyto(slot.h_in, frame)
        dev.upload(slot.d_in, slot.h_in, slot.stream)
        slot.finite = self.backend.run_device(slot.d_in, slot.d_out, slot.stream)
        dev.download(slot.h_out, slot.d_out, slot.stream)
        slot.done = dev.record(slot.stream)

    def _finish(self, slot: _Slot) -> np.ndarray:
        self.device.wait(slot.done)
        if slot.finite is not None and not bool(slot.finite):
            if self.fallback is not None:
                self.fallback(slot.h_in, slot.h_out)
                return slot.h_out
            raise nonfinite_error(f"{self.model} ({self.backend.name})", slot.h_in.shape[:2], FP16_ADVICE)
        return slot.h_out

    def run(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Upscale one frame into ``out`` (sH×sW×3 uint8) and wait for it."""
        slot = self._ring(check_frame(frame))[0]
        self._enqueue(slot, frame)
        np.copyto(out, self._finish(slot))
        return out

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield each upscaled frame, in order, with up to ``slots`` frames in flight.

        Each yielded array is one of ``slots`` page-locked output buffers: it stays valid until you ask
        for the next frame, then it is reused. Copy it (``out.copy()`` or ``np.copyto``) to keep it.
        A frame of a new size drains the frames in flight first.
        """
        pending: deque[_Slot] = deque()
        k = 0
        for frame in frames:
            shape = check_frame(frame)
            if pending and getattr(self._local, "shape", None) != shape:
                while pending:
                    yield self._finish(pending.popleft())
                k = 0
            ring = self._ring(shape)
            slot = ring[k % len(ring)]
            k += 1
            self._enqueue(slot, frame)
            pending.append(slot)
            if len(pending) == len(ring):
                yield self._finish(pending.popleft())
        while pending:
            yield self._finish(pending.popleft())
