"""The machine a bench ran on: :class:`MachineInfo`, printed above every table."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from bsrn_edge._lazy import available
from bsrn_edge.hostinfo import cpu_isa, cpu_model, package_version, physical_cores, usable_cores

from .config import BenchConfig

__all__ = ["MachineInfo", "machine_info", "package_version"]


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
    isa: str = ""  # the CPU flags that decide which kernels run (hostinfo.ISA_FLAGS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_info(config: BenchConfig | None = None) -> MachineInfo:
    """Platform, CPU model (from ``/proc/cpuinfo``), core counts, library versions and thread counts."""
    cfg = config or BenchConfig()
    torch_threads = ort_threads = None
    gpu = None
    if available("torch"):
        import torch

        torch_threads = cfg.threads or torch.get_num_threads()
        if cfg.device == "cuda" and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name()
    if available("onnxruntime"):
        ort_threads = cfg.threads or physical_cores()
    versions = {m: package_version(m) for m in ("bsrn-edge", "numpy", "torch", "onnxruntime", "onnx")}
    for engine in ("tensorrt", "openvino"):
        if any(b.startswith(engine) for b in cfg.backends):
            versions[engine] = package_version(engine)
    return MachineInfo(
        platform=platform.platform(),
        cpu=cpu_model(),
        logical_cores=os.cpu_count() or 1,
        usable_cores=usable_cores(),
        python=platform.python_version(),
        versions=versions,
        torch_threads=torch_threads,
        ort_threads=ort_threads,
        gpu=gpu,
        isa=cpu_isa(),
    )
