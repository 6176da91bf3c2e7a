"""Facts about the host CPU, read once here (torch-free, no side effects).

The one home of ``/proc/cpuinfo`` parsing: the ONNX Runtime backend sizes its thread pool with
:func:`physical_cores`, and the bench harness prints :func:`cpu_model` above every table.
"""

from __future__ import annotations

import os
import platform

__all__ = ["cpu_model", "physical_cores", "usable_cores"]

_CPUINFO = "/proc/cpuinfo"


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


def physical_cores() -> int:
    """Physical cores usable by this process (hyper-threads share one FPU, so more threads only add contention).

    Counts distinct (physical id, core id) pairs in ``/proc/cpuinfo``, capped by :func:`usable_cores`;
    where that file is missing, half the logical cores (at least 1).
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
    return max(1, (os.cpu_count() or 2) // 2)
