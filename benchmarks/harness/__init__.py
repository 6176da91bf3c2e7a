"""bsrn-bench and bsrn-demo: the application layer over bsrn-edge (installed as ``bsrn_edge.bench``).

The source lives in ``benchmarks/harness/`` beside the benchmark scripts that use it; see
``docs/architecture.md``. It may import every layer below it (core, runtime, export); nothing below
imports it. Modules, one job each:

- :mod:`.config`: :class:`BenchConfig` and the parsers of its command-line values;
- :mod:`.rows`: the row schema :class:`BenchRow`;
- :mod:`.machine`: :class:`MachineInfo` printed above every table;
- :mod:`.timing`: the one timing loop (:func:`time_calls`) and its clocks;
- :mod:`.memory`: peak-RSS measurement of one call;
- :mod:`.inputs`: real-image timing inputs;
- :mod:`.runners`: one runner per backend;
- :mod:`.artifacts`: the export / engine cache;
- :mod:`.run`: :func:`iter_bench`;
- :mod:`.report`: JSON, CSV and Markdown output;
- :mod:`.cli` (``bsrn-bench``) and :mod:`.demo` (``bsrn-demo``).

Rows follow the NTIRE Efficient SR table: PSNR on Y with a border of ``scale`` pixels (the paper's
convention) and on RGB with a 4-pixel border (NTIRE's), complexity counted by
:mod:`bsrn_edge.complexity` on the authors' structure beside the published figures, peak memory and
runtime. Memory on CUDA (torch) is ``torch.cuda.max_memory_allocated()`` of one forward, weights
included, as NTIRE did; on the CPU it is the peak-RSS increase of one forward, weights excluded.
"""

from __future__ import annotations

from .artifacts import cached_export, default_cache_dir
from .config import (
    BACKENDS,
    DEFAULT_BACKENDS,
    DEFAULT_MODELS,
    PRECISION,
    BenchConfig,
    parse_backends,
    parse_models,
    parse_size,
)
from .inputs import bench_input, real_frame
from .machine import MachineInfo, machine_info
from .memory import cpu_peak_rss_increase_mb
from .report import header_lines, rows_to_csv, rows_to_json, rows_to_markdown
from .rows import JSON_KEYS, BenchRow
from .run import Progress, iter_bench
from .timing import Timing, cuda_event_clock, perf_counter_clock, time_calls

__all__ = [
    "BACKENDS",
    "DEFAULT_MODELS",
    "DEFAULT_BACKENDS",
    "PRECISION",
    "JSON_KEYS",
    "BenchConfig",
    "BenchRow",
    "MachineInfo",
    "Progress",
    "Timing",
    "iter_bench",
    "parse_size",
    "parse_models",
    "parse_backends",
    "machine_info",
    "bench_input",
    "real_frame",
    "cached_export",
    "default_cache_dir",
    "cpu_peak_rss_increase_mb",
    "time_calls",
    "perf_counter_clock",
    "cuda_event_clock",
    "header_lines",
    "rows_to_json",
    "rows_to_csv",
    "rows_to_markdown",
]
