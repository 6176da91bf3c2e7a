"""Fake ``tensorrt``, ``pycuda``, ``pycuda.driver`` and ``pycuda.autoprimaryctx`` for tests on machines without a GPU.

The fakes follow the documented TensorRT 10.x/11.x and pycuda Python APIs closely enough that code
written against them runs unchanged, and they are strict where the real libraries are: arguments are
type-checked and taken in the documented order, a profile must satisfy min ≤ opt ≤ max, shapes outside
the profile are refused, device work needs a current CUDA context on the calling thread, and asynchronous
copies and ``execute_async_v3`` run only when their stream is synchronised (so a missing ``synchronize``
leaves the host buffer untouched, as it may on a GPU). Streams are ``fake_streams.QueueStream``s: across
streams, work is ordered only by events (``FakeGPU.eager_streams`` makes the first streams run early, see
fake_streams). Execution contexts keep TensorRT's rules (``NvInferRuntime.h``, 10.16 and 11.1): a context's
activation memory is in use from ``execute_async_v3`` until that run completes, so enqueueing the context
again on another stream before then raises :class:`ContractError`, and so does running two contexts of one
engine on the same optimization profile at once ("each execution context in concurrent use must use a
separate optimization profile"). The real library does not report either; it computes garbage, so the
fake raises to make the test fail. ``parse`` runs the project's TensorRT support check
(``bsrn_edge.export.trt_support``, onnx-tensorrt's table), as the real parser refuses those nodes.
Every call is appended to ``FakeGPU.calls``.

The fake engine computes something checkable: a nearest-neighbour ×scale upsample of its input
(scale from the ONNX's ``bsrn_edge.scale`` metadata), in the I/O layout of the ONNX: N×3×H×W for float
pixel I/O, N×H×W×3 when the input's last dim is 3 (uint8 pixel I/O).

Use the ``fake_gpu`` fixture (``from fake_trt import fake_gpu``) or ``install(monkeypatch)``.
"""

from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from fake_streams import QueueStream, Scheduler, Wait

__all__ = ["Call", "ContractError", "FakeGPU", "install", "fake_gpu", "engine_bytes", "nearest_upsample"]

_FLOAT, _FLOAT16, _UINT8 = 1, 10, 2  # onnx.TensorProto element types


class ContractError(RuntimeError):
    """A use the TensorRT documentation forbids and the real library does not catch (undefined behaviour there)."""


@dataclass
class Call:
    """One recorded API call: ``api`` is ``"Class.method"`` or ``"module.function"``."""

    api: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    thread: int


def nearest_upsample(x: np.ndarray, scale: int, nhwc: bool) -> np.ndarray:
    """What the fake engine computes: each input pixel repeated ``scale``×``scale`` times."""
    h, w = (1, 2) if nhwc else (2, 3)
    return np.repeat(np.repeat(x, scale, axis=h), scale, axis=w)


# ----------------------------------------------------------------------------------------------------- shared state
class FakeGPU:
    """The state behind both fake modules: one device, its memory, streams, contexts and the call log.

    Knobs a test may set before the code runs: ``parse_errors`` (list of strings: the parser fails with
    them), ``build_fails`` (``build_serialized_network`` returns None), ``memory_bytes`` (``mem_alloc``
    beyond it raises ``pycuda.driver.MemoryError``), ``lazy`` (async work waits for ``synchronize``),
    ``eager_streams`` (the first that many streams made run their work as early as their waits allow),
    ``device_names`` (one name per device; default ``name`` for all).
    """

    def __init__(self, name: str = "NVIDIA H100 80GB HBM3", cc: tuple[int, int] = (9, 0), devices: int = 1,
                 trt_version: str = "10.12.0.36", memory_bytes: int = 80 << 30, lazy: bool = True,
                 device_names: list[str] | None = None):
        self.name, self.cc, self.devices, self.trt_version = name, cc, devices, trt_version
        self.device_names = device_names or [name] * devices
        self.memory_bytes = memory_bytes
        self.scheduler = Scheduler(lazy)
        self.eager_streams = 0
        self.streams_made = 0
        self.nonfinite = False  # what an engine's "nonfinite" flag output reports (True: the network made NaN/inf)
        self.calls: list[Call] = []
        self.parse_errors: list[str] = []
        self.build_fails = False
        self.errors: list[str] = []  # what the fake TensorRT logger would have printed
        self.allocations: dict[int, "DeviceAllocation"] = {}
        self.streams: dict[int, "Stream"] = {}
        self.ctx_stacks: dict[int, list["_ContextBase"]] = {}
        self.pinned: list[np.ndarray] = []
        self._next_addr = 0x7F0000000000
        self._next_handle = 0x1000
        self.lock = threading.RLock()
        self.tensorrt: types.ModuleType | None = None
        self.driver: types.ModuleType | None = None

    # --------------------------------------------------------------------------------------------- call log
    def record(self, api: str, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append(Call(api, args, kwargs, threading.get_ident()))

    def names(self) -> list[str]:
        """The ``api`` of every call, in order."""
        return [c.api for c in self.calls]

    def calls_to(self, api: str) -> list[Call]:
        return [c for c in self.calls if c.api == api]

    # ------------------------------------------------------------------------------------------------ memory
    def resolve(self, ptr: int, nbytes: int) -> tuple["DeviceAllocation", int]:
        """The allocation holding ``[ptr, ptr + nbytes)``; an address outside every live allocation is an error."""
        for a in self.allocations.values():
            if a.addr <= ptr and ptr + nbytes <= a.addr + a.nbytes and not a.freed:
                return a, ptr - a.addr
        raise RuntimeError(f"fake CUDA: illegal address {ptr:#x} (+{nbytes} bytes) outside every live allocation")

    def read(self, ptr: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        alloc, off = self.resolve(ptr, n)
        return np.frombuffer(alloc.data, dtype=dtype, count=int(np.prod(shape)), offset=off).reshape(shape).copy()

    def write(self, ptr: int, arr: np.ndarray) -> None:
        b = np.ascontiguousarray(arr).tobytes()
        alloc, off = self.resolve(ptr, len(b))
        alloc.data[off: off + len(b)] = b

    def used_bytes(self) -> int:
        return sum(a.nbytes for a in self.allocations.values() if not a.freed)

    # ---------------------------------------------------------------------------------------------- contexts
    def current_context(self) -> "_ContextBase | None":
        stack = self.ctx_stacks.get(threading.get_ident(), [])
        return stack[-1] if stack else None

    def context_depth(self, thread: int | None = None) -> int:
        """How many contexts are pushed on ``thread`` (default: the caller's)."""
        return len(self.ctx_stacks.get(threading.get_ident() if thread is None else thread, []))

    def need_context(self, what: str) -> None:
        if self.current_context() is None:
            raise self.driver.LogicError(f"{what} failed: invalid device context (no CUDA context is current "  # type: ignore[union-attr]
                                         f"on thread {threading.get_ident()})")

    def stream_for(self, handle: int) -> "Stream":
        if handle not in self.streams:
            raise RuntimeError(f"fake CUDA: unknown stream handle {handle!r}")
        return self.streams[handle]

    def synchronize_all(self) -> None:
        self.scheduler.run_everything()

    @property
    def lazy(self) -> bool:
        return self.scheduler.lazy

    @lazy.setter
    def lazy(self, value: bool) -> None:
        self.scheduler.lazy = value


# --------------------------------------------------------------------------------------------------- pycuda fakes
class DeviceAllocation:
    def __init__(self, gpu: FakeGPU, nbytes: int):
        self.gpu, self.nbytes, self.freed = gpu, nbytes, False
        self.data = bytearray(nbytes)
        with gpu.lock:
            self.addr = gpu._next_addr
            gpu._next_addr += (nbytes + 0xFFFF) & ~0xFFFF or 0x10000
            gpu.allocations[self.addr] = self

    def __int__(self) -> int:
        return self.addr

    __index__ = None  # type: ignore[assignment]  # int(), not an implicit index: as pycuda's

    def free(self) -> None:
        self.gpu.record("DeviceAllocation.free", self.addr)
        self.freed = True


class Stream(QueueStream):
    """A pycuda stream: a :class:`fake_streams.QueueStream` of device work (lazy unless ``FakeGPU.eager_streams``)."""

    def __init__(self, gpu: FakeGPU, flags: int = 0, *, default: bool = False):
        self.gpu = gpu
        if not default:
            gpu.need_context("cuStreamCreate")
        eager = not default and gpu.streams_made < gpu.eager_streams
        QueueStream.__init__(self, gpu.scheduler, eager=eager)
        if not default:
            with gpu.lock:
                gpu.streams_made += 1
                gpu._next_handle += 0x10
                self.handle = gpu._next_handle
        else:
            self.handle = 0
        gpu.streams[self.handle] = self

    def synchronize(self) -> None:
        self.gpu.record("Stream.synchronize", self.handle)
        self.run_all()
        self.scheduler.progress()

    def is_done(self) -> bool:
        return not self.queue

    def wait_for_event(self, event: "Event") -> None:
        self.gpu.record("Stream.wait_for_event", self.handle, id(event))
        if event.stream is not None and event.marker is not None:
            self.enqueue(Wait(event.stream, event.marker))


class Event:
    def __init__(self, gpu: FakeGPU, flags: int = 0):
        self.gpu, self.stream, self.marker = gpu, None, None

    def record(self, stream: Stream | None = None) -> "Event":
        s = stream or self.gpu.streams[0]
        self.gpu.record("Event.record", id(self), s.handle)
        self.stream = s

        def marker() -> None:
            return None

        self.marker = marker
        s.enqueue(marker)
        return self

    def synchronize(self) -> None:
        self.gpu.record("Event.synchronize", id(self))
        if self.stream is not None and self.marker is not None:
            self.stream.run_until(self.marker)
            self.stream.scheduler.progress()

    def query(self) -> bool:
        return self.stream is None or self.marker not in self.stream.queue


class _ContextBase:
    """A CUDA context; ``pop``, ``synchronize`` and ``get_current`` are static, as in pycuda (see _build_pycuda)."""

    def __init__(self, gpu: FakeGPU, device: int, primary: bool):
        self.gpu, self.device, self.primary = gpu, device, primary

    def push(self) -> None:
        self.gpu.record("Context.push", id(self))
        self.gpu.ctx_stacks.setdefault(threading.get_ident(), []).append(self)


def _build_pycuda(gpu: FakeGPU) -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []  # a package, so ``import pycuda.driver`` works
    pkg.VERSION = (2025, 1)  # type: ignore[attr-defined]
    drv = types.ModuleType("pycuda.driver")
    gpu.driver = drv

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    class MemoryError_(Error, MemoryError):
        pass

    drv.Error, drv.LogicError, drv.MemoryError = Error, LogicError, MemoryError_  # type: ignore[attr-defined]
    initialised = [False]

    def init(flags: int = 0) -> None:
        gpu.record("driver.init", flags)
        initialised[0] = True

    def check_init(what: str) -> None:
        if not initialised[0]:
            raise LogicError(f"{what} failed: cuInit has not been called (call pycuda.driver.init() first)")

    class Context(_ContextBase):
        @staticmethod
        def pop() -> None:
            gpu.record("Context.pop")
            stack = gpu.ctx_stacks.get(threading.get_ident(), [])
            if not stack:
                raise LogicError("cuCtxPopCurrent failed: invalid context (nothing pushed on this thread)")
            stack.pop()

        @staticmethod
        def synchronize() -> None:
            gpu.need_context("cuCtxSynchronize")
            gpu.record("Context.synchronize")
            gpu.synchronize_all()

        @staticmethod
        def get_current() -> "_ContextBase | None":
            return gpu.current_context()

        @staticmethod
        def get_device() -> "Device":
            """The device of the context current on this thread (pycuda: cuCtxGetDevice)."""
            ctx = gpu.current_context()
            if ctx is None:
                raise LogicError("cuCtxGetDevice failed: invalid context (no context is current on this thread)")
            return Device(ctx.device)

        def detach(self) -> None:
            gpu.record("Context.detach", id(self))

    class FakeStream(Stream):
        def __init__(self, flags: int = 0):
            Stream.__init__(self, gpu, flags)
            gpu.record("Stream", self.handle)

    class FakeEvent(Event):
        def __init__(self, flags: int = 0):
            Event.__init__(self, gpu, flags)

    class Device:
        def __init__(self, ordinal: int):
            check_init("cuDeviceGet")
            if not isinstance(ordinal, int) or not 0 <= ordinal < gpu.devices:
                raise LogicError(f"cuDeviceGet failed: invalid device ordinal {ordinal!r}")
            gpu.record("Device", ordinal)
            self.ordinal = ordinal

        @staticmethod
        def count() -> int:
            check_init("cuDeviceGetCount")
            gpu.record("Device.count")
            return gpu.devices

        def name(self) -> str:
            return gpu.device_names[self.ordinal]

        def compute_capability(self) -> tuple[int, int]:
            return gpu.cc

        def total_memory(self) -> int:
            return gpu.memory_bytes

        def retain_primary_context(self) -> Context:
            gpu.record("Device.retain_primary_context", self.ordinal)
            return Context(gpu, self.ordinal, primary=True)

        def make_context(self, flags: int = 0) -> Context:
            gpu.record("Device.make_context", self.ordinal)
            ctx = Context(gpu, self.ordinal, primary=False)
            gpu.ctx_stacks.setdefault(threading.get_ident(), []).append(ctx)
            return ctx

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        gpu.need_context("cuMemAlloc")
        if not isinstance(nbytes, (int, np.integer)) or nbytes <= 0:
            raise LogicError(f"cuMemAlloc failed: bad size {nbytes!r}")
        gpu.record("driver.mem_alloc", int(nbytes))
        if gpu.used_bytes() + nbytes > gpu.memory_bytes:
            raise MemoryError_("cuMemAlloc failed: out of memory")
        return DeviceAllocation(gpu, int(nbytes))

    def mem_get_info() -> tuple[int, int]:
        gpu.need_context("cuMemGetInfo")
        return gpu.memory_bytes - gpu.used_bytes(), gpu.memory_bytes

    def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
        gpu.need_context("cuMemHostAlloc")
        gpu.record("driver.pagelocked_empty", tuple(np.atleast_1d(shape)), np.dtype(dtype).name)
        a = np.empty(shape, dtype, order=order)
        gpu.pinned.append(a)
        return a

    def _host(arr: Any, what: str) -> np.ndarray:
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{what}: expected a host numpy array, got {type(arr).__name__}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{what}: the host array must be C-contiguous")
        return arr

    def _ptr(dev: Any, what: str) -> int:
        if isinstance(dev, DeviceAllocation):
            return int(dev)
        if isinstance(dev, (int, np.integer)) and not isinstance(dev, bool):
            return int(dev)
        raise TypeError(f"{what}: expected a device pointer (DeviceAllocation or int), got {type(dev).__name__}")

    def _stream(stream: Stream | None) -> Stream:
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"expected a pycuda.driver.Stream, got {type(stream).__name__}")
        return stream or gpu.streams[0]

    def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
        gpu.need_context("cuMemcpyHtoDAsync")
        ptr, host = _ptr(dest, "memcpy_htod_async dest"), _host(src, "memcpy_htod_async src")
        gpu.resolve(ptr, host.nbytes)
        s = _stream(stream)
        gpu.record("driver.memcpy_htod_async", ptr, host.shape, host.dtype.name, s.handle)
        s.enqueue(lambda: gpu.write(ptr, host))  # reads the host buffer when the copy runs

    def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
        gpu.need_context("cuMemcpyDtoHAsync")
        host, ptr = _host(dest, "memcpy_dtoh_async dest"), _ptr(src, "memcpy_dtoh_async src")
        gpu.resolve(ptr, host.nbytes)
        s = _stream(stream)
        gpu.record("driver.memcpy_dtoh_async", ptr, host.shape, host.dtype.name, s.handle)

        def copy() -> None:
            host[...] = gpu.read(ptr, host.dtype, host.shape)

        s.enqueue(copy)

    def memcpy_htod(dest: Any, src: np.ndarray) -> None:
        gpu.need_context("cuMemcpyHtoD")
        ptr, host = _ptr(dest, "memcpy_htod dest"), _host(src, "memcpy_htod src")
        gpu.record("driver.memcpy_htod", ptr, host.shape, host.dtype.name)
        gpu.write(ptr, host)

    def memcpy_dtoh(dest: np.ndarray, src: Any) -> None:
        gpu.need_context("cuMemcpyDtoH")
        host, ptr = _host(dest, "memcpy_dtoh dest"), _ptr(src, "memcpy_dtoh src")
        gpu.record("driver.memcpy_dtoh", ptr, host.shape, host.dtype.name)
        host[...] = gpu.read(ptr, host.dtype, host.shape)

    def memcpy_dtod_async(dest: Any, src: Any, size: int, stream: Stream | None = None) -> None:
        gpu.need_context("cuMemcpyDtoDAsync")
        d, s_ = _ptr(dest, "memcpy_dtod_async dest"), _ptr(src, "memcpy_dtod_async src")
        st = _stream(stream)
        gpu.record("driver.memcpy_dtod_async", d, s_, size, st.handle)
        st.enqueue(lambda: gpu.write(d, gpu.read(s_, np.dtype(np.uint8), (size,))))

    Stream(gpu, default=True)  # handle 0
    for name, obj in {"init": init, "Device": Device, "Context": Context, "Stream": FakeStream, "Event": FakeEvent,
                      "DeviceAllocation": DeviceAllocation, "mem_alloc": mem_alloc, "mem_get_info": mem_get_info,
                      "pagelocked_empty": pagelocked_empty, "memcpy_htod_async": memcpy_htod_async,
                      "memcpy_dtoh_async": memcpy_dtoh_async, "memcpy_htod": memcpy_htod, "memcpy_dtoh": memcpy_dtoh,
                      "memcpy_dtod_async": memcpy_dtod_async}.items():
        setattr(drv, name, obj)
    pkg.driver = drv  # type: ignore[attr-defined]
    auto = types.ModuleType("pycuda.autoprimaryctx")  # filled on first import, see _AutoPrimaryFinder
    return pkg, drv, auto


class _AutoPrimaryFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pycuda.autoprimaryctx`` runs like pycuda's: init, retain device 0's primary context, push it."""

    def __init__(self, gpu: FakeGPU):
        self.gpu = gpu

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "pycuda.autoprimaryctx":
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """pycuda.tools.make_default_context: the CUDA_DEVICE environment variable names the device, else device 0."""
        drv = self.gpu.driver
        self.gpu.record("import pycuda.autoprimaryctx")
        drv.init()  # type: ignore[union-attr]
        module.device = drv.Device(int(os.environ.get("CUDA_DEVICE", "0")))  # type: ignore[union-attr, attr-defined]
        module.context = module.device.retain_primary_context()  # type: ignore[attr-defined]
        module.context.push()  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ tensorrt fakes
class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


_ONNX_TO_TRT = {_FLOAT: DataType.FLOAT, _FLOAT16: DataType.HALF, _UINT8: DataType.UINT8}
_TRT_TO_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.UINT8: np.uint8,
              DataType.INT8: np.int8, DataType.INT32: np.int32, DataType.BOOL: np.bool_}


@dataclass
class _TensorSpec:
    name: str
    dtype: DataType
    shape: tuple[int, ...]  # -1 where dynamic

    @property
    def nhwc(self) -> bool:
        return len(self.shape) == 4 and self.shape[3] == 3


def _is_dims(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x)


def engine_bytes(inputs: list[tuple[str, str, tuple[int, ...]]], outputs: list[tuple[str, str, tuple[int, ...]]],
                 profile: dict[str, tuple[tuple[int, ...], ...]], scale: int) -> bytes:
    """A serialized fake engine, for runtime tests that need one without building: dtypes are ``DataType`` names."""
    blob = {"fake_tensorrt_engine": 1, "scale": scale,
            "inputs": [[n, d, list(s)] for n, d, s in inputs], "outputs": [[n, d, list(s)] for n, d, s in outputs],
            "profile": {k: [list(s) for s in v] for k, v in profile.items()}}
    return b"FAKETRT" + json.dumps(blob).encode()


def _build_tensorrt(gpu: FakeGPU) -> types.ModuleType:  # noqa: C901 - one closure per documented class
    trt = types.ModuleType("tensorrt")
    trt.__version__ = gpu.trt_version  # type: ignore[attr-defined]

    class Logger:
        Severity = _Severity
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (_Severity.INTERNAL_ERROR, _Severity.ERROR, _Severity.WARNING,
                                                         _Severity.INFO, _Severity.VERBOSE)

        def __init__(self, min_severity: _Severity = _Severity.WARNING):
            if not isinstance(min_severity, _Severity):
                raise TypeError(f"Logger(min_severity): expected trt.Logger.Severity, got {type(min_severity).__name__}")
            gpu.record("Logger", min_severity)
            self.min_severity = min_severity

    def need_logger(x: Any, what: str) -> None:
        if not isinstance(x, Logger):
            raise TypeError(f"{what}: expected a trt.ILogger, got {type(x).__name__}")

    class ITensor:
        def __init__(self, spec: _TensorSpec):
            self.name, self.dtype, self.shape = spec.name, spec.dtype, tuple(spec.shape)

    class INetworkDefinition:
        def __init__(self, flags: int):
            self.flags = flags
            self.inputs: list[_TensorSpec] = []
            self.outputs: list[_TensorSpec] = []
            self.scale = 1

        def get_flag(self, flag: NetworkDefinitionCreationFlag) -> bool:
            return bool(self.flags & (1 << int(flag)))

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, index: int) -> ITensor:
            return ITensor(self.inputs[index])

        def get_output(self, index: int) -> ITensor:
            return ITensor(self.outputs[index])

    class _ParserError:
        """``IParserError``: ``desc()``, ``node()``, ``node_name()``, ``node_operator()``; printed like the real one's
        "In node N with name: X and operator: Y (func): CODE: desc" (the wording is modelled, not copied)."""

        def __init__(self, desc: str, node: int = -1, name: str = "", op: str = ""):
            self._desc, self._node, self._name, self._op = desc, node, name, op

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._name

        def node_operator(self) -> str:
            return self._op

        def __str__(self) -> str:
            if self._node < 0:
                return f"In node -1 (parse): {self._desc}"
            return (f"In node {self._node} with name: {self._name} and operator: {self._op} (parseNode): "
                    f"UNSUPPORTED_NODE: {self._desc}")

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Logger):
            if not isinstance(network, INetworkDefinition):
                raise TypeError(f"OnnxParser(network, logger): expected an INetworkDefinition first, got {type(network).__name__}")
            need_logger(logger, "OnnxParser(network, logger)")
            gpu.record("OnnxParser")
            self.network, self.errors = network, []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            if not isinstance(model, (bytes, bytearray, memoryview)):
                raise TypeError(f"OnnxParser.parse(model): expected the ONNX bytes, got {type(model).__name__}")
            gpu.record("OnnxParser.parse", len(model))
            self.errors = [_ParserError(e) for e in gpu.parse_errors]
            if not self.errors:
                self.errors = self._read(bytes(model))
            return not self.errors

        def _read(self, data: bytes) -> list[_ParserError]:
            import onnx

            try:
                m = onnx.load_from_string(data)
            except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
                return [_ParserError(f"Failed to parse ONNX model: {exc}")]
            if not m.graph.input or not m.graph.node:
                return [_ParserError("Failed to parse ONNX model: the graph has no inputs or no nodes")]
            refused = self._unsupported(m)
            if refused:
                return refused

            def spec(vi: Any) -> _TensorSpec:
                tt = vi.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
                if tt.elem_type not in _ONNX_TO_TRT:
                    raise ValueError(vi.name)
                return _TensorSpec(vi.name, _ONNX_TO_TRT[tt.elem_type], dims)

            try:
                self.network.inputs = [spec(v) for v in m.graph.input]
                self.network.outputs = [spec(v) for v in m.graph.output]
            except ValueError as exc:
                return [_ParserError(f"unsupported I/O data type of {exc}")]
            props = {p.key: p.value for p in m.metadata_props}
            self.network.scale = int(props.get("bsrn_edge.scale", "1"))
            return []

        @staticmethod
        def _unsupported(m: Any) -> list[_ParserError]:
            """What the real parser refuses, from onnx-tensorrt's support table: the project's own check
            (bsrn_edge.export.trt_support, data from docs/operators.md of TensorRT 10.15), run here as the parser would."""
            from bsrn_edge.export.trt_support import check_graph

            return [_ParserError(f"{p.reason} [{p.dtype}]", p.index, p.node, p.op) for p in check_graph(m)]

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> _ParserError:
            if not isinstance(index, int) or not 0 <= index < len(self.errors):
                raise IndexError(f"OnnxParser.get_error({index!r}): only {len(self.errors)} errors")
            return self.errors[index]

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - the API's names
            if not isinstance(input, str):
                raise TypeError(f"set_shape(input, min, opt, max): input must be the tensor name, got {type(input).__name__}")
            if not (_is_dims(min) and _is_dims(opt) and _is_dims(max)) or not len(min) == len(opt) == len(max):
                raise TypeError(f"set_shape({input!r}): min/opt/max must be int tuples of one rank, got {min}, {opt}, {max}")
            if not all(a <= b <= c for a, b, c in zip(min, opt, max)):
                raise ValueError(f"set_shape({input!r}): need min <= opt <= max in every dim, got {min}, {opt}, {max}")
            gpu.record("IOptimizationProfile.set_shape", input, tuple(min), tuple(opt), tuple(max))
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        def get_shape(self, input: str) -> list[tuple[int, ...]]:
            return list(self.shapes[input])

    class ITimingCache:
        def __init__(self, data: bytes):
            self.data = bytes(data)

        def serialize(self) -> memoryview:
            gpu.record("ITimingCache.serialize")
            return memoryview(self.data)

    class IProgressMonitor:
        """Base class: TensorRT calls phase_start(phase_name, parent_phase, num_steps), step_complete(phase_name,
        step) -> bool and phase_finish(phase_name), positionally."""

        def __init__(self) -> None:
            self._initialised = True

    class IBuilderConfig:
        def __init__(self) -> None:
            self.pools: dict[MemoryPoolType, int] = {}
            self.profiles: list[IOptimizationProfile] = []
            self.timing_cache: ITimingCache | None = None
            self._monitor: Any = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
            if not isinstance(pool, MemoryPoolType):
                raise TypeError(f"set_memory_pool_limit(pool, pool_size): pool must be a trt.MemoryPoolType, got {pool!r}")
            if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size <= 0:
                raise TypeError(f"set_memory_pool_limit: pool_size must be a positive int of bytes, got {pool_size!r}")
            gpu.record("IBuilderConfig.set_memory_pool_limit", pool, pool_size)
            self.pools[pool] = pool_size

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if not isinstance(profile, IOptimizationProfile):
                raise TypeError(f"add_optimization_profile: expected an IOptimizationProfile, got {type(profile).__name__}")
            gpu.record("IBuilderConfig.add_optimization_profile", dict(profile.shapes))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            if not isinstance(serialized_timing_cache, (bytes, bytearray, memoryview)):
                raise TypeError("create_timing_cache(serialized_timing_cache): expected bytes (b'' for a new cache)")
            gpu.record("IBuilderConfig.create_timing_cache", bytes(serialized_timing_cache))
            return ITimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if not isinstance(cache, ITimingCache) or not isinstance(ignore_mismatch, bool):
                raise TypeError("set_timing_cache(cache, ignore_mismatch): expected an ITimingCache and a bool")
            gpu.record("IBuilderConfig.set_timing_cache", cache.data, ignore_mismatch)
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            gpu.record("IBuilderConfig.get_timing_cache")
            return self.timing_cache

        @property
        def progress_monitor(self) -> Any:
            return self._monitor

        @progress_monitor.setter
        def progress_monitor(self, monitor: Any) -> None:
            if monitor is not None and not isinstance(monitor, IProgressMonitor):
                raise TypeError(f"progress_monitor: expected a trt.IProgressMonitor, got {type(monitor).__name__}")
            if monitor is not None and not getattr(monitor, "_initialised", False):
                raise TypeError("progress_monitor: the subclass did not call IProgressMonitor.__init__")
            gpu.record("IBuilderConfig.progress_monitor", type(monitor).__name__)
            self._monitor = monitor

    class Builder:
        def __init__(self, logger: Logger):
            need_logger(logger, "Builder(logger)")
            gpu.record("Builder")

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            if not isinstance(flags, int) or isinstance(flags, bool):
                raise TypeError(f"create_network(flags): expected an int bit mask, got {flags!r}")
            gpu.record("Builder.create_network", flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            gpu.record("Builder.create_builder_config")
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            gpu.record("Builder.create_optimization_profile")
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> memoryview | None:
            if not isinstance(network, INetworkDefinition) or not isinstance(config, IBuilderConfig):
                raise TypeError("build_serialized_network(network, config): expected an INetworkDefinition, then an "
                                f"IBuilderConfig; got {type(network).__name__}, {type(config).__name__}")
            gpu.record("Builder.build_serialized_network")
            problem = self._check(network, config)
            if problem or gpu.build_fails:
                gpu.errors.append(problem or "build failed (FakeGPU.build_fails)")
                return None
            if not self._report_progress(config._monitor):
                gpu.errors.append("build cancelled by the progress monitor")
                return None
            if config.timing_cache is not None:
                config.timing_cache.data += b"[timing entries of one build]"
            prof = config.profiles[0].shapes if config.profiles else {}
            spec = lambda t: (t.name, t.dtype.name, t.shape)  # noqa: E731
            return memoryview(engine_bytes([spec(t) for t in network.inputs], [spec(t) for t in network.outputs],
                                           prof, network.scale))

        @staticmethod
        def _check(network: INetworkDefinition, config: IBuilderConfig) -> str:
            """What a real build would reject: a dynamic input the profile does not cover, or one that contradicts it."""
            if not network.inputs:
                return "network has no inputs (was the ONNX parsed?)"
            for t in network.inputs:
                if -1 in t.shape and not any(t.name in p.shapes for p in config.profiles):
                    return f"input {t.name!r} has dynamic dims {t.shape} but no optimization profile sets its shape"
                for p in config.profiles:
                    for s in p.shapes.get(t.name, ()):
                        if len(s) != len(t.shape) or any(d != -1 and d != v for d, v in zip(t.shape, s)):
                            return f"profile shape {s} of {t.name!r} contradicts the network's {t.shape}"
            return ""

        @staticmethod
        def _report_progress(monitor: Any) -> bool:
            if monitor is None:
                return True
            monitor.phase_start("Building engine", None, 2)
            for step in range(2):
                if monitor.step_complete("Building engine", step) is False:
                    return False
            monitor.phase_finish("Building engine")
            return True

    class ICudaEngine:
        def __init__(self, blob: dict[str, Any]):
            self.scale = int(blob["scale"])
            self.specs = {n: (TensorIOMode.INPUT, _TensorSpec(n, DataType[d], tuple(s))) for n, d, s in blob["inputs"]}
            self.specs.update({n: (TensorIOMode.OUTPUT, _TensorSpec(n, DataType[d], tuple(s))) for n, d, s in blob["outputs"]})
            self.names = [n for n, _, _ in blob["inputs"]] + [n for n, _, _ in blob["outputs"]]
            self.profile = {k: tuple(tuple(s) for s in v) for k, v in blob["profile"].items()}
            self.contexts: weakref.WeakSet[IExecutionContext] = weakref.WeakSet()

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        @property
        def num_optimization_profiles(self) -> int:
            return 1

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def _spec(self, name: str) -> tuple[TensorIOMode, _TensorSpec]:
            if name not in self.specs:
                raise KeyError(f"fake engine has no tensor {name!r}; it has {self.names}")
            return self.specs[name]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return self._spec(name)[0]

        def get_tensor_dtype(self, name: str) -> DataType:
            return self._spec(name)[1].dtype

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self._spec(name)[1].shape

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            return list(self.profile[name])

        def create_execution_context(self) -> "IExecutionContext":
            gpu.record("ICudaEngine.create_execution_context")
            ctx = IExecutionContext(self)
            self.contexts.add(ctx)
            return ctx

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine):
            self.engine = engine
            self.input_shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.profile = 0  # createExecutionContext: "assigned optimization profile 0"
            self.last_run: tuple[Stream, Callable[[], None]] | None = None

        @property
        def active_optimization_profile(self) -> int:
            return self.profile

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            gpu.record("IExecutionContext.set_optimization_profile_async", profile_index, stream_handle)
            if not 0 <= profile_index < self.engine.num_optimization_profiles:
                raise RuntimeError("Error in set optimization profile async.")
            self.profile = profile_index
            return True

        def running(self) -> bool:
            """Whether this context's last run is enqueued and has not completed."""
            return self.last_run is not None and not self.last_run[0].done(self.last_run[1])

        def _check_concurrency(self, stream: Stream) -> None:
            """NvInferRuntime.h (10.16, 11.1): a context's memory is in use from enqueueV3 until the run completes, and
            "each execution context in concurrent use must use a separate optimization profile"."""
            if self.running() and self.last_run[0] is not stream:  # type: ignore[index]
                raise ContractError(f"execute_async_v3 on stream {stream.handle:#x} while this context's previous run on "
                                    f"stream {self.last_run[0].handle:#x} has not completed: its activation memory "  # type: ignore[index]
                                    "is in use until then (NvInferRuntime.h, enqueueV3)")
            clash = [c for c in self.engine.contexts if c is not self and c.profile == self.profile and c.running()]
            if clash:
                raise ContractError(f"two execution contexts on optimization profile {self.profile} in concurrent use: "
                                    "each must use a separate optimization profile (NvInferRuntime.h, IExecutionContext)")

        def set_input_shape(self, name: str, shape: Any) -> bool:
            gpu.record("IExecutionContext.set_input_shape", name, tuple(shape) if _is_dims(shape) else shape)
            if not isinstance(name, str) or not _is_dims(shape):
                raise TypeError(f"set_input_shape(name, shape): expected a str and an int tuple, got {name!r}, {shape!r}")
            mode, spec = self.engine.specs.get(name, (None, None))
            prof = self.engine.profile.get(name)
            if mode != TensorIOMode.INPUT or prof is None or len(shape) != len(spec.shape):  # type: ignore[union-attr]
                return False
            lo, _, hi = prof
            if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                gpu.errors.append(f"set_input_shape({name!r}, {tuple(shape)}): outside the profile {lo}..{hi}")
                return False
            self.input_shapes[name] = tuple(int(d) for d in shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            mode, spec = self.engine._spec(name)
            if mode == TensorIOMode.INPUT:
                return self.input_shapes.get(name, spec.shape)
            if -1 not in spec.shape:  # a static output (the non-finite flag)
                return spec.shape
            src = self.input_shapes.get(self.engine.names[0])
            if src is None:
                return spec.shape
            s = self.engine.scale
            return (src[0], src[1] * s, src[2] * s, src[3]) if spec.nhwc else (src[0], src[1], src[2] * s, src[3] * s)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if not isinstance(memory, int) or isinstance(memory, bool):
                raise TypeError(f"set_tensor_address({name!r}, memory): memory must be an int device address, "
                                f"got {type(memory).__name__} (use int(allocation))")
            gpu.record("IExecutionContext.set_tensor_address", name, memory)
            self.engine._spec(name)
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not isinstance(stream_handle, int) or isinstance(stream_handle, bool):
                raise TypeError(f"execute_async_v3(stream_handle): expected an int (stream.handle), got {type(stream_handle).__name__}")
            gpu.record("IExecutionContext.execute_async_v3", stream_handle)
            problem = self._unready()
            if problem:
                gpu.errors.append(problem)
                return False
            inp = self.engine.names[0]
            outputs = [n for n in self.engine.names if self.engine.specs[n][0] == TensorIOMode.OUTPUT]
            out = next(n for n in outputs if n != "nonfinite")
            flag = self.addresses.get("nonfinite") if "nonfinite" in outputs else None
            in_shape, out_shape = self.input_shapes[inp], self.get_tensor_shape(out)
            in_np = np.dtype(_TRT_TO_NP[self.engine.get_tensor_dtype(inp)])
            out_np = np.dtype(_TRT_TO_NP[self.engine.get_tensor_dtype(out)])
            src, dst = self.addresses[inp], self.addresses[out]
            gpu.resolve(src, int(np.prod(in_shape)) * in_np.itemsize)  # the buffers must be large enough now
            gpu.resolve(dst, int(np.prod(out_shape)) * out_np.itemsize)
            nhwc, scale = self.engine.specs[inp][1].nhwc, self.engine.scale

            if flag is not None:
                gpu.resolve(flag, 4)

            def run() -> None:
                x = gpu.read(src, in_np, in_shape)
                gpu.write(dst, nearest_upsample(x, scale, nhwc).astype(out_np))
                if flag is not None:
                    gpu.write(flag, np.full((1, 1, 1, 1), float(gpu.nonfinite), np.float32))

            stream = gpu.stream_for(stream_handle)
            self._check_concurrency(stream)
            self.last_run = (stream, run)
            stream.enqueue(run)
            return True

        def _unready(self) -> str:
            if gpu.current_context() is None:
                return "execute_async_v3: no CUDA context is current on this thread"
            missing = [n for n, (m, _) in self.engine.specs.items() if m == TensorIOMode.INPUT and n not in self.input_shapes]
            if missing:
                return f"execute_async_v3: input shape of {missing} not set (call set_input_shape first)"
            unbound = [n for n in self.engine.names if n not in self.addresses]
            if unbound:
                return f"execute_async_v3: no address for {unbound} (call set_tensor_address for every I/O tensor)"
            return ""

    class Runtime:
        def __init__(self, logger: Logger):
            need_logger(logger, "Runtime(logger)")
            gpu.record("Runtime")

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            if not isinstance(serialized_engine, (bytes, bytearray, memoryview)):
                raise TypeError(f"deserialize_cuda_engine: expected bytes, got {type(serialized_engine).__name__}")
            data = bytes(serialized_engine)
            gpu.record("Runtime.deserialize_cuda_engine", len(data))
            if not data.startswith(b"FAKETRT"):
                gpu.errors.append("deserialize_cuda_engine: not an engine of this (fake) TensorRT version")
                return None
            return ICudaEngine(json.loads(data[len(b"FAKETRT"):]))

    def nptype(dtype: DataType) -> type:
        return _TRT_TO_NP[dtype]

    for name, obj in {"Logger": Logger, "ILogger": Logger, "Builder": Builder, "OnnxParser": OnnxParser,
                      "INetworkDefinition": INetworkDefinition, "IBuilderConfig": IBuilderConfig,
                      "IOptimizationProfile": IOptimizationProfile, "ITimingCache": ITimingCache,
                      "IProgressMonitor": IProgressMonitor, "Runtime": Runtime, "ICudaEngine": ICudaEngine,
                      "IExecutionContext": IExecutionContext, "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
                      "MemoryPoolType": MemoryPoolType, "TensorIOMode": TensorIOMode, "DataType": DataType,
                      "float32": DataType.FLOAT, "float16": DataType.HALF, "uint8": DataType.UINT8, "int8": DataType.INT8,
                      "int32": DataType.INT32, "bool": DataType.BOOL, "nptype": nptype}.items():
        setattr(trt, name, obj)
    return trt


# ---------------------------------------------------------------------------------------------------- install
def install(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeGPU:
    """Put fresh fake modules into ``sys.modules`` for one test (undone by ``monkeypatch``); returns their state."""
    gpu = FakeGPU(**kwargs)
    pkg, drv, _ = _build_pycuda(gpu)
    gpu.tensorrt = _build_tensorrt(gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", gpu.tensorrt)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    if "pycuda.autoprimaryctx" in sys.modules:
        monkeypatch.delitem(sys.modules, "pycuda.autoprimaryctx")
    monkeypatch.setattr(sys, "meta_path", [_AutoPrimaryFinder(gpu), *sys.meta_path])
    return gpu


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Fake tensorrt + pycuda for one test; yields the :class:`FakeGPU` that records every call."""
    gpu = install(monkeypatch)
    yield gpu
    sys.modules.pop("pycuda.autoprimaryctx", None)
