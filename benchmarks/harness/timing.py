"""The one timing loop of bsrn-edge: ``warmup`` untimed calls, then ``runs`` timed calls.

Every timed figure (bsrn-bench rows, bsrn-demo, the scripts in ``benchmarks/``) comes from
:func:`time_calls`; only the clock differs. :func:`perf_counter_clock` times a call on the host;
:func:`cuda_event_clock` records CUDA events around it and synchronises, so it measures the GPU's
time for the work the call queued (copies stay outside unless the call makes them).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Clock", "Timing", "time_calls", "perf_counter_clock", "cuda_event_clock"]

# A clock runs ``fn`` once and returns how long it took, in milliseconds.
Clock = Callable[[Callable[[], object]], float]


def perf_counter_clock(fn: Callable[[], object]) -> float:
    """Wall time of one call on the host, ``time.perf_counter`` before and after, in ms."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def cuda_event_clock(torch: Any = None) -> Clock:
    """A clock that records a CUDA event before and after the call, synchronises, and returns the
    elapsed GPU time in ms (PyTorch's ``torch.cuda.Event``; ``torch`` is imported when not given)."""
    if torch is None:
        from bsrn_edge._lazy import require

        torch = require("torch")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def clock(fn: Callable[[], object]) -> float:
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))

    return clock


@dataclass(frozen=True)
class Timing:
    """The timed calls of one :func:`time_calls`, in ms, in call order (at least one)."""

    times_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.times_ms))

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.times_ms))

    @property
    def p95(self) -> float:
        """The 95th percentile, the nearest-rank sample (no interpolation)."""
        s = sorted(self.times_ms)
        return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 1, *, clock: Clock | None = None,
               cuda_events: bool = False) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times each timed by ``clock``.

    ``clock`` defaults to :func:`perf_counter_clock`; ``cuda_events=True`` uses :func:`cuda_event_clock`
    instead (give one or the other). Raises ``ValueError`` for ``runs < 1`` or ``warmup < 0``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"time_calls needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if clock is not None and cuda_events:
        raise ValueError("time_calls: pass either clock or cuda_events=True, not both")
    tick = clock or (cuda_event_clock() if cuda_events else perf_counter_clock)
    for _ in range(warmup):
        fn()
    return Timing(tuple(tick(fn) for _ in range(runs)))
