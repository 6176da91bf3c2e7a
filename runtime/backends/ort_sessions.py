"""ONNX Runtime CPU sessions: the options we measured fastest, one shared memory arena, and a small cache of
sessions specialised to one input shape each."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from bsrn_edge._lazy import require
from bsrn_edge.hostinfo import physical_cores

from .base import ShapeCache

__all__ = ["session_options", "ShapeSessions"]

log = logging.getLogger(__name__)


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
            log.debug("shared CPU arena not registered: %s", exc)


class ShapeSessions(ShapeCache):
    """CPU sessions of one ONNX file, each with the symbolic input dimensions fixed to one shape (ORT's
    free-dimension overrides), at most ``size`` of them, the least recently used dropped first.

    With every shape known, ONNX Runtime folds ESA's size arithmetic to constants and keeps more of the
    graph in its blocked NCHWc layout (fewer reorders, in-place conv sums); see docs/benchmarks.md for
    the measured gain. A camera uses one shape, a tiled image up to four, and a new shape costs one graph
    optimisation (tens of milliseconds). ``free_dims`` maps input axes to their symbolic names
    (``{0: "batch", 2: "height", 3: "width"}``). Thread-safe.
    """

    def __init__(self, path: Path, free_dims: Mapping[int, str], size: int = 4, threads: int | None = None,
                 shared_arena: bool = True):
        super().__init__(self._session, size)
        self.path, self.free_dims = path, dict(free_dims)
        self.threads, self.shared_arena = threads, shared_arena

    def _session(self, shape: tuple[int, ...]) -> Any:
        ort = require("onnxruntime")
        dims = {name: shape[axis] for axis, name in self.free_dims.items()}
        return ort.InferenceSession(str(self.path), session_options(self.threads, dims, shared_arena=self.shared_arena),
                                    providers=["CPUExecutionProvider"])
