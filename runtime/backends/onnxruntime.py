"""ONNX Runtime backend: the embedded default (CPU), with CUDA/TensorRT providers when onnxruntime-gpu is installed."""

from __future__ import annotations

import os
from pathlib import Path

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


def session_options(threads: int | None = None):  # type: ignore[no-untyped-def]
    """The CPU session options we measured fastest (see docs/benchmarks.md)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return opts


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
    """Runs an ONNX written by bsrn-export. ``InferenceSession.run`` is thread-safe."""

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
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
            self.session = ort.InferenceSession(str(self.path), session_options(threads), providers=_providers(device))
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

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = check_batch(x, self)
        feed = x.astype(np.float16) if self._half_io else x
        y = self.session.run([self._out_name], {self._in_name: feed})[0]
        return y if y.dtype == np.float32 else y.astype(np.float32)

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the result into ``out`` (float32, N×3×sh×sw) without allocating the output."""
        if self._half_io:
            out[...] = self.infer(x)
            return
        x = check_batch(x, self)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self._in_name, x)
        binding.bind_output(self._out_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(binding)

    def close(self) -> None:
        self.session = None
