"""Helpers shared by the benchmark scripts: machine description and exported models.

Timing (:func:`bsrn_edge.bench.time_calls`) and real frames (:func:`bsrn_edge.bench.real_frame`) come from
the bench harness, so every script measures the same way bsrn-bench does.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from bsrn_edge.bench import real_frame, time_calls  # noqa: F401 - re-exported for the scripts
from bsrn_edge.hostinfo import cpu_isa, cpu_model, package_version, usable_cores


def machine_line() -> str:
    """The CPU (model and the ISA flags that decide the kernels), cores, platform and engine versions."""
    ov = package_version("openvino")
    return (f"machine: {cpu_model()} ({cpu_isa()}), {usable_cores()} usable cores, {platform.platform()}; "
            f"python {platform.python_version()}, numpy {np.__version__}, onnxruntime {package_version('onnxruntime')}"
            + (f", openvino {ov}" if ov != "absent" else ""))


def exported_onnx(name: str, cache: Path | None = None, fp16: bool = False) -> Path:
    """The ONNX of bundled model ``name`` from bsrn-bench's export cache (exported on a miss; needs torch)."""
    from bsrn_edge import load_model
    from bsrn_edge.bench import cached_export, default_cache_dir

    files = cached_export(load_model(name), cache or default_cache_dir(), fp16)
    return files["fp16_onnx" if fp16 else "onnx"]
