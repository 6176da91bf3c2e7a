"""Peak memory of one call on the CPU, from the process's resident set (Linux ``/proc``; ``getrusage`` elsewhere)."""

from __future__ import annotations

import gc
import platform
import resource
from typing import Callable

__all__ = ["MIB", "cpu_peak_rss_increase_mb", "proc_status_kb"]

MIB = float(2**20)  # NTIRE's MB: ``/ 1024 ** 2``


def proc_status_kb(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, …); None where it cannot be read."""
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

    Linux: ``VmHWM`` after the call minus ``VmRSS`` before it, after a ``gc`` pass, ``malloc_trim`` and a
    reset of the peak just before; memory the call touches counts even when it is freed before it
    returns. Elsewhere the ``ru_maxrss`` delta, a lower bound when the process was bigger before; the
    note then says so. Never negative.
    """
    gc.collect()
    _malloc_trim()
    if _reset_peak_rss():
        base = proc_status_kb("VmRSS")
        if base is not None:
            call()
            peak = proc_status_kb("VmHWM")
            if peak is not None:
                return max(0, peak - base) / 1024.0, ""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    unit = 1.0 if platform.system() == "Darwin" else 1024.0  # bytes on macOS, kB on Linux
    return max(0, after - before) * unit / MIB, "mem: ru_maxrss delta, a lower bound"
