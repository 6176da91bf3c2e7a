"""The backend protocol and the checks every backend shares.

A backend runs one exported network. Its pixel I/O is what the artifact's metadata says
(``meta.pixels``): ``"float"`` models take N×3×h×w float32 RGB in [0, 1] and return N×3×sh×sw float32;
``"uint8"`` models take N×h×w×3 uint8 RGB and return N×sh×sw×3 uint8, with normalisation, clamp,
round-half-to-even and the cast inside the graph.

Two ways in:

- :meth:`Backend.infer` / :meth:`Backend.infer_into` on host (numpy) arrays, everywhere;
- :meth:`DeviceBackend.run_device` on buffers that already live on the backend's device (CUDA memory,
  or host memory for a CPU device), enqueued on a stream, in *pixel* I/O: N×h×w×3 uint8 in,
  N×sh×sw×3 uint8 out, whatever the graph's own I/O (a float graph converts on the device). This is
  the path that keeps camera frames on the GPU from upload to download.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from bsrn_edge.errors import InputError, NonFiniteOutputError
from bsrn_edge.meta import ModelMeta

__all__ = ["Backend", "DeviceBackend", "check_batch", "check_pixels", "TileLimits", "pixel_layout", "ShapeCache",
           "raise_if_nonfinite", "nonfinite_error", "FP16_ADVICE", "FiniteFlag"]

TileLimits = tuple[int, int]  # (min side, max side) an engine accepts; (min_size, 0) = unbounded


@runtime_checkable
class Backend(Protocol):
    """Runs a super-resolution network on host arrays in the model's pixel I/O (see the module doc).

    Implementations must be safe to call from several threads at once.
    """

    name: str
    meta: ModelMeta
    tile_limits: TileLimits
    max_batch: int  # 0 = unbounded

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class DeviceBackend(Backend, Protocol):
    """A backend that can also run on device-resident uint8 pixels.

    ``device`` is the :class:`~bsrn_edge.runtime.devices.base.Device` whose buffers and streams
    :meth:`run_device` accepts. ``run_device`` orders the work after what is enqueued on ``stream`` so far
    and before what the caller enqueues there next (on the backend's own compute stream, joined through
    events) and returns without waiting; ``x`` is N×h×w×3 uint8, ``out`` N×sh×sw×3 uint8, both allocated by ``device``.
    """

    device: Any

    def run_device(self, x: Any, out: Any, stream: Any) -> Any:
        """Returns an object whose truth is \"the output was finite\", readable once ``stream``'s work has completed
        (None when the backend cannot tell)."""
        ...


class FiniteFlag:
    """What :meth:`DeviceBackend.run_device` returns for a graph with the non-finite flag output: true when the
    flag, copied into the host array ``host`` by the device work, is 0. Read it only after that work completed."""

    def __init__(self, host: np.ndarray):
        self.host = host

    def __bool__(self) -> bool:
        return float(self.host.max()) == 0.0


def pixel_layout(meta: ModelMeta) -> str:
    """``"float"`` or ``"uint8"``; anything else in the metadata is an error that says what to do."""
    if meta.pixels not in ("float", "uint8"):
        raise InputError(f"model metadata pixels={meta.pixels!r} is not 'float' or 'uint8'; re-export with bsrn-export")
    return meta.pixels


#: what to do about a non-finite output of an FP16 model
FP16_ADVICE = (" An FP16 model may overflow on this content: use the FP32 model (precision='fp32', bsrn-upscale --fp32) "
               "or put the FP32 .onnx beside the FP16 one so the Upscaler can fall back")


def nonfinite_error(source: object, shape: tuple[int, ...], advice: str = "") -> NonFiniteOutputError:
    """The one wording of a network output with NaN or infinity (``shape``: the input's), whatever found it."""
    return NonFiniteOutputError(f"{source}: the network produced NaN or infinite values for a {'×'.join(map(str, shape))} "
                                f"input; nothing was returned (its image would be black or garbage).{advice}")


def raise_if_nonfinite(flag: np.ndarray, source: object, shape: tuple[int, ...]) -> None:
    """Raise when a uint8-I/O graph's non-finite flag (:data:`~bsrn_edge.meta.NONFINITE_OUTPUT`) is set."""
    if float(np.max(flag)) != 0.0:
        raise nonfinite_error(source, shape)


def _check_sides(h: int, w: int, backend: Backend) -> None:
    lo, hi = backend.tile_limits
    if min(h, w) < lo or (hi and max(h, w) > hi):
        raise InputError(
            f"{backend.name}: input {h}×{w} is outside the accepted sides "
            f"[{lo}, {hi or '∞'}]; tile or pad the image (Upscaler does this for you)"
        )


def _check_count(n: int, backend: Backend) -> None:
    if backend.max_batch and n > backend.max_batch:
        raise InputError(f"{backend.name}: batch {n} exceeds the engine's maximum {backend.max_batch}")


def check_batch(x: np.ndarray, backend: Backend) -> np.ndarray:
    """Validate a host batch once, in one place, before any backend code runs.

    Float models: N×3×H×W, returned as contiguous float32. uint8 models: N×H×W×3 uint8, contiguous.
    """
    if pixel_layout(backend.meta) == "uint8":
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
            raise InputError(f"{backend.name}: this uint8-I/O model takes N×H×W×3 uint8 RGB, got "
                             f"{getattr(x, 'shape', type(x).__name__)} {getattr(x, 'dtype', '')}")
        _check_sides(x.shape[1], x.shape[2], backend)
        _check_count(x.shape[0], backend)
        return np.ascontiguousarray(x)
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{backend.name}: expected an N×3×H×W array, got {getattr(x, 'shape', type(x).__name__)}")
    _check_sides(x.shape[2], x.shape[3], backend)
    _check_count(x.shape[0], backend)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def check_pixels(shape: tuple[int, ...], out_shape: tuple[int, ...], backend: Backend) -> None:
    """Validate the shapes of a :meth:`DeviceBackend.run_device` call (N×h×w×3 in, N×sh×sw×3 out)."""
    if len(shape) != 4 or shape[3] != 3:
        raise InputError(f"{backend.name}: device input must be N×H×W×3 uint8, got shape {tuple(shape)}")
    n, h, w, _ = shape
    s = backend.meta.scale
    if tuple(out_shape) != (n, h * s, w * s, 3):
        raise InputError(f"{backend.name}: device output must be {(n, h * s, w * s, 3)} for input {tuple(shape)}, "
                         f"got {tuple(out_shape)}")
    _check_sides(h, w, backend)
    _check_count(n, backend)


class ShapeCache:
    """What ``make(shape)`` builds for each input shape (a session, a compiled model), at most ``size`` of them,
    the least recently used dropped first. Thread-safe: ``make`` runs once per shape at a time, outside the cache's
    lock, so a thread whose shape is held never waits for another shape's build (seconds on OpenVINO)."""

    def __init__(self, make: Callable[[tuple[int, ...]], Any], size: int = 4):
        self.make, self.size = make, max(0, size)
        self._items: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._building: dict[tuple[int, ...], threading.Event] = {}  # set when that shape's build ends
        self._cleared = 0  # clear() calls: a build that began before one is not kept
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> Any:
        """What was built for ``shape``, built on first use (a thread asking while it is built waits for it)."""
        while True:
            with self._lock:
                if shape in self._items:
                    self._items.move_to_end(shape)
                    return self._items[shape]
                building = self._building.get(shape)
                if building is None:
                    building = self._building[shape] = threading.Event()
                    cleared = self._cleared
                    break
            building.wait()  # then held, or the build failed and this thread tries it
        try:
            item = self.make(shape)
            with self._lock:
                if cleared == self._cleared:
                    self._items[shape] = item
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return item
        finally:
            with self._lock:
                del self._building[shape]
            building.set()

    def __len__(self) -> int:
        return len(self._items)

    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes held now, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        """Drop everything held, and what a build under way returns (after a backend's close, nothing is kept)."""
        with self._lock:
            self._items.clear()
            self._cleared += 1
