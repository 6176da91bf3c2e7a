"""The bench itself: :func:`iter_bench` yields one :class:`~bsrn_edge.bench.rows.BenchRow` per model × backend.

Per row, in this order: memory of one forward pass on the timing input (before warm-up), then the
runtime (:func:`~bsrn_edge.bench.timing.time_calls`: ``warmup`` untimed calls, ``runs`` timed ones,
median and mean), then fidelity with :func:`bsrn_edge.evaluate.evaluate` on the pairs of the data
folder at the model's scale. A failing row never stops the others.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.datasets import Pair, bundled_set5, find_pairs
from bsrn_edge.errors import InputError
from bsrn_edge.variants import VARIANTS

from .artifacts import cached_engine, cached_export, default_cache_dir, ov_unavailable, trt_unavailable
from .config import PRECISION, BenchConfig, parse_backends, parse_models
from .inputs import bench_input
from .rows import BenchRow
from .runners import OrtRunner, OvRunner, Runner, TorchRunner, TrtRunner
from .timing import time_calls

if TYPE_CHECKING:  # pragma: no cover
    from bsrn_edge.checkpoint import LoadedModel

__all__ = ["Progress", "iter_bench", "complexity_fields"]

logger = logging.getLogger(__name__)

# Wraps an iterable of pairs with a description ("bsrn-s-x4/torch"); the CLI passes a tqdm bar.
Progress = Callable[[Iterable[Pair], str], Iterable[Pair]]


@dataclass(frozen=True)
class _Session:
    """What every row of one :func:`iter_bench` call shares."""

    cfg: BenchConfig
    backends: tuple[str, ...]
    cache: Path
    data: Path
    x: np.ndarray
    progress: Progress | None


@dataclass
class _Model:
    """One model as its rows see it: loaded (or why not), its complexity fields and its LR/HR pairs."""

    name: str
    loaded: "LoadedModel | None" = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    pairs: list[Pair] | None = None
    pairs_note: str = ""


def complexity_fields(loaded: "LoadedModel") -> dict[str, Any]:
    """The row's complexity columns for ``loaded`` (ours and, where published, the published ones)."""
    from bsrn_edge.complexity import PUBLISHED, count_complexity

    c = count_complexity(loaded.model)
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


def _prepare_model(name: str, s: _Session) -> _Model:
    """Load ``name`` and count it once for all its rows; find its pairs. Failures become notes."""
    from bsrn_edge.checkpoint import load_model

    m = _Model(name)
    try:
        m.loaded = load_model(name)
        m.extra = complexity_fields(m.loaded)
    except Exception as exc:  # noqa: BLE001 - reported on every row of this model
        logger.debug("loading %s failed", name, exc_info=True)
        m.loaded, m.error = None, f"model failed to load or count: {_first_line(exc)}"
    scale = VARIANTS[name].scale
    try:
        m.pairs = find_pairs(s.data, scale)
    except InputError:
        m.pairs_note = f"no ×{scale} pairs in {s.cfg.data_label}: PSNR not measured"
    return m


def _make_runner(backend: str, loaded: "LoadedModel", s: _Session, pairs: Sequence[Pair]) -> Runner:
    if backend == "torch":
        return TorchRunner(loaded, s.cfg.device)
    need16 = any(b in ("onnxruntime-fp16", "tensorrt") for b in s.backends)
    if backend in ("onnxruntime", "onnxruntime-fp16"):
        files = cached_export(loaded, s.cache, fp16=need16)
        return OrtRunner(files["fp16_onnx" if backend.endswith("fp16") else "onnx"], s.cfg.device, s.cfg.threads)
    if backend.startswith("openvino"):
        int8 = backend == "openvino-int8"
        files = cached_export(loaded, s.cache, fp16=need16, int8=int8)
        return OvRunner(files["int8_onnx" if int8 else "onnx"], PRECISION[backend].replace("int8", "fp32"), s.cfg.threads)
    return TrtRunner(cached_engine(loaded, s.cache, s.cfg.size, pairs))


def _measure(row: BenchRow, runner: Runner, s: _Session, pairs: Sequence[Pair] | None) -> None:
    """Fill ``row``'s memory, runtime and fidelity columns by running ``runner``."""
    from bsrn_edge.evaluate import evaluate

    cfg = s.cfg
    call = runner.forward(s.x)
    row.mem_mb, mem_note = runner.memory_mb(call, cfg.device)
    timing = time_calls(call, cfg.runs, cfg.warmup, clock=runner.clock)
    row.runtime_ms_median, row.runtime_ms_mean = timing.median, timing.mean
    if pairs:
        desc = f"{row.model}/{row.backend}"
        wrap = (lambda it: s.progress(it, desc)) if s.progress is not None else None
        scores = evaluate(runner.upscale, list(pairs), row.scale or 1, ssim=False, progress=wrap)
        row.psnr_y, row.psnr_rgb, row.images = scores.psnr_y, scores.psnr_rgb, len(scores.images)
    row.add_note(runner.note, mem_note)


def _row(m: _Model, backend: str, s: _Session) -> BenchRow:
    """One finished row: measured, skipped (backend absent here) or failed (with the first error line)."""
    cfg, variant = s.cfg, VARIANTS[m.name]
    row = BenchRow(model=m.name, backend=backend, precision=PRECISION[backend], device=cfg.device,
                   scale=variant.scale, size=cfg.size_label, runs=cfg.runs, warmup=cfg.warmup, **m.extra)
    row.note = m.pairs_note
    if m.loaded is None:
        row.status, row.note = "failed", f"failed: {m.error}"
        return row
    reason = (trt_unavailable(cfg.device) if backend == "tensorrt" else
              ov_unavailable(backend, cfg.device) if backend.startswith("openvino") else None)
    if reason is not None:
        row.status, row.note = "skipped", f"skipped: {reason}"
        return row
    runner: Runner | None = None
    try:
        runner = _make_runner(backend, m.loaded, s, m.pairs or [])
        _measure(row, runner, s, m.pairs)
    except Exception as exc:  # noqa: BLE001 - one failing backend must not stop the others
        logger.debug("%s/%s failed", m.name, backend, exc_info=True)
        row.status = "failed"
        row.add_note(f"failed: {_first_line(exc)}")
    finally:
        if runner is not None:
            runner.close()
    return row


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` (when given) inside the block, restored after it."""
    torch = require("torch")
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def iter_bench(config: BenchConfig, *, progress: Progress | None = None) -> Iterator[BenchRow]:
    """Yield one row per model × backend, model by model; a failing row never stops the others.

    Loads each model once (for the torch backend and the complexity count) and releases it before the next.
    ``progress`` wraps the fidelity loop of each row (the CLI passes a tqdm bar).
    """
    cfg = config.validate()
    s = _Session(
        cfg=cfg,
        backends=parse_backends(cfg.backends),
        cache=Path(cfg.cache_dir) if cfg.cache_dir is not None else default_cache_dir(),
        data=Path(cfg.data) if cfg.data is not None else bundled_set5(),
        x=bench_input(cfg.size),
        progress=progress,
    )
    with _torch_threads(cfg.threads):
        for name in parse_models(cfg.models):
            m = _prepare_model(name, s)
            for backend in s.backends:
                yield _row(m, backend, s)
            del m
            gc.collect()
