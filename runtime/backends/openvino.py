"""OpenVINO backend: our ONNX files (float or uint8 pixel I/O; FP32, FP16 or INT8 QDQ weights) read directly by
OpenVINO's ONNX frontend and compiled for its CPU plugin (or an Intel GPU or NPU).

The inference precision of the float parts is always set explicitly (``f32``, ``bf16`` or, on a GPU, ``f16``) and
read back from the compiled model: OpenVINO's own default is BF16 on any CPU with AVX512-BF16 and FP32 elsewhere,
and a BF16 request on a CPU without native BF16 silently stays FP32, so neither is left to chance.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.hostinfo import physical_cores
from bsrn_edge.meta import NONFINITE_OUTPUT, ModelMeta

from ..devices.host import HostDevice
from .base import FiniteFlag, ShapeCache, check_batch, check_pixels, raise_if_nonfinite

__all__ = ["OpenVINOBackend", "native_bf16", "onnx_props"]

log = logging.getLogger(__name__)

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # our precision names → OpenVINO's element types


def native_bf16() -> bool:
    """True when OpenVINO's CPU plugin computes BF16 natively here (AVX512-BF16, AMX or AVX2-VNNI-2)."""
    return "BF16" in require("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _read(core: Any, path: Path) -> Any:
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: OpenVINO cannot read it ({str(exc).strip().splitlines()[-1]})") from exc


def _props(model: Any) -> dict[str, str]:
    """The ONNX ``metadata_props``, which OpenVINO's ONNX frontend keeps in the model's ``framework`` rt_info."""
    info = model.get_rt_info()
    return {k: v.astype(str) for k, v in info["framework"].items()} if "framework" in info else {}


def onnx_props(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read by OpenVINO."""
    return _props(_read(require("openvino").Core(), Path(path)))


class _Compiled:
    """One model compiled for one input shape, with idle inference requests to lend (one per thread at a time)."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self._idle: list[Any] = []

    @contextlib.contextmanager
    def request(self) -> Iterator[Any]:
        try:
            rq = self._idle.pop()  # atomic: two threads never get the same request
        except IndexError:
            rq = self.compiled.create_infer_request()
        try:
            yield rq
        finally:
            self._idle.append(rq)


class _Lane:
    """An asynchronous inference request of one thread's frame pipeline and the copies waiting for it."""

    def __init__(self) -> None:
        self.rq: Any = None
        self.shape: tuple[int, ...] | None = None
        self.copies: list[tuple[np.ndarray, np.ndarray]] = []
        self.runs = 0

    def finish(self) -> None:
        if self.rq is not None:
            self.rq.wait()
        for dst, src in self.copies:
            np.copyto(dst, src.reshape(dst.shape))
        self.copies.clear()


class _Lanes(HostDevice):
    """Host buffers whose streams are two asynchronous inference requests per thread: the frame pipeline's slots
    take turns on them, so one frame's inference overlaps the copies of the next (``Upscaler.stream``)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def stream(self) -> Any:  # a _Lane
        st = self._local
        if not hasattr(st, "lanes"):
            st.lanes, st.k = [_Lane(), _Lane()], 0
        st.k += 1
        return st.lanes[st.k % 2]

    def download(self, dst: np.ndarray, src: np.ndarray, lane: _Lane) -> None:
        lane.copies.append((dst, src))  # done once the lane's inference has finished

    def record(self, lane: _Lane) -> Any:  # (lane, its run count)
        return lane, lane.runs

    def wait(self, event: tuple[_Lane, int]) -> None:
        lane, runs = event
        if lane.runs == runs:  # else the lane was finished already, before its next run started
            lane.finish()


class OpenVINOBackend:
    """Runs an ONNX written by bsrn-export on OpenVINO. Thread-safe.

    ``device``: an OpenVINO device name (``CPU``, ``GPU``, ``GPU.1``, ``NPU``). ``precision``: the inference
    precision of the float parts, ``fp32``, ``bf16`` (CPUs with native BF16 only; refused elsewhere) or ``fp16``
    (GPU, NPU); INT8 weights come with the file (``<stem>.int8.onnx``). Each input shape gets a model compiled for
    it, at most ``shape_sessions`` of them (0: one dynamic-shape model), with the LATENCY hint and ``threads``
    CPU threads (default: the physical cores). A uint8-I/O model also runs frames through :meth:`run_device`,
    two asynchronous inference requests per thread, which ``Upscaler.stream`` pipelines.
    """

    def __init__(self, path: str | Path, *, device: str = "CPU", precision: str = "fp32", threads: int | None = None,
                 shape_sessions: int = 4):
        ov = self._ov = require("openvino")
        self._closed = False
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        self._core, self._device = ov.Core(), device.upper()
        if precision not in _HINTS:
            raise InputError(f"OpenVINO precision must be one of {', '.join(_HINTS)}, got {precision!r}")
        if self._device not in self._core.available_devices:
            raise InputError(f"OpenVINO has no device {device!r} here (it has {', '.join(self._core.available_devices)})")
        if precision == "bf16" and not (self._device == "CPU" and native_bf16()):
            raise InputError(f"{self.path}: BF16 needs a CPU with native BF16 (AVX512-BF16 or AMX); "
                             f"{self._core.get_property(self._device, 'FULL_DEVICE_NAME')} has none: use fp32")
        self._model = _read(self._core, self.path)
        self.meta = ModelMeta.from_props(_props(self._model), str(self.path))
        self._hint = _HINTS[precision]
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self._hint}
        if self._device == "CPU":
            self.config["INFERENCE_NUM_THREADS"] = threads or physical_cores()
        weights = self.meta.precision if self.meta.precision != "fp32" else precision
        self.name = f"openvino-{self._device.lower()}-{weights}" + ("-u8" if self.meta.pixels == "uint8" else "")
        outputs = [o.get_any_name() for o in self._model.outputs]
        self._flag = outputs.index(NONFINITE_OUTPUT) if NONFINITE_OUTPUT in outputs else None
        self._half_io = self._model.input(0).get_element_type() == ov.Type.f16
        self.tile_limits = (self.meta.min_size, 0)
        self.max_batch = 0
        self.device = _Lanes() if self.meta.pixels == "uint8" else None
        self._shapes = ShapeCache(self._compile, shape_sessions) if shape_sessions > 0 else None
        self._dynamic: _Compiled | None = None
        self.inference_precision = ""  # what the compiled models report (read back at the first compile)

    def _compile(self, shape: tuple[int, ...] | None) -> _Compiled:
        model = self._model.clone()
        if shape is not None:
            model.reshape({model.input(0): list(shape)})
        compiled = self._core.compile_model(model, self._device, self.config)
        got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != self._hint:
            raise InputError(f"{self.path}: OpenVINO compiled it in {got}, not the {self._hint} asked for")
        if not self.inference_precision:
            log.debug("%s: OpenVINO %s, inference precision %s", self.path.name, self._device, got)
        self.inference_precision = got
        return _Compiled(compiled)

    def _compiled(self, shape: tuple[int, ...]) -> _Compiled:
        if self._closed:
            raise InputError(f"{self.path}: this OpenVINO backend was closed; open the model again (or a new Upscaler)")
        if self._shapes is not None:
            return self._shapes.get(shape)
        if self._dynamic is None:
            self._dynamic = self._compile(None)
        return self._dynamic

    def _out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        s = self.meta.scale
        return (shape[0], shape[1] * s, shape[2] * s, 3) if self.meta.pixels == "uint8" else \
            (shape[0], 3, shape[2] * s, shape[3] * s)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Host arrays in the model's pixel I/O (float N×3×h×w, or uint8 N×h×w×3 for a uint8-I/O model)."""
        x = check_batch(x, self)
        if self._half_io:
            with self._compiled(x.shape).request() as rq:
                rq.infer({0: x.astype(np.float16)})
                return rq.get_output_tensor(0).data.astype(np.float32)
        out = np.empty(self._out_shape(x.shape), np.uint8 if self.meta.pixels == "uint8" else np.float32)
        self.infer_into(x, out)
        return out

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the result into ``out`` (the model's output layout and dtype); OpenVINO writes it in place."""
        if self._half_io or not out.flags.c_contiguous:
            out[...] = self.infer(x)
            return
        x = check_batch(x, self)
        ov = self._ov
        flag = np.zeros((1, 1, 1, 1), np.float32)
        with self._compiled(x.shape).request() as rq:
            rq.set_input_tensor(ov.Tensor(x, shared_memory=True))
            rq.set_output_tensor(0, ov.Tensor(out, shared_memory=True))
            if self._flag is not None:
                rq.set_output_tensor(self._flag, ov.Tensor(flag, shared_memory=True))
            rq.infer()
        raise_if_nonfinite(flag, self.path, x.shape)

    def run_device(self, x: np.ndarray, out: np.ndarray, lane: _Lane) -> FiniteFlag | None:
        """uint8 N×h×w×3 host pixels → uint8 N×sh×sw×3, started asynchronously on ``lane`` (a stream of
        :attr:`device`); ``device.wait`` on the lane's event finishes it. Needs a uint8-I/O model."""
        if self.device is None:
            raise InputError(f"{self.path}: the frame path needs the uint8-I/O model (bsrn-export --uint8-io)")
        check_pixels(tuple(x.shape), tuple(out.shape), self)
        lane.finish()
        if lane.shape != tuple(x.shape):
            lane.rq, lane.shape = self._compiled(tuple(x.shape)).compiled.create_infer_request(), tuple(x.shape)
        ov = self._ov
        lane.rq.set_input_tensor(ov.Tensor(x, shared_memory=True))
        lane.rq.set_output_tensor(0, ov.Tensor(out, shared_memory=True))
        finite = None
        if self._flag is not None:
            finite = FiniteFlag(np.zeros((1, 1, 1, 1), np.float32))
            lane.rq.set_output_tensor(self._flag, ov.Tensor(finite.host, shared_memory=True))
        lane.runs += 1
        lane.rq.start_async()
        return finite

    def close(self) -> None:
        self._closed = True
        if self._shapes is not None:
            self._shapes.clear()
        self._dynamic = None
