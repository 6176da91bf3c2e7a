"""The bench's three output formats (JSON, CSV, Markdown) and the header lines printed above them."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import fields
from typing import Any, Sequence

from .config import BenchConfig
from .machine import MachineInfo
from .rows import BenchRow

__all__ = ["header_lines", "rows_to_json", "rows_to_csv", "rows_to_markdown"]


def header_lines(machine: MachineInfo, config: BenchConfig) -> list[str]:
    """Plain-text header lines (no comment markers): machine, versions, threads and protocol."""
    v = machine.versions
    lines = [
        f"machine: {machine.platform}; CPU: {machine.cpu} ({machine.isa or 'flags unknown'}); {machine.logical_cores} logical cores "
        f"({machine.usable_cores} usable); Python {machine.python}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"threads: torch {machine.torch_threads}, onnxruntime intra-op {machine.ort_threads}"
        + (f", openvino {machine.ort_threads}" if "openvino" in machine.versions else ""),
    ]
    if machine.gpu:
        lines.append(f"GPU: {machine.gpu}")
    w, h = config.size
    lines += [
        f"data: {config.data_label} (PSNR-Y: Y channel, border = scale, paper convention; "
        f"PSNR-RGB: RGB, 4-px border, NTIRE convention)",
        f"runtime: {config.device}, input 1×3×{h}×{w} (a Set5 LR image mirrored to {w}x{h}), "
        f"{config.warmup} warm-up + {config.runs} timed runs, median and mean; "
        + ("CUDA events + synchronize" if config.device == "cuda" else "time.perf_counter"),
        "complexity: FLOPs = MACs on 1×3×256×256 LR; Multi-Adds = MACs for a 1280×720 output; "
        "Acts = conv output elements; counted on the authors' structure (same network for every backend)",
        "mem: " + ("torch.cuda.max_memory_allocated during one forward (weights included)" if config.device == "cuda"
                   else "peak-RSS increase during the first forward on the runtime input (VmHWM − VmRSS, weights "
                        "excluded)") + "; MB = 2**20 bytes",
    ]
    return lines


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def rows_to_json(rows: Sequence[BenchRow]) -> str:
    """A JSON list of row objects (every :class:`BenchRow` field; None, NaN and inf as null)."""
    data = [{k: _finite(v) for k, v in r.to_dict().items()} for r in rows]
    return json.dumps(data, indent=2, allow_nan=False)


def rows_to_csv(rows: Sequence[BenchRow]) -> str:
    """CSV with a header row of field names; None as an empty cell, floats at full precision."""
    buf = io.StringIO()
    names = [f.name for f in fields(BenchRow)]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if val is None else val) for k, val in r.to_dict().items()})
    return buf.getvalue()


def _num(x: float | int | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _pair(ours: float | int | None, theirs: float | int | None, digits: int) -> str:
    text = _num(ours, digits)
    return text if theirs is None else f"{text} ({_num(theirs, digits)})"


_MD_COLUMNS = (
    "Model", "Backend", "Precision", "Device", "PSNR-Y [dB]", "PSNR-RGB [dB]", "Params [M]", "FLOPs [G]",
    "Multi-Adds 720p [G]", "Acts [M]", "#Conv", "Mem [MB]", "Runtime median [ms]", "Runtime mean [ms]", "Note",
)

_MD_FOOTNOTE = (
    "Cells read *ours (published)*. Published FLOPs add a little to the MACs we count: the NTIRE "
    "counter adds ReLU outputs (IMDN, RFDN, RLFN), BSRN-S's figure and the paper's Multi-Adds add conv "
    "biases (see `bsrn_edge/complexity.py`). Published memory is NTIRE's GPU figure on DIV2K and is only "
    "shown beside torch rows on CUDA."
)


def _markdown_cells(r: BenchRow) -> list[str]:
    mem_pub = r.mem_mb_published if (r.device == "cuda" and r.backend == "torch") else None
    note = r.note if r.status == "ok" else (r.note or r.status)
    return [
        r.model, r.backend, r.precision, r.device,
        _num(r.psnr_y, 2), _num(r.psnr_rgb, 2),
        _pair(r.params_m, r.params_m_published, 3),
        _pair(r.flops_g, r.flops_g_published, 2),
        _pair(r.multiadds_720p_g, r.multiadds_720p_g_published, 2),
        _pair(r.acts_m, r.acts_m_published, 2),
        _pair(r.convs, r.convs_published, 0),
        _pair(r.mem_mb, mem_pub, 1),
        _num(r.runtime_ms_median, 1), _num(r.runtime_ms_mean, 1),
        note.replace("|", "/"),
    ]


def rows_to_markdown(rows: Sequence[BenchRow], header: Sequence[str] = ()) -> str:
    """A Markdown table; ``header`` lines go above it as HTML comments. Cells read 'ours (published)'."""
    out = [f"<!-- {line.replace('--', '-')} -->" for line in header]
    out.append("| " + " | ".join(_MD_COLUMNS) + " |")
    out.append("|" + "|".join([" --- "] * 4 + [" ---: "] * 10 + [" --- "]) + "|")
    out += ["| " + " | ".join(_markdown_cells(r)) + " |" for r in rows]
    out += ["", _MD_FOOTNOTE]
    return "\n".join(out) + "\n"
