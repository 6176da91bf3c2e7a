"""TensorRT engine building: a thin layer over the documented 10.x/11.x Python API.

Everything that does not need TensorRT (profiles, cache keys, sidecars) is in ``engine_cache``.
The network is strongly typed, so the precision is the ONNX's own (see ``fp16``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from bsrn_edge._lazy import require
from bsrn_edge.artifacts import parse_artifact
from bsrn_edge.errors import EngineBuildError
from bsrn_edge.imageio import atomic_file, write_atomic

from .engine_cache import EngineKey, EngineProfile, default_cache_dir, engine_key, sidecar_matches

__all__ = ["gpu_identity", "engine_from_onnx", "EngineBuildResult"]

log = logging.getLogger(__name__)


def gpu_identity() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of the GPU in use: the device of the CUDA context current on this thread,
    else the one ``pycuda.autoprimaryctx`` picks and makes current (the ``CUDA_DEVICE`` environment variable,
    else the first device that works: ``pycuda.tools.make_default_context``), as the runtime's backend does.
    The engine is then built on that device, and the cache key names it."""
    cuda = require("pycuda.driver")
    cuda.init()
    if cuda.Context.get_current() is not None:
        dev = cuda.Context.get_device()
    else:
        dev = require("pycuda.autoprimaryctx").device
    return str(dev.name()), tuple(dev.compute_capability())  # type: ignore[return-value]


class EngineBuildResult:
    def __init__(self, path: Path, key: EngineKey, reused: bool):
        self.path, self.key, self.reused = path, key, reused


def _progress_monitor(trt: Any, report: Callable[[str], None]) -> Any:
    """An ``IProgressMonitor`` that forwards phase updates (None when this TensorRT has none)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()

        # TensorRT calls phase_start(phase_name, parent_phase, num_steps), positionally.
        def phase_start(self, phase_name, parent_phase, num_steps):  # type: ignore[no-untyped-def]
            report(f"{phase_name} (0/{num_steps})")

        def step_complete(self, phase_name, step):  # type: ignore[no-untyped-def]
            report(f"{phase_name} step {step + 1}")
            return True

        def phase_finish(self, phase_name):  # type: ignore[no-untyped-def]
            report(f"{phase_name} done")

    return Monitor()


def _strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags: STRONGLY_TYPED where this TensorRT has it (always on in 11.x, required on 10.x)."""
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if strongly is None else 1 << int(strongly)


def _reuse(out_path: Path, cached: Path, key: EngineKey, report: Callable[[str], None]) -> EngineBuildResult | None:
    """The engine already at ``out_path`` (sidecar matching ``key``) or a copy of the cached one; None to build."""
    sidecar = Path(str(out_path) + ".json")
    if out_path.is_file() and sidecar_matches(sidecar, key):
        return EngineBuildResult(out_path, key, reused=True)
    if cached.is_file():
        report(f"reusing cached engine {cached}")
        with atomic_file(out_path) as fh, open(cached, "rb") as src:  # a copy cut short leaves no file under either name
            shutil.copyfileobj(src, fh)
        write_atomic(sidecar, key.to_json().encode())
        return EngineBuildResult(out_path, key, reused=True)
    return None


def _serialized_engine(trt: Any, onnx_path: Path, onnx_bytes: bytes, shapes: tuple, workspace_bytes: int,
                       timing_path: Path, report: Callable[[str], None]) -> bytes:
    """Parse, configure (workspace, one profile, timing cache, progress) and build; the timing cache is saved."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT could not parse the ONNX: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(network.get_input(0).name, *shapes)
    config.add_optimization_profile(opt_profile)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    monitor = _progress_monitor(trt, report)
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def engine_from_onnx(
    onnx_path: Path,
    out_path: Path,
    profile: EngineProfile,
    *,
    precision: str = "fp16",
    pixels: str = "float",
    workspace_bytes: int = 1 << 30,
    cache_dir: Path | None = None,
    report: Callable[[str], None] = log.info,
) -> EngineBuildResult:
    """Build (or reuse from the cache) a strongly typed engine for ``onnx_path``; write it atomically.

    ``pixels`` is the graph's pixel I/O (``ModelMeta.pixels``): it sets the profile's layout, N×3×H×W
    for "float", N×H×W×3 for "uint8". The cache is keyed on the ONNX hash, TensorRT version, GPU,
    precision and profile; ``out_path`` gets a ``.json`` sidecar holding that key.
    """
    trt = require("tensorrt")
    out_path = Path(out_path)
    onnx_bytes = Path(onnx_path).read_bytes()
    gpu, cc = gpu_identity()
    key = engine_key(onnx_bytes, trt.__version__, gpu, cc, precision, profile)
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / key.file_name(parse_artifact(onnx_path).stem + (".u8" if pixels == "uint8" else ""))
    reused = _reuse(out_path, cached, key, report)
    if reused is not None:
        return reused
    timing_path = cache / f"timing-{key.gpu_name.replace(' ', '_')}-trt{key.tensorrt_version}.cache"
    data = _serialized_engine(trt, Path(onnx_path), onnx_bytes, profile.shapes(pixels), workspace_bytes, timing_path, report)
    write_atomic(cached, data)
    write_atomic(out_path, data)
    write_atomic(Path(str(out_path) + ".json"), key.to_json().encode())
    return EngineBuildResult(out_path, key, reused=False)
