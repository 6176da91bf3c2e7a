"""TensorRT backend: a thin layer over the documented 10.x/11.x runtime API with pycuda buffers.

Shapes, dtypes and metadata come from ``model_info`` and ``base``; only device work lives here.
Each thread gets its own execution context, stream and page-locked buffers; the pycuda context is pushed
around every call because a CUDA context is current only in the thread that made it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

from ..model_info import read_engine_props
from .base import check_batch

__all__ = ["TensorRTBackend", "trt_dtype_to_numpy"]


def trt_dtype_to_numpy(trt: Any, dtype: Any) -> np.dtype:
    table = {trt.float32: np.float32, trt.float16: np.float16}
    if dtype not in table:
        raise InputError(f"engine tensor dtype {dtype} is not supported (float32/float16 only)")
    return np.dtype(table[dtype])


class TensorRTBackend:
    def __init__(self, path: str | Path):
        self.trt = require("tensorrt")
        self.cuda = require("pycuda.driver")
        self._ctx = require("pycuda.autoinit").context  # current only in this thread: push it in the others
        self.path = Path(path)
        props = read_engine_props(self.path)
        self.meta = ModelMeta.from_props(props, str(self.path))
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise InputError(f"{self.path}: TensorRT could not deserialize it (built for another GPU or TensorRT version?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode.INPUT
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        self.in_dtype = trt_dtype_to_numpy(self.trt, self.engine.get_tensor_dtype(self.input))
        self.out_dtype = trt_dtype_to_numpy(self.trt, self.engine.get_tensor_dtype(self.output))
        self.tile_limits = (int(props.get("bsrn_edge.profile_min_tile", self.meta.min_size)),
                            int(props.get("bsrn_edge.profile_max_tile", 0)))
        self.max_batch = int(props.get("bsrn_edge.profile_max_batch", 0))
        self.name = f"tensorrt-{self.meta.precision}"
        self._local = threading.local()

    def _state(self, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Any:
        st = self._local
        if getattr(st, "shape", None) != shape:
            st.shape = None  # stays invalid if anything below raises
            st.context = getattr(st, "context", None) or self.engine.create_execution_context()
            st.stream = getattr(st, "stream", None) or self.cuda.Stream()
            st.h_in = self.cuda.pagelocked_empty(shape, self.in_dtype)
            st.h_out = self.cuda.pagelocked_empty(out_shape, self.out_dtype)
            st.d_in = self.cuda.mem_alloc(st.h_in.nbytes)
            st.d_out = self.cuda.mem_alloc(st.h_out.nbytes)
            if not st.context.set_input_shape(self.input, shape):
                raise InputError(f"{self.path}: input shape {shape} is outside the engine's optimization profile")
            st.context.set_tensor_address(self.input, int(st.d_in))
            st.context.set_tensor_address(self.output, int(st.d_out))
            st.shape = shape
        return st

    def infer(self, x: np.ndarray) -> np.ndarray:
        s = self.meta.scale
        out = np.empty((x.shape[0], 3, x.shape[2] * s, x.shape[3] * s), np.float32)
        self.infer_into(x, out)
        return out

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        x = check_batch(x, self)
        self._ctx.push()
        try:
            st = self._state(tuple(x.shape), tuple(out.shape))
            np.copyto(st.h_in, x, casting="same_kind" if self.in_dtype == np.float32 else "unsafe")
            self.cuda.memcpy_htod_async(st.d_in, st.h_in, st.stream)
            if not st.context.execute_async_v3(st.stream.handle):
                raise InputError(f"{self.path}: TensorRT execution failed for input {x.shape}")
            self.cuda.memcpy_dtoh_async(st.h_out, st.d_out, st.stream)
            st.stream.synchronize()
            np.copyto(out, st.h_out, casting="unsafe")
        finally:
            self._ctx.pop()

    def close(self) -> None:
        self._ctx.push()  # TensorRT frees its context memory through the current CUDA context
        try:
            self._local = threading.local()
        finally:
            self._ctx.pop()
