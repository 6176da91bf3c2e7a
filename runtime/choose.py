"""``backend="auto"`` on an FP32 .onnx on the CPU: the installed engine and precision that run this model fastest
here within its accuracy budget, timed once per model and machine and remembered under the cache root.

Candidates: ONNX Runtime FP32 (the default); OpenVINO FP32; OpenVINO BF16 where the CPU has native BF16 and the
export measured at most :data:`~bsrn_edge.meta.BF16_MAX_LOSS_DB` lost; OpenVINO INT8 where a ``.int8.onnx``
(written only when its own validation passed) is beside the model. With one engine installed nothing is timed.
Another engine wins only when it is at least ``MARGIN`` faster than the default, so noise never flips the choice.
``$BSRN_EDGE_ENGINES`` (comma-separated, e.g. ``onnxruntime``) limits the engines considered, as if only those were
installed (read at a model's first use in a process).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge._lazy import available
from bsrn_edge.artifacts import sibling
from bsrn_edge.cache import read_record, record_key, write_record
from bsrn_edge.checkpoint import sha256_file
from bsrn_edge.hostinfo import cpu_isa, cpu_model, package_version
from bsrn_edge.meta import BF16_LOSS, BF16_MAX_LOSS_DB, INT8_LOSS, INT8_MAX_LOSS_DB

__all__ = ["choose", "candidates", "pick", "DEFAULT", "MARGIN"]

log = logging.getLogger(__name__)

Engine = tuple[str, str]  # (backend, precision)
DEFAULT: Engine = ("onnxruntime", "fp32")
ALL_ENGINES = (DEFAULT, ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))
MARGIN, ROUNDS = 1.1, 3


def _allowed(engine: str) -> bool:
    return engine in (os.environ.get("BSRN_EDGE_ENGINES") or engine).replace(" ", "").split(",")


def candidates(path: Path) -> list[Engine]:
    """The (backend, precision) pairs that may run ``path`` here, the default first."""
    out = [DEFAULT] if available("onnxruntime") and _allowed("onnxruntime") else []
    if available("openvino") and _allowed("openvino"):
        from .backends.openvino import native_bf16
        from .model_info import read_onnx_props

        out.append(("openvino", "fp32"))
        if native_bf16() and float(read_onnx_props(path).get(BF16_LOSS, "inf")) <= BF16_MAX_LOSS_DB:
            out.append(("openvino", "bf16"))
        int8 = sibling(path, precision="int8")
        if int8.is_file() and float(read_onnx_props(int8).get(INT8_LOSS, "inf")) <= INT8_MAX_LOSS_DB:
            out.append(("openvino", "int8"))
    return out


def pick(medians: dict[Engine, float], tile: int) -> tuple[Engine, str]:
    """The fastest engine (the default unless another is ``MARGIN`` faster) and one line saying why."""
    fastest = min(medians, key=medians.__getitem__)
    best = DEFAULT if DEFAULT in medians and medians[fastest] * MARGIN > medians[DEFAULT] else fastest
    timed = ", ".join(f"{b} {p} {1e3 * t:.0f} ms" for (b, p), t in sorted(medians.items(), key=lambda kv: kv[1]))
    head = (f"auto kept {best[0]} {best[1]}, no other engine was {MARGIN:g}× faster" if best == DEFAULT else
            f"auto picked {best[0]} {best[1]}" + (f", {medians[DEFAULT] / medians[best]:.2f}× {DEFAULT[0]} {DEFAULT[1]}"
                                                  if DEFAULT in medians else ""))
    return best, f"{head}: {timed} for a {tile}×{tile} tile on {cpu_model()}, measured {datetime.date.today().isoformat()}"


def _time_engines(path: Path, engines: list[Engine], threads: int | None) -> tuple[dict[Engine, float], int]:
    """Median seconds of each engine on one tile of the model's own size, the engines interleaved; and the side.
    An engine that cannot open or run this model (OpenVINO compiles on first use) is dropped with a warning."""
    from .open import open_backend

    opened: dict[Engine, Any] = {}
    times: dict[Engine, list[float]] = {}
    try:
        for e in engines:
            try:
                opened[e] = open_backend(path, e[0], "cpu", e[1], threads)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - an optional engine that cannot open this model is not a candidate
                log.warning("bsrn-edge: %s %s cannot run %s (%s); not a candidate", *e, path.name, exc)
        if not opened:
            return {}, 0
        meta = next(iter(opened.values())).meta
        ramp = np.linspace(0.0, 1.0, meta.tile * meta.tile * 3, dtype=np.float32).reshape(meta.tile, meta.tile, 3)
        x = (ramp * 255).astype(np.uint8)[None] if meta.pixels == "uint8" else ramp.transpose(2, 0, 1)[None].copy()
        times = {e: [] for e in opened}
        for k in range(ROUNDS + 1):  # round 0 compiles and warms up
            for e in [e for e in opened if e in times]:
                t0 = time.perf_counter()
                try:
                    opened[e].infer(x)
                except Exception as exc:  # noqa: BLE001 - as above, found on the first run
                    log.warning("bsrn-edge: %s %s failed on %s (%s); not a candidate", *e, path.name, exc)
                    del times[e]
                    continue
                if k:
                    times[e].append(time.perf_counter() - t0)
        return {e: statistics.median(t) for e, t in times.items()}, meta.tile
    finally:
        for backend in opened.values():
            backend.close()


_TIMING = threading.Lock()  # two threads meeting a model at once time it once, and not against each other


@functools.lru_cache(maxsize=32)
def _choose(path: Path, stamp: tuple[int, int], threads: int | None) -> tuple[str, str, str]:
    installed = [m for m in ("onnxruntime", "openvino") if package_version(m) != "absent" and _allowed(m)]
    if len(installed) < 2:  # one engine: nothing to measure
        engines = candidates(path)
        b, p = next((e for e in engines if e[1] == "bf16"), engines[0] if engines else DEFAULT)
        return b, p, f"auto: {b} {p}, the only engine here" + (" (BF16 validated at export)" if p == "bf16" else "")
    int8 = sibling(path, precision="int8")
    key = record_key(cpu=cpu_model(), isa=cpu_isa(), threads=threads, model=sha256_file(path),
                     int8=sha256_file(int8) if int8.is_file() else None, versions={m: package_version(m) for m in installed})
    with _TIMING:
        record = read_record("engine-choice", key)
        if record is not None and _valid(record):
            return record["backend"], record["precision"], record["why"] + "; cached"
        engines = candidates(path)
        if len(engines) < 2:  # the other engine does not import, or cannot run this model
            b, p = engines[0] if engines else DEFAULT
            return b, p, f"auto: {b} {p}, the only candidate here"
        log.warning("bsrn-edge: timing %s once on this CPU (%s); the choice is kept under the cache root",
                    path.name, ", ".join(" ".join(e) for e in engines))
        medians, tile = _time_engines(path, engines, threads)
        if len(medians) < 2:  # the others failed on this model: nothing to compare, and nothing worth keeping
            b, p = next(iter(medians), DEFAULT)
            return b, p, f"auto: {b} {p}, the only engine that ran {path.name} here"
        (b, p), why = pick(medians, tile)
        record = {"backend": b, "precision": p, "why": why, "medians_s": {" ".join(e): t for e, t in medians.items()}}
        write_record("engine-choice", key, record)
    return b, p, why


def _valid(record: Any) -> bool:
    """A cached choice this version can use (a hand-edited or older record is measured again)."""
    return (isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("backend", "precision", "why"))
            and (record["backend"], record["precision"]) in ALL_ENGINES)


def choose(path: Path, threads: int | None = None) -> tuple[str, str, str]:
    """(backend, precision, why) for ``path``; measured on first use, then read from the cache (once per process)."""
    st = path.stat()
    return _choose(path.resolve(), (st.st_mtime_ns, st.st_size), threads)
