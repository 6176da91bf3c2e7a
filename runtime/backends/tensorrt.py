"""TensorRT backend: a thin layer over the documented 10.x/11.x runtime API with pycuda buffers.

Shapes, dtypes and metadata come from ``model_info`` and ``base``; only device work lives here.

- The primary CUDA context (``pycuda.autoprimaryctx``), shared with ONNX Runtime and PyTorch; it is
  pushed around every call and popped after, because a context is current only in one thread.
- One execution context and one compute stream per backend, used as TensorRT allows (``NvInferRuntime.h``:
  a context's activation memory is in use from ``enqueueV3`` until that run completes, and contexts in
  concurrent use need an optimization profile each): every run is enqueued on the compute stream, so runs
  follow one another on the GPU; a lock makes threads take turns at the context (docs/architecture.md).
- :meth:`TensorRTBackend.run_device` joins the caller's stream through events, Polygraphy ``TrtRunner``
  style: the compute stream waits for the caller's work so far, the engine runs on it bound to the caller's
  device buffers (uint8-I/O engines, no copies), and the caller's stream waits for the run.
- The host path copies through page-locked and device buffers allocated once for the profile's largest
  shape: a change of tile shape only calls ``set_input_shape``. The output shape is checked against
  ``context.get_tensor_shape`` before every run.
- :meth:`TensorRTBackend.close` waits for the compute stream, then frees the buffers, the context, the
  stream and the engine; any later call is an error.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import NONFINITE_OUTPUT, ModelMeta

from ..devices.base import device_pointer
from ..model_info import read_engine_props
from .base import FiniteFlag, check_batch, check_pixels, nonfinite_error

__all__ = ["TensorRTBackend", "trt_dtype_to_numpy"]


def trt_dtype_to_numpy(trt: Any, dtype: Any) -> np.dtype:
    table = {trt.float32: np.float32, trt.float16: np.float16, trt.uint8: np.uint8}
    if dtype not in table:
        raise InputError(f"engine tensor dtype {dtype} is not supported (float32, float16 or uint8)")
    return np.dtype(table[dtype])


_MAX_FLAGS = 16  # flag buffers kept, one per caller stream that ran the engine


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
        with self._dev.active():
            self._context = self.engine.create_execution_context()  # profile 0, the engine's only one
            self._stream = self.cuda.Stream()  # every run of this backend, in order
        self._lock = threading.Lock()  # one caller at a time sets shapes and addresses and enqueues
        self._shape: tuple[int, ...] | None = None
        self._host: tuple[Any, ...] = ()  # host path: (h_in, h_out, d_in, d_out), grown once
        self._cap = 0
        self._flags: dict[int, tuple[Any, np.ndarray]] = {}
        self._closed = False

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

    def _live(self) -> None:
        if self._closed:
            raise InputError(f"{self.path}: this TensorRT backend was closed; open the engine again (or a new Upscaler)")

    def _buffers(self, shape: tuple[int, ...]) -> tuple[Any, ...]:
        """Host and device buffers for the host path, allocated once (grown only past an unknown profile)."""
        if self._cap < int(np.prod(shape)):
            for alloc in self._host[2:]:
                alloc.free()  # the previous host-path run was synchronised
            big_in, big_out = self._largest(shape)
            h_in = self.cuda.pagelocked_empty(int(np.prod(big_in)), self.in_dtype)
            h_out = self.cuda.pagelocked_empty(int(np.prod(big_out)), self.out_dtype)
            self._host = (h_in, h_out, self.cuda.mem_alloc(h_in.nbytes), self.cuda.mem_alloc(h_out.nbytes))
            self._cap = int(np.prod(big_in))
        return self._host

    def _set_shape(self, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        if self._shape != shape:
            self._shape = None  # stays invalid if anything below raises
            if not self._context.set_input_shape(self.input, shape):
                raise InputError(f"{self.path}: input shape {shape} is outside the engine's optimization profile "
                                 f"(sides {self.tile_limits[0]}–{self.tile_limits[1] or '∞'}, batch ≤ {self.max_batch or '∞'})")
            self._shape = shape
        got = tuple(self._context.get_tensor_shape(self.output))
        if got != tuple(out_shape):
            raise InputError(f"{self.path}: the engine's output for input {shape} is {got}, expected {tuple(out_shape)}; "
                             "the engine does not match its metadata (scale or layout): rebuild it with bsrn-export")

    def _bind_flag(self, stream: Any) -> tuple[Any, np.ndarray] | None:
        """Bind the engine's non-finite flag to a device float kept for the caller's ``stream`` (each slot in flight
        has its own stream, so its own flag) and return it with its page-locked host copy; None without the flag."""
        if self.flag is None:
            return None
        key = int(stream.handle)
        if key not in self._flags:
            if len(self._flags) >= _MAX_FLAGS:  # streams of frame sizes no longer in use; their runs were waited for
                self._stream.synchronize()
                self._flags.pop(next(iter(self._flags)))[0].free()
            host = self.cuda.pagelocked_empty((1, 1, 1, 1), np.float32)
            self._flags[key] = (self.cuda.mem_alloc(host.nbytes), host)
        self._context.set_tensor_address(self.flag, int(self._flags[key][0]))
        return self._flags[key]

    def _execute(self, shape: tuple[int, ...]) -> None:
        if not self._context.execute_async_v3(int(self._stream.handle)):
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
        with self._lock, self.device_context():
            self._live()
            h_in_all, h_out_all, d_in, d_out = self._buffers(x.shape)
            self._set_shape(tuple(x.shape), tuple(out.shape))
            h_in, h_out = h_in_all[: x.size].reshape(x.shape), h_out_all[: out.size].reshape(out.shape)
            np.copyto(h_in, x, casting="same_kind" if self.in_dtype == x.dtype else "unsafe")
            self._context.set_tensor_address(self.input, int(d_in))
            self._context.set_tensor_address(self.output, int(d_out))
            flag = self._bind_flag(self._stream)
            self.cuda.memcpy_htod_async(d_in, h_in, self._stream)
            self._execute(tuple(x.shape))
            self.cuda.memcpy_dtoh_async(h_out, d_out, self._stream)
            if flag is not None:
                self.cuda.memcpy_dtoh_async(flag[1], flag[0], self._stream)
            self._stream.synchronize()
            if flag is not None and not FiniteFlag(flag[1]):
                raise nonfinite_error(self.path, tuple(x.shape))
            np.copyto(out, h_out, casting="unsafe")

    # -- DeviceBackend -------------------------------------------------------------------------
    def run_device(self, x: Any, out: Any, stream: Any) -> Any:
        """Enqueue the engine with the caller's uint8 device buffers bound (no copies), ordered after the work on
        ``stream`` so far and before what the caller enqueues on it next.

        Returns an object whose truth is "the output was finite", readable once the stream's work up to
        here has completed (None for an engine without the flag output)."""
        if self.meta.pixels != "uint8":
            raise InputError(f"{self.path}: the device path needs a uint8-I/O engine (bsrn-export --uint8-io --engine)")
        check_pixels(tuple(x.shape), tuple(out.shape), self)
        with self._lock, self.device_context():
            self._live()
            self._dev.join(self._stream, stream)  # the run waits for the caller's upload
            self._set_shape(tuple(x.shape), tuple(out.shape))
            self._context.set_tensor_address(self.input, device_pointer(x))
            self._context.set_tensor_address(self.output, device_pointer(out))
            flag = self._bind_flag(stream)
            self._execute(tuple(x.shape))
            if flag is not None:
                self.cuda.memcpy_dtoh_async(flag[1], flag[0], self._stream)
            self._dev.join(stream, self._stream)  # the caller's download waits for the run
        return None if flag is None else FiniteFlag(flag[1])

    def device_context(self) -> Any:
        """The primary CUDA context, current in this thread for the duration (push … pop)."""
        return self._dev.active()

    def close(self) -> None:
        """Wait for the runs in flight, then free the buffers, the execution context, the stream and the engine."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self.device_context():  # TensorRT and pycuda free through the current CUDA context
                self._stream.synchronize()
                for alloc in [*self._host[2:], *(d for d, _ in self._flags.values())]:
                    alloc.free()
                self._host, self._flags, self._cap = (), {}, 0
                self._context = self._stream = self.engine = None
