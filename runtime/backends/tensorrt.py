"""TensorRT backend: a thin layer over the documented 10.x/11.x runtime API with pycuda buffers.

Shapes, dtypes and metadata come from ``model_info`` and ``base``; only device work lives here.

- The primary CUDA context (``pycuda.autoprimaryctx``), shared with ONNX Runtime and PyTorch; it is
  pushed around every call and popped after, because a context is current only in one thread.
- One execution context per thread (contexts are not thread-safe), each with its own stream and, for
  the host path, page-locked and device buffers allocated once for the profile's largest shape:
  a change of tile shape only calls ``set_input_shape``, never reallocates.
- The output shape is checked against ``context.get_tensor_shape`` before every run.
- :meth:`TensorRTBackend.run_device` binds the caller's device buffers with ``set_tensor_address``
  and enqueues ``execute_async_v3`` on the caller's stream (uint8-I/O engines).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError, NonFiniteOutputError
from bsrn_edge.meta import NONFINITE_OUTPUT, ModelMeta

from ..devices.base import device_pointer
from ..model_info import read_engine_props
from .base import check_batch, check_pixels

__all__ = ["TensorRTBackend", "trt_dtype_to_numpy"]


def trt_dtype_to_numpy(trt: Any, dtype: Any) -> np.dtype:
    table = {trt.float32: np.float32, trt.float16: np.float16, trt.uint8: np.uint8}
    if dtype not in table:
        raise InputError(f"engine tensor dtype {dtype} is not supported (float32, float16 or uint8)")
    return np.dtype(table[dtype])


_MAX_FLAGS = 16  # flag buffers kept per thread, one per stream that ran the engine


class _Finite:
    """True when the engine's non-finite flag (copied to ``host`` on the stream) is 0; read after the stream's work."""

    def __init__(self, host: np.ndarray):
        self.host = host

    def __bool__(self) -> bool:
        return float(self.host.max()) == 0.0


class TensorRTBackend:
    def __init__(self, path: str | Path):
        self.trt = require("tensorrt")
        from ..devices.pycuda import PycudaDevice

        self.path = Path(path)
        props = read_engine_props(self.path)
        self.meta = ModelMeta.from_props(props, str(self.path))
        self._dev = PycudaDevice()
        self.device: PycudaDevice | None = self._dev
        self.cuda = self._dev.cuda
        with self._dev.active():
            logger = self.trt.Logger(self.trt.Logger.WARNING)
            self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise InputError(f"{self.path}: TensorRT could not deserialize it (built for another GPU or TensorRT version?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) != mode and n != NONFINITE_OUTPUT)
        self.flag = NONFINITE_OUTPUT if NONFINITE_OUTPUT in names else None  # uint8 engines since 0.3
        self.in_dtype = trt_dtype_to_numpy(self.trt, self.engine.get_tensor_dtype(self.input))
        self.out_dtype = trt_dtype_to_numpy(self.trt, self.engine.get_tensor_dtype(self.output))
        self.tile_limits = (int(props.get("bsrn_edge.profile_min_tile", self.meta.min_size)),
                            int(props.get("bsrn_edge.profile_max_tile", 0)))
        self.max_batch = int(props.get("bsrn_edge.profile_max_batch", 0))
        self.name = f"tensorrt-{self.meta.precision}" + ("-u8" if self.meta.pixels == "uint8" else "")
        if self.meta.pixels != "uint8":
            self.device = None  # float engines: host path only (no conversion kernels without PyTorch)
        self._local = threading.local()
        self._contexts: list[Any] = []

    # -- per-thread state ----------------------------------------------------------------------
    def _largest(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Input and output shapes to size the host-path buffers for: the profile's largest, else ``shape``."""
        s, hi, nb = self.meta.scale, self.tile_limits[1], self.max_batch
        uint8 = self.meta.pixels == "uint8"
        if hi and nb:
            shape = (nb, hi, hi, 3) if uint8 else (nb, 3, hi, hi)
        if uint8:
            n, h, w, c = shape
            return shape, (n, h * s, w * s, c)
        n, c, h, w = shape
        return shape, (n, c, h * s, w * s)

    def _context(self) -> Any:
        st = self._local
        if getattr(st, "context", None) is None:
            st.context = self.engine.create_execution_context()
            st.stream = self.cuda.Stream()
            st.shape = None
            st.cap = 0
            self._contexts.append(st.context)
        return st

    def _buffers(self, st: Any, shape: tuple[int, ...]) -> None:
        """Host and device buffers for the host path, allocated once (grown only past an unknown profile)."""
        need = int(np.prod(shape))
        if st.cap >= need:
            return
        big_in, big_out = self._largest(shape)
        st.h_in = self.cuda.pagelocked_empty(int(np.prod(big_in)), self.in_dtype)
        st.h_out = self.cuda.pagelocked_empty(int(np.prod(big_out)), self.out_dtype)
        st.d_in = self.cuda.mem_alloc(st.h_in.nbytes)
        st.d_out = self.cuda.mem_alloc(st.h_out.nbytes)
        st.cap = int(np.prod(big_in))

    def _set_shape(self, st: Any, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        if st.shape != shape:
            st.shape = None  # stays invalid if anything below raises
            if not st.context.set_input_shape(self.input, shape):
                raise InputError(f"{self.path}: input shape {shape} is outside the engine's optimization profile "
                                 f"(sides {self.tile_limits[0]}–{self.tile_limits[1] or '∞'}, batch ≤ {self.max_batch or '∞'})")
            st.shape = shape
        got = tuple(st.context.get_tensor_shape(self.output))
        if got != tuple(out_shape):
            raise InputError(f"{self.path}: the engine's output for input {shape} is {got}, expected {tuple(out_shape)}; "
                             "the engine does not match its metadata (scale or layout): rebuild it with bsrn-export")

    def _bind_flag(self, st: Any, stream: Any) -> tuple[Any, np.ndarray] | None:
        """Bind the engine's non-finite flag to a device float kept for ``stream`` (each slot in flight has its
        own stream, so its own flag) and return it with its page-locked host copy; None without the flag output."""
        if self.flag is None:
            return None
        flags = st.__dict__.setdefault("flags", {})
        key = int(stream.handle)
        if key not in flags:
            if len(flags) >= _MAX_FLAGS:  # streams of frame sizes no longer in use
                flags.pop(next(iter(flags)))
            host = self.cuda.pagelocked_empty((1, 1, 1, 1), np.float32)
            flags[key] = (self.cuda.mem_alloc(host.nbytes), host)
        st.context.set_tensor_address(self.flag, int(flags[key][0]))
        return flags[key]

    def _nonfinite(self, shape: tuple[int, ...]) -> NonFiniteOutputError:
        return NonFiniteOutputError(f"{self.path}: the network produced NaN or infinite values for input "
                                    f"{'×'.join(map(str, shape))}; its uint8 output would be garbage")

    def _execute(self, st: Any, stream_handle: int, shape: tuple[int, ...]) -> None:
        if not st.context.execute_async_v3(stream_handle):
            raise InputError(f"{self.path}: TensorRT execution failed for input {shape}")

    # -- Backend -------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        s = self.meta.scale
        if self.meta.pixels == "uint8":
            out = np.empty((x.shape[0], x.shape[1] * s, x.shape[2] * s, 3), np.uint8)
        else:
            out = np.empty((x.shape[0], 3, x.shape[2] * s, x.shape[3] * s), np.float32)
        self.infer_into(x, out)
        return out

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        x = check_batch(x, self)
        with self.device_context():
            st = self._context()
            self._buffers(st, x.shape)
            self._set_shape(st, tuple(x.shape), tuple(out.shape))
            h_in = st.h_in[: x.size].reshape(x.shape)
            h_out = st.h_out[: out.size].reshape(out.shape)
            np.copyto(h_in, x, casting="same_kind" if self.in_dtype == x.dtype else "unsafe")
            st.context.set_tensor_address(self.input, int(st.d_in))
            st.context.set_tensor_address(self.output, int(st.d_out))
            flag = self._bind_flag(st, st.stream)
            self.cuda.memcpy_htod_async(st.d_in, h_in, st.stream)
            self._execute(st, st.stream.handle, tuple(x.shape))
            self.cuda.memcpy_dtoh_async(h_out, st.d_out, st.stream)
            if flag is not None:
                self.cuda.memcpy_dtoh_async(flag[1], flag[0], st.stream)
            st.stream.synchronize()
            if flag is not None and not _Finite(flag[1]):
                raise self._nonfinite(tuple(x.shape))
            np.copyto(out, h_out, casting="unsafe")

    # -- DeviceBackend -------------------------------------------------------------------------
    def run_device(self, x: Any, out: Any, stream: Any) -> Any:
        """Enqueue the engine on ``stream`` with the caller's uint8 device buffers bound (no copies).

        Returns an object whose truth is "the output was finite", readable once the stream's work up to
        here has completed (None for an engine without the flag output)."""
        if self.meta.pixels != "uint8":
            raise InputError(f"{self.path}: the device path needs a uint8-I/O engine (bsrn-export --uint8-io --engine)")
        check_pixels(tuple(x.shape), tuple(out.shape), self)
        with self.device_context():
            st = self._context()
            self._set_shape(st, tuple(x.shape), tuple(out.shape))
            st.context.set_tensor_address(self.input, device_pointer(x))
            st.context.set_tensor_address(self.output, device_pointer(out))
            flag = self._bind_flag(st, stream)
            self._execute(st, int(stream.handle), tuple(x.shape))
            if flag is None:
                return None
            self.cuda.memcpy_dtoh_async(flag[1], flag[0], stream)
        return _Finite(flag[1])

    def device_context(self) -> Any:
        """The primary CUDA context, current in this thread for the duration (push … pop)."""
        return self._dev.active()

    def close(self) -> None:
        with self.device_context():  # TensorRT frees context memory through the current CUDA context
            self._contexts.clear()
            self._local = threading.local()
