"""Facts about the host CPU, read once here (torch-free, no side effects).

The one home of ``/proc/cpuinfo`` parsing: the ONNX Runtime backend sizes its thread pool with
:func:`physical_cores`, the bench harness prints :func:`cpu_model` and :func:`cpu_isa` above every table, and
``backend="auto"`` keys its measured choice of engine on them and on :func:`package_version`.
"""

from __future__ import annotations

import os
import platform

__all__ = ["cpu_model", "cpu_flags", "cpu_isa", "ISA_FLAGS", "physical_cores", "usable_cores", "package_version"]

_CPUINFO = "/proc/cpuinfo"
#: the CPU flags that decide which inference kernels run (x86 vector, dot-product, BF16/FP16 and AMX; ARM's)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
             "amx_int8", "amx_fp16", "asimd", "asimddp", "sve", "bf16", "i8mm")


def usable_cores() -> int:
    """Logical cores this process may run on (its CPU affinity where the OS reports it); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``; elsewhere the platform's processor or machine name."""
    try:
        with open(_CPUINFO) as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on ARM) from ``/proc/cpuinfo``; empty elsewhere."""
    try:
        with open(_CPUINFO) as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_isa() -> str:
    """The :data:`ISA_FLAGS` this CPU has, space-separated (e.g. ``"avx2 fma avx512f avx512_vnni avx512_bf16"``)."""
    flags = cpu_flags()
    return " ".join(f for f in ISA_FLAGS if f in flags) or "none of " + "/".join(ISA_FLAGS[:3])


def package_version(module: str) -> str:
    """The installed distribution's version for ``module`` (onnxruntime-gpu and tensorrt-cu12 count),
    ``"absent"`` when none is installed."""
    from importlib.metadata import PackageNotFoundError, version

    dists = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorrt": ("tensorrt", "tensorrt-cu12")}
    for dist in dists.get(module, (module,)):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "absent"


def physical_cores() -> int:
    """Physical cores usable by this process (hyper-threads share one FPU, so more threads only add contention).

    Counts distinct (physical id, core id) pairs in ``/proc/cpuinfo``, capped by :func:`usable_cores`; where the
    file is missing or names no cores (ARM boards: Jetson, Raspberry Pi, which have no hyper-threads), the
    usable cores.
    """
    try:
        with open(_CPUINFO) as fh:
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
                return min(len(pairs), usable_cores())
    except OSError:
        pass
    return usable_cores()
