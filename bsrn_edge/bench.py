"""Benchmark rows as the NTIRE Efficient SR table reports them, for every model × backend (library; no prints).

:func:`iter_bench` yields one :class:`BenchRow` per model × backend: fidelity on LR/HR pairs (PSNR on Y
with a border of ``scale`` pixels, the paper's convention, and on RGB with a 4-pixel border, the NTIRE
convention), complexity (Params, FLOPs = MACs on a 1×3×256×256 LR input, Multi-Adds for a 1280×720
output, Acts, #Conv; counted by :mod:`bsrn_edge.complexity` on the authors' structure, the same network
for every backend), peak memory and runtime. The published figures of :data:`bsrn_edge.complexity.PUBLISHED`
are carried beside ours in the ``*_published`` fields.

Backends (:data:`BACKENDS`):

- ``torch``: PyTorch fp32 eager on the authors' structure (the NTIRE protocol);
- ``onnxruntime`` / ``onnxruntime-fp16``: the deploy form exported by :func:`bsrn_edge.export.pipeline.export_checkpoint`
  into a cache directory (reused while the checkpoint and bsrn-edge version are unchanged) and run with
  :class:`~bsrn_edge.runtime.backends.onnxruntime.OnnxRuntimeBackend`;
- ``tensorrt``: an FP16 engine built from the FP16 ONNX, on ``device="cuda"`` only; where TensorRT or a GPU
  is absent the row is *skipped* with a note, never an error.

Measurement, per row and in this order:

1. **Memory** of one forward pass on the timing input, before warm-up. On CUDA (torch):
   ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, so it includes the weights,
   as NTIRE did. On the CPU: the increase of the process's peak resident set (``VmHWM``) over its resident
   set just before the call (``VmRSS``, model loaded), after a ``gc`` pass, ``malloc_trim`` and a reset of the
   peak through ``/proc/self/clear_refs``; it therefore counts activations, workspaces and allocator growth,
   not the weights. Where ``/proc`` is missing it falls back to the ``getrusage`` ``ru_maxrss`` delta, a
   lower bound (said in the row's note). MB means 2**20 bytes, as NTIRE's ``/ 1024 ** 2``.
2. **Runtime**: ``warmup`` untimed calls, then ``runs`` timed calls on the same input; median and mean in
   ms. CPU: ``time.perf_counter`` around the call. CUDA (torch): CUDA events around the forward, then
   ``synchronize``; the input is on the device before timing. ONNX Runtime and TensorRT are timed with
   ``perf_counter`` around ``infer`` (on CUDA that includes host↔device copies; the note says so).
   The input is a real image, not noise: the first bundled Set5 ×4 LR image mirrored to ``size``.
3. **Fidelity** with :func:`bsrn_edge.evaluate.evaluate` on the pairs of the data folder at the model's scale.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
import os
import platform
import re
import resource
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np

from .datasets import Pair, bundled_set5, find_pairs
from .errors import InputError
from .variants import VARIANTS, get_variant

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import LoadedModel
    from .complexity import Complexity

__all__ = [
    "BACKENDS",
    "DEFAULT_MODELS",
    "DEFAULT_BACKENDS",
    "JSON_KEYS",
    "BenchConfig",
    "BenchRow",
    "MachineInfo",
    "Progress",
    "iter_bench",
    "run_bench",
    "parse_size",
    "parse_models",
    "parse_backends",
    "machine_info",
    "bench_input",
    "cached_export",
    "default_cache_dir",
    "cpu_peak_rss_increase_mb",
    "header_lines",
    "rows_to_json",
    "rows_to_csv",
    "rows_to_markdown",
]

logger = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "onnxruntime-fp16", "tensorrt")
PRECISION: dict[str, str] = {"torch": "fp32", "onnxruntime": "fp32", "onnxruntime-fp16": "fp16", "tensorrt": "fp16"}
DEFAULT_MODELS: tuple[str, ...] = ("bsrn-s-x4", "bsrn-x4", "imdn", "rfdn", "rlfn")
DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "onnxruntime-fp16", "tensorrt")
JSON_KEYS: tuple[str, ...] = (
    "model", "backend", "precision", "device", "psnr_y", "psnr_rgb", "params_m", "flops_g",
    "multiadds_720p_g", "acts_m", "convs", "mem_mb", "runtime_ms_median", "runtime_ms_mean",
)

# Wraps an iterable of pairs with a description ("bsrn-s-x4/torch"); the CLI passes a tqdm bar.
Progress = Callable[[Iterable[Pair], str], Iterable[Pair]]

_MIB = float(2**20)
_SIZE = re.compile(r"^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$")


# --------------------------------------------------------------------------------------- configuration


def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` (``256x256``, ``320x180``) or one number for a square → ``(width, height)``."""
    s = str(text).strip()
    m = _SIZE.match(s)
    if m:
        w, h = int(m[1]), int(m[2])
    elif s.isdigit():
        w = h = int(s)
    else:
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT in LR pixels, e.g. 256x256 or 320x180")
    if w < 1 or h < 1:
        raise InputError(f"--size {text!r}: width and height must be positive, e.g. 256x256")
    return w, h


def _split(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [t.strip() for t in items if t.strip()]


def parse_models(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated model names or aliases → canonical registry names (order kept, duplicates dropped)."""
    names = _split(text)
    if not names:
        raise InputError(f"--models is empty; choose from: {', '.join(VARIANTS)}")
    out: list[str] = []
    bad: list[str] = []
    for n in names:
        try:
            canon = get_variant(n).name
        except InputError:
            bad.append(n)
            continue
        if canon not in out:
            out.append(canon)
    if bad:
        raise InputError(f"unknown model name(s) {', '.join(map(repr, bad))}; valid names: {', '.join(VARIANTS)}")
    return tuple(out)


def parse_backends(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated backend names → a tuple of :data:`BACKENDS` entries (order kept)."""
    names = [n.lower() for n in _split(text)]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        got = ", ".join(map(repr, bad)) if bad else "nothing"
        raise InputError(f"unknown backend name(s) {got}; valid backends: {', '.join(BACKENDS)}")
    return tuple(dict.fromkeys(names))


def default_cache_dir() -> Path:
    """Where exported ONNX files are kept between runs: ``<cache root>/bench`` (see ``engine_cache.cache_root``)."""
    from .export.engine_cache import cache_root

    return cache_root() / "bench"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``size`` is the timing input in LR pixels, ``(width, height)``.

    ``data`` is a folder of LR/HR pairs in either layout :func:`~bsrn_edge.datasets.find_pairs` reads; None
    means the bundled Set5 ×4. ``threads`` sets both PyTorch's and ONNX Runtime's intra-op threads (None:
    PyTorch's default and ONNX Runtime's physical-core count).
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    device: Device = "cpu"
    data: Path | None = None
    size: tuple[int, int] = (256, 256)
    runs: int = 10
    warmup: int = 2
    threads: int | None = None
    cache_dir: Path | None = None

    def validate(self) -> "BenchConfig":
        """Raise :class:`InputError` naming the bad field; return self otherwise."""
        models = parse_models(self.models)
        parse_backends(self.backends)
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"--device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.runs < 1:
            raise InputError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        need = max(VARIANTS[m].min_size for m in models)
        if min(self.size) < need:
            raise InputError(
                f"--size {self.size[0]}x{self.size[1]} is below the smallest input {need}×{need} that "
                f"{', '.join(m for m in models if VARIANTS[m].min_size == need)} accept(s); use --size {need}x{need} or more"
            )
        if self.data is not None:
            if not Path(self.data).is_dir():
                raise InputError(f"--data {self.data}: not a directory; expected a folder of LR/HR pairs "
                                 f"(img_NNN_SRF_4_LR.png/_HR.png or DIV2K's NNNN.png with NNNNx4.png)")
            find_pairs(self.data)  # raises InputError when the folder holds no pairs at all
        return self

    @property
    def data_label(self) -> str:
        return "bundled Set5 ×4" if self.data is None else str(self.data)


# --------------------------------------------------------------------------------------- rows


@dataclass
class BenchRow:
    """One model × backend × precision. Complexity fields are the network's, whatever the backend.

    ``status`` is ``"ok"``, ``"skipped"`` (backend absent here; not an error) or ``"failed"``; ``note``
    says why, or adds a caveat. Measurements that could not be made are None.
    """

    model: str
    backend: str
    precision: str
    device: str
    psnr_y: float | None = None
    psnr_rgb: float | None = None
    params_m: float | None = None
    flops_g: float | None = None
    multiadds_720p_g: float | None = None
    acts_m: float | None = None
    convs: int | None = None
    mem_mb: float | None = None
    runtime_ms_median: float | None = None
    runtime_ms_mean: float | None = None
    params_m_published: float | None = None
    flops_g_published: float | None = None
    multiadds_720p_g_published: float | None = None
    acts_m_published: float | None = None
    convs_published: int | None = None
    mem_mb_published: float | None = None
    scale: int | None = None
    images: int = 0
    size: str = ""
    runs: int = 0
    warmup: int = 0
    status: str = "ok"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MachineInfo:
    """Facts printed above every table."""

    platform: str
    cpu: str
    logical_cores: int
    usable_cores: int
    python: str
    versions: dict[str, str]
    torch_threads: int | None
    ort_threads: int | None
    gpu: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_model() -> str:
    """The CPU model name (from /proc/cpuinfo where it exists)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(module: str) -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "?"
    dists = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorrt": ("tensorrt", "tensorrt-cu12")}
    for dist in dists.get(module, (module,)):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "absent"


def machine_info(config: BenchConfig | None = None) -> MachineInfo:
    """Platform, CPU model (from ``/proc/cpuinfo``), core counts, library versions and thread counts."""
    from ._lazy import available

    cfg = config or BenchConfig()
    torch_threads = ort_threads = None
    gpu = None
    if available("torch"):
        import torch

        torch_threads = cfg.threads or torch.get_num_threads()
        if cfg.device == "cuda" and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name()
    if available("onnxruntime"):
        from .runtime.backends.onnxruntime import physical_cores

        ort_threads = cfg.threads or physical_cores()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    versions = {m: _version(m) for m in ("bsrn-edge", "numpy", "torch", "onnxruntime", "onnx")}
    if "tensorrt" in cfg.backends:
        versions["tensorrt"] = _version("tensorrt")
    return MachineInfo(
        platform=platform.platform(),
        cpu=cpu_model(),
        logical_cores=os.cpu_count() or 1,
        usable_cores=usable,
        python=platform.python_version(),
        versions=versions,
        torch_threads=torch_threads,
        ort_threads=ort_threads,
        gpu=gpu,
    )


# --------------------------------------------------------------------------------------- measurement helpers


def bench_input(size: tuple[int, int]) -> np.ndarray:
    """The timing input: the first bundled Set5 ×4 LR image mirrored (symmetric padding) and cropped to
    ``size`` = (width, height); 1×3×H×W float32 in [0, 1]. Deterministic, and a real image, not noise."""
    from .evaluate import to_nchw
    from .imageio import read_rgb

    w, h = size
    img = read_rgb(find_pairs(bundled_set5(), 4)[0].lr)
    pad = ((0, max(0, h - img.shape[0])), (0, max(0, w - img.shape[1])), (0, 0))
    img = np.pad(img, pad, mode="symmetric")[:h, :w]
    return to_nchw(img)


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


def cpu_peak_rss_increase_mb(call: Callable[[], object]) -> tuple[float, str]:
    """Run ``call`` once and return (increase of peak RSS in MB, method note).

    Linux: ``VmHWM`` after the call minus ``VmRSS`` before it, the peak reset just before. Elsewhere the
    ``ru_maxrss`` delta, a lower bound when the process was bigger before; the note then says so.
    """
    gc.collect()
    _malloc_trim()
    if _reset_peak_rss():
        base = _status_kb("VmRSS")
        if base is not None:
            call()
            peak = _status_kb("VmHWM")
            if peak is not None:
                return max(0, peak - base) / 1024.0, ""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unit = 1.0 if platform.system() == "Darwin" else 1024.0  # bytes on macOS, kB on Linux
    return max(0, after - before) * unit / _MIB, "mem: ru_maxrss delta, a lower bound"


# A callable running one forward pass on the prepared timing input and returning its time in ms.
Timer = Callable[[], float]


class _Runner:
    """One backend ready to run one model: an upscale function for fidelity, a timer and memory."""

    note: str = ""

    def upscale(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def timer(self, x: np.ndarray) -> Timer:
        def call() -> float:
            t0 = time.perf_counter()
            self.upscale(x)
            return (time.perf_counter() - t0) * 1e3

        return call

    def memory_mb(self, call: Timer, device: str) -> tuple[float | None, str]:
        if device == "cpu":
            return cpu_peak_rss_increase_mb(call)
        call()
        return None, "mem: not measured for this backend on CUDA"

    def close(self) -> None:
        pass


class _TorchRunner(_Runner):
    def __init__(self, loaded: "LoadedModel", device: str):
        import torch

        from .evaluate import torch_upscale_fn

        if device == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda requested but PyTorch sees no CUDA GPU; use --device cpu")
        self.torch = torch
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self._upscale = torch_upscale_fn(self.model, str(self.device))

    def upscale(self, x: np.ndarray) -> np.ndarray:
        return self._upscale(x)

    def timer(self, x: np.ndarray) -> Timer:
        torch, model = self.torch, self.model
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)  # the copy stays outside the timed region
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

            def call_cuda() -> float:
                with torch.inference_mode():
                    start.record()
                    model(t)
                    end.record()
                torch.cuda.synchronize()
                return float(start.elapsed_time(end))

            return call_cuda

        def call_cpu() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(t)
                return (time.perf_counter() - t0) * 1e3

        return call_cpu

    def memory_mb(self, call: Timer, device: str) -> tuple[float | None, str]:
        if device != "cuda":
            return super().memory_mb(call, device)
        torch = self.torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        call()
        return torch.cuda.max_memory_allocated() / _MIB, ""

    def close(self) -> None:
        self.model.to("cpu")
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


class _OrtRunner(_Runner):
    def __init__(self, onnx_path: Path, device: str, threads: int | None):
        from .runtime.backends.onnxruntime import OnnxRuntimeBackend

        provider = "CUDAExecutionProvider" if device == "cuda" else "cpu"
        # own arenas: with the process-wide shared one, a model measured after another would reuse
        # the arena the first one grew, and its memory column would read near zero
        self.backend = OnnxRuntimeBackend(onnx_path, device=provider, threads=threads, shared_arena=False)
        used = self.backend.session.get_providers()[0]
        if device == "cuda" and used != "CUDAExecutionProvider":
            raise InputError(
                f"ONNX Runtime has no CUDA provider here (providers: {', '.join(self.backend.session.get_providers())}); "
                f"install onnxruntime-gpu (pip install 'bsrn-edge[gpu]') or use --device cpu"
            )
        if device == "cuda":
            self.note = "runtime includes host↔device copies"

    def upscale(self, x: np.ndarray) -> np.ndarray:
        return self.backend.infer(x)

    def close(self) -> None:
        self.backend.close()


class _TrtRunner(_Runner):
    note = "runtime includes host↔device copies"

    def __init__(self, engine_path: Path):
        from .runtime.backends.tensorrt import TensorRTBackend

        self.backend = TensorRTBackend(engine_path)

    def upscale(self, x: np.ndarray) -> np.ndarray:
        return self.backend.infer(x)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()


# --------------------------------------------------------------------------------------- ONNX / engine cache


def _export_dir(cache: Path, loaded: "LoadedModel") -> Path:
    from . import __version__

    return cache / f"{loaded.variant.name}-{loaded.sha256[:12]}-v{__version__}"


def cached_export(loaded: "LoadedModel", cache: Path, fp16: bool) -> dict[str, Path]:
    """The cached ONNX files of ``loaded`` (``onnx`` and, when ``fp16``, ``fp16_onnx``), exported on a miss."""
    from .export.pipeline import ExportOptions, artifact_paths, export_checkpoint

    out = _export_dir(cache, loaded)
    stem = loaded.variant.name
    paths = artifact_paths(out, stem, fp16)
    wanted = {k: p for k, p in paths.items() if k != "manifest"}
    if all(p.is_file() for p in wanted.values()):
        logger.info("reusing exported %s", ", ".join(str(p) for p in wanted.values()))
        return wanted
    logger.info("exporting %s to %s (fp16=%s); later runs reuse it", stem, out, fp16)
    res = export_checkpoint(stem, out, ExportOptions(fp16=fp16, engine="skip", force=True), report=logger.info)
    return {k: res.files[k] for k in wanted}


def _trt_unavailable(device: str) -> str | None:
    """Why the tensorrt row cannot run here, or None."""
    from ._lazy import available

    if not available("tensorrt"):
        return "TensorRT is not installed (pip install 'bsrn-edge[tensorrt]' on a CUDA machine, then --device cuda)"
    if device != "cuda":
        return "TensorRT runs on a CUDA GPU only; pass --device cuda"
    from .export.pipeline import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


def _engine(loaded: "LoadedModel", cache: Path, size: tuple[int, int], pairs: Sequence[Pair]) -> Path:
    """Build (or reuse) an FP16 engine whose profile covers the timing input and every LR image."""
    from .export.engine_cache import EngineProfile
    from .export.pipeline import build_engine_step, engine_path_for
    from .imageio import read_rgb

    onnx16 = cached_export(loaded, cache, fp16=True)["fp16_onnx"]
    sides = [*size] + [s for p in pairs for s in read_rgb(p.lr).shape[:2]]
    lo = max(loaded.variant.min_size, min(32, min(sides)))
    hi = max(sides)
    profile = EngineProfile(min_tile=lo, opt_tile=max(size), max_tile=hi, max_batch=1, opt_batch=1)
    build_engine_step(onnx16, profile.validate(loaded.variant.min_size, "bsrn-bench"), "fp16", "require", logger.info)
    return engine_path_for(onnx16)


# --------------------------------------------------------------------------------------- the bench


def _complexity_fields(loaded: "LoadedModel") -> dict[str, Any]:
    from .complexity import PUBLISHED, count_complexity

    c: Complexity = count_complexity(loaded.model)
    out: dict[str, Any] = {
        "params_m": c.params / 1e6,
        "flops_g": c.flops / 1e9,
        "multiadds_720p_g": None if c.multiadds_720p is None else c.multiadds_720p / 1e9,
        "acts_m": c.acts / 1e6,
        "convs": c.convs,
    }
    pub = PUBLISHED.get(loaded.variant.name)
    if pub is not None:
        div = {"params": 1e6, "flops": 1e9, "multiadds_720p": 1e9, "acts": 1e6}
        for key, d in div.items():
            val = getattr(pub, key)
            out[f"{key}_g_published" if key in ("flops", "multiadds_720p") else f"{key}_m_published"] = (
                None if val is None else val / d
            )
        out["convs_published"] = pub.convs
        out["mem_mb_published"] = pub.memory_mb
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def _measure(row: BenchRow, runner: _Runner, cfg: BenchConfig, x: np.ndarray, pairs: Sequence[Pair] | None,
             scale: int, progress: Progress | None) -> None:
    from .evaluate import evaluate

    notes = [runner.note] if runner.note else []
    call = runner.timer(x)
    row.mem_mb, mem_note = runner.memory_mb(call, cfg.device)
    if mem_note:
        notes.append(mem_note)
    for _ in range(cfg.warmup):
        call()
    times = [call() for _ in range(cfg.runs)]
    row.runtime_ms_median = float(statistics.median(times))
    row.runtime_ms_mean = float(statistics.fmean(times))
    if pairs:
        desc = f"{row.model}/{row.backend}"
        wrap = (lambda it: progress(it, desc)) if progress is not None else None
        scores = evaluate(runner.upscale, list(pairs), scale, ssim=False, progress=wrap)
        row.psnr_y, row.psnr_rgb, row.images = scores.psnr_y, scores.psnr_rgb, len(scores.images)
    row.note = "; ".join(n for n in [row.note, *notes] if n)


def iter_bench(config: BenchConfig, *, progress: Progress | None = None) -> Iterator[BenchRow]:
    """Yield one row per model × backend, model by model; a failing row never stops the others.

    Loads each model once (for the torch backend and the complexity count) and releases it before the next.
    ``progress`` wraps the fidelity loop of each row (the CLI passes a tqdm bar).
    """
    from ._lazy import require

    cfg = config.validate()
    models, backends = parse_models(cfg.models), parse_backends(cfg.backends)
    torch = require("torch")
    from .checkpoint import load_model

    cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else default_cache_dir()
    data = Path(cfg.data) if cfg.data is not None else bundled_set5()
    x = bench_input(cfg.size)
    size_label = f"{cfg.size[0]}x{cfg.size[1]}"
    old_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        for name in models:
            variant = VARIANTS[name]
            base = dict(device=cfg.device, scale=variant.scale, size=size_label, runs=cfg.runs, warmup=cfg.warmup)
            loaded = None
            model_error = ""
            extra: dict[str, Any] = {}
            try:
                loaded = load_model(name)
                extra = _complexity_fields(loaded)
            except Exception as exc:  # noqa: BLE001 - reported on every row of this model
                logger.debug("loading %s failed", name, exc_info=True)
                model_error = f"model failed to load or count: {_first_line(exc)}"
            pairs: list[Pair] | None
            pairs_note = ""
            try:
                pairs = find_pairs(data, variant.scale)
            except InputError:
                pairs = None
                pairs_note = f"no ×{variant.scale} pairs in {cfg.data_label}: PSNR not measured"
            for backend in backends:
                row = BenchRow(model=name, backend=backend, precision=PRECISION[backend], **base, **extra)
                row.note = pairs_note
                if loaded is None:
                    row.status, row.note = "failed", f"failed: {model_error}"
                    yield row
                    continue
                if backend == "tensorrt":
                    reason = _trt_unavailable(cfg.device)
                    if reason is not None:
                        row.status, row.note = "skipped", f"skipped: {reason}"
                        yield row
                        continue
                runner: _Runner | None = None
                try:
                    if backend == "torch":
                        runner = _TorchRunner(loaded, cfg.device)
                    elif backend in ("onnxruntime", "onnxruntime-fp16"):
                        need16 = any(b in ("onnxruntime-fp16", "tensorrt") for b in backends)
                        files = cached_export(loaded, cache, fp16=need16)
                        runner = _OrtRunner(files["fp16_onnx" if backend.endswith("fp16") else "onnx"],
                                            cfg.device, cfg.threads)
                    else:
                        runner = _TrtRunner(_engine(loaded, cache, cfg.size, pairs or []))
                    _measure(row, runner, cfg, x, pairs, variant.scale, progress)
                except Exception as exc:  # noqa: BLE001 - one failing backend must not stop the others
                    logger.debug("%s/%s failed", name, backend, exc_info=True)
                    row.status = "failed"
                    row.note = "; ".join(n for n in [row.note, f"failed: {_first_line(exc)}"] if n)
                finally:
                    if runner is not None:
                        runner.close()
                yield row
            del loaded
            gc.collect()
    finally:
        torch.set_num_threads(old_threads)


def run_bench(config: BenchConfig, *, progress: Progress | None = None) -> list[BenchRow]:
    """All rows of :func:`iter_bench` as a list."""
    return list(iter_bench(config, progress=progress))


# --------------------------------------------------------------------------------------- formatting


def header_lines(machine: MachineInfo, config: BenchConfig) -> list[str]:
    """Plain-text header lines (no comment markers): machine, versions, threads and protocol."""
    v = machine.versions
    lines = [
        f"machine: {machine.platform}; CPU: {machine.cpu}; {machine.logical_cores} logical cores "
        f"({machine.usable_cores} usable); Python {machine.python}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"threads: torch {machine.torch_threads}, onnxruntime intra-op {machine.ort_threads}",
    ]
    if machine.gpu:
        lines.append(f"GPU: {machine.gpu}")
    w, h = config.size
    lines += [
        f"data: {config.data_label} (PSNR-Y: Y channel, border = scale, paper convention; "
        f"PSNR-RGB: RGB, 4-px border, NTIRE convention)",
        f"runtime: {config.device}, input 1×3×{h}×{w} (a Set5 LR image mirrored to {w}x{h}), "
        f"{config.warmup} warm-up + {config.runs} timed runs, median and mean; "
        + ("CUDA events + synchronize" if config.device == "cuda" else "time.perf_counter"),
        "complexity: FLOPs = MACs on 1×3×256×256 LR; Multi-Adds = MACs for a 1280×720 output; "
        "Acts = conv output elements; counted on the authors' structure (same network for every backend)",
        "mem: " + ("torch.cuda.max_memory_allocated during one forward (weights included)" if config.device == "cuda"
                   else "peak-RSS increase during the first forward on the runtime input (VmHWM − VmRSS, weights "
                        "excluded)") + "; MB = 2**20 bytes",
    ]
    return lines


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not np.isfinite(value) else value


def rows_to_json(rows: Sequence[BenchRow]) -> str:
    """A JSON list of row objects (every :class:`BenchRow` field; None, NaN and inf as null)."""
    data = [{k: _finite(v) for k, v in r.to_dict().items()} for r in rows]
    return json.dumps(data, indent=2, allow_nan=False)


def rows_to_csv(rows: Sequence[BenchRow]) -> str:
    """CSV with a header row of field names; None as an empty cell, floats at full precision."""
    buf = io.StringIO()
    names = [f.name for f in fields(BenchRow)]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if val is None else val) for k, val in r.to_dict().items()})
    return buf.getvalue()


def _num(x: float | int | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _pair(ours: float | int | None, theirs: float | int | None, digits: int) -> str:
    text = _num(ours, digits)
    return text if theirs is None else f"{text} ({_num(theirs, digits)})"


_MD_COLUMNS = (
    "Model", "Backend", "Precision", "Device", "PSNR-Y [dB]", "PSNR-RGB [dB]", "Params [M]", "FLOPs [G]",
    "Multi-Adds 720p [G]", "Acts [M]", "#Conv", "Mem [MB]", "Runtime median [ms]", "Runtime mean [ms]", "Note",
)


def rows_to_markdown(rows: Sequence[BenchRow], header: Sequence[str] = ()) -> str:
    """A Markdown table; ``header`` lines go above it as HTML comments. Cells read 'ours (published)'."""
    out = [f"<!-- {line.replace('--', '-')} -->" for line in header]
    out.append("| " + " | ".join(_MD_COLUMNS) + " |")
    out.append("|" + "|".join([" --- "] * 4 + [" ---: "] * 10 + [" --- "]) + "|")
    for r in rows:
        mem_pub = r.mem_mb_published if (r.device == "cuda" and r.backend == "torch") else None
        note = r.note if r.status == "ok" else (r.note or r.status)
        cells = [
            r.model, r.backend, r.precision, r.device,
            _num(r.psnr_y, 2), _num(r.psnr_rgb, 2),
            _pair(r.params_m, r.params_m_published, 3),
            _pair(r.flops_g, r.flops_g_published, 2),
            _pair(r.multiadds_720p_g, r.multiadds_720p_g_published, 2),
            _pair(r.acts_m, r.acts_m_published, 2),
            _pair(r.convs, r.convs_published, 0),
            _pair(r.mem_mb, mem_pub, 1),
            _num(r.runtime_ms_median, 1), _num(r.runtime_ms_mean, 1),
            note.replace("|", "/"),
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Cells read *ours (published)*. Published FLOPs add a little to the MACs we count: the NTIRE "
               "counter adds ReLU outputs (IMDN, RFDN, RLFN), BSRN-S's figure and the paper's Multi-Adds add conv "
               "biases (see `bsrn_edge/complexity.py`). Published memory is NTIRE's GPU figure on DIV2K and is only "
               "shown beside torch rows on CUDA.")
    return "\n".join(out) + "\n"
