"""Helpers shared by the benchmark scripts: machine description, timing, exported models, real frames."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np


def machine_line() -> str:
    import onnxruntime as ort

    from bsrn_edge.bench import cpu_model

    cpu = cpu_model()
    return (f"machine: {cpu}, {len(os.sched_getaffinity(0))} usable cores, {platform.platform()}; "
            f"python {platform.python_version()}, numpy {np.__version__}, onnxruntime {ort.__version__}")


def time_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def real_frame(width: int, height: int) -> np.ndarray:
    """A real-content uint8 frame: a bundled Set5 LR image mirrored out to the size (never noise)."""
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.imageio import read_rgb
    from bsrn_edge.pixels import pad_to_min

    img = read_rgb(sorted(bundled_set5().glob("*_LR.png"))[0])
    big, _ = pad_to_min(img, max(width, height))
    return np.ascontiguousarray(big[:height, :width])


def exported_onnx(name: str, cache: Path | None = None, fp16: bool = False) -> Path:
    """The ONNX of bundled model ``name`` from bsrn-bench's export cache (exported on a miss; needs torch)."""
    from bsrn_edge import load_model
    from bsrn_edge.bench import cached_export, default_cache_dir

    files = cached_export(load_model(name), cache or default_cache_dir(), fp16)
    return files["fp16_onnx" if fp16 else "onnx"]
