"""ONNX Runtime backend: the embedded default (CPU), with CUDA/TensorRT providers when onnxruntime-gpu is installed."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

from .base import check_batch

__all__ = ["OnnxRuntimeBackend", "physical_cores", "session_options"]


def physical_cores() -> int:
    """Physical cores (hyper-threads share one FPU, so more threads only add contention)."""
    try:
        with open("/proc/cpuinfo") as fh:
            pairs = set()
            phys = core = None
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip() and core is not None:
                    pairs.add((phys, core))
                    phys = core = None
            if pairs:
                return min(len(pairs), len(os.sched_getaffinity(0)))
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def session_options(threads: int | None = None, dims: Mapping[str, int] | None = None, *,
                    shared_arena: bool = True):  # type: ignore[no-untyped-def]
    """The CPU session options we measured fastest (see docs/benchmarks.md).

    ``dims`` fixes symbolic input dimensions by name (e.g. ``{"height": 180}``) for a shape-specialised
    session. ``shared_arena=False`` gives the session an arena of its own (to measure one model's memory).
    """
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    for name, value in (dims or {}).items():
        opts.add_free_dimension_override_by_name(name, int(value))
    if shared_arena:
        _register_shared_cpu_arena(ort)
        opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


_ARENA_LOCK = threading.Lock()
_arena_registered = False


def _register_shared_cpu_arena(ort) -> None:  # type: ignore[no-untyped-def]
    """Register one CPU arena for every session of this process that opts in (once).

    Each session otherwise keeps an arena of its own, sized by its largest run: the shape-specialised
    sessions of one tiled image (up to four tile shapes) would hold four (a 4000×3000 upscale peaked
    245 MB higher). Sharing one keeps the peak at the largest run, as with a single session. If ORT
    refuses (another library registered one first), the sessions use that one, or their own.
    """
    global _arena_registered
    with _ARENA_LOCK:
        if _arena_registered:
            return
        _arena_registered = True
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        try:
            ort.create_and_register_allocator(info, None)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            import logging

            logging.getLogger(__name__).debug("shared CPU arena not registered: %s", exc)


def both_runtimes_installed() -> bool:
    """True when onnxruntime and onnxruntime-gpu are both installed (they overwrite each other's files)."""
    from importlib import metadata

    names = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            names.add(dist)
        except metadata.PackageNotFoundError:
            pass
    return len(names) == 2


def _providers(device: str) -> list[str]:
    ort = require("onnxruntime")
    have = set(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device == "auto" else [device]
    chosen = [p for p in wanted if p in have] + ["CPUExecutionProvider"]
    return chosen


class OnnxRuntimeBackend:
    """Runs an ONNX written by bsrn-export. ``InferenceSession.run`` is thread-safe.

    On the CPU, each input shape (batch, height, width) gets its own session with those dimensions
    fixed (ORT's free-dimension overrides), up to ``shape_sessions`` of them, least recently used
    dropped first. With every shape known, ONNX Runtime folds ESA's size arithmetic to constants and
    keeps more of the graph in its blocked NCHWc layout (fewer reorders, in-place conv sums); see
    docs/benchmarks.md for the measured gain. A camera uses one shape, a tiled image up to four, and a
    new shape costs one graph optimisation (tens of milliseconds). ``shape_sessions=0`` runs every
    shape through the one dynamic-shape session.

    All sessions draw on one CPU memory arena shared by the process (``_register_shared_cpu_arena``), so
    caching several shapes does not multiply the activation memory; ``shared_arena=False`` gives this
    backend's sessions arenas of their own (bsrn-bench does, to measure each model's memory alone).
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 shape_sessions: int = 4, shared_arena: bool = True):
        ort = require("onnxruntime")
        if both_runtimes_installed():
            import logging

            logging.getLogger(__name__).warning(
                "both onnxruntime and onnxruntime-gpu are installed and shadow each other; keep one: "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'bsrn-edge[gpu]' (or [cpu])")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads, shared_arena=shared_arena),
                                                providers=_providers(device))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InputError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = ModelMeta.from_props(props, str(self.path))
        provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.name = f"onnxruntime-{provider.lower()}" + ("-fp16" if self.meta.precision == "fp16" else "")
        inp = self.session.get_inputs()[0]
        self._in_name, self._out_name = inp.name, self.session.get_outputs()[0].name
        self._half_io = inp.type == "tensor(float16)"
        self.tile_limits = (self.meta.min_size, 0)
        self.max_batch = 0
        self._threads = threads
        self._shared_arena = shared_arena
        # symbolic input dimensions by axis, e.g. {0: "batch", 2: "height", 3: "width"}
        self._free_dims = {i: d for i, d in enumerate(inp.shape) if isinstance(d, str) and d}
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self._max_shapes = max(0, shape_sessions) if on_cpu and self._free_dims else 0
        self._shaped: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def _session_for(self, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
        """The session specialised to ``shape`` (created on first use), or the dynamic one."""
        if not self._max_shapes:
            return self.session
        with self._lock:
            sess = self._shaped.get(shape)
            if sess is not None:
                self._shaped.move_to_end(shape)
                return sess
            ort = require("onnxruntime")
            opts = session_options(self._threads, {name: shape[axis] for axis, name in self._free_dims.items()},
                                   shared_arena=self._shared_arena)
            sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            self._shaped[shape] = sess
            while len(self._shaped) > self._max_shapes:
                self._shaped.popitem(last=False)
            return sess

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = check_batch(x, self)
        feed = x.astype(np.float16) if self._half_io else x
        y = self._session_for(x.shape).run([self._out_name], {self._in_name: feed})[0]
        return y if y.dtype == np.float32 else y.astype(np.float32)

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the result into ``out`` (float32, N×3×sh×sw) without allocating the output."""
        if self._half_io:
            out[...] = self.infer(x)
            return
        x = check_batch(x, self)
        session = self._session_for(x.shape)
        binding = session.io_binding()
        binding.bind_cpu_input(self._in_name, x)
        binding.bind_output(self._out_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        session.run_with_iobinding(binding)

    def close(self) -> None:
        with self._lock:
            self._shaped.clear()
        self.session = None
