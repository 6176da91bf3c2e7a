"""bsrn-demo: the README's first command, end to end on bundled files.

1. export the bundled BSRN-S ×4 checkpoint to a validated ONNX (FP32 + audited FP16);
2. upscale a bundled Set5 image with the torch-free runtime and save it;
3. print a short bench table: Set5 ×4 PSNR and the median latency of a 320×180 → 1280×720 frame.

Exit status: 0 on success, 2 for bad input or a failed step, 3 for a missing dependency.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bsrn_edge.errors import BsrnEdgeError, MissingDependencyError

from .inputs import real_frame
from .timing import time_calls

if TYPE_CHECKING:  # pragma: no cover
    from bsrn_edge.export.pipeline import ExportResult

MODEL = "bsrn-s-x4"
FRAME = (320, 180)  # LR width, height: a 1280×720 output at ×4

# (label, Set5 PSNR-Y in dB, median ms for one frame)
Row = tuple[str, float, float]


def export_step(out: Path) -> "ExportResult":
    """Step 1: export BSRN-S ×4 (FP32 + FP16) into ``out`` and print the validation lines."""
    from bsrn_edge.export.pipeline import ExportOptions, export_checkpoint

    print(f"== 1. export {MODEL}", flush=True)
    res = export_checkpoint(MODEL, out, ExportOptions(fp16=True, force=True), report=print)
    for r in res.validation:
        print(f"   {r.artifact}: max |ONNX-PyTorch| {r.max_abs_diff:.2e}, PSNR-Y {r.psnr_onnx:.3f} dB, "
              f"{'pass' if r.passed else 'FAIL'}")
    return res


def upscale_step(onnx: Path, out: Path) -> Path:
    """Step 2: upscale a bundled Set5 LR image with the runtime (no PyTorch inside); return the file written."""
    from bsrn_edge.datasets import bundled_set5, find_pairs
    from bsrn_edge.imageio import read_rgb, write_image
    from bsrn_edge.runtime import Upscaler

    print("== 2. upscale a bundled image with the runtime (no PyTorch inside)", flush=True)
    pair = find_pairs(bundled_set5(), 4)[2]
    lr = read_rgb(pair.lr)
    up = Upscaler(onnx)
    sr = up.upscale(lr)
    dest = out / f"{pair.name}_x4.png"
    write_image(sr, dest, "PNG")
    print(f"   {pair.lr.name} {lr.shape[1::-1]} → {dest} {sr.shape[1::-1]} on {up.backend_name}")
    return dest


def bench_rows(res: "ExportResult", runs: int) -> list[Row]:
    """Step 3's rows: PyTorch fp32 eager, then ONNX Runtime fp32 and fp16 on the exported files."""
    from bsrn_edge import load_model
    from bsrn_edge._lazy import require
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn
    from bsrn_edge.pixels import to_nchw
    from bsrn_edge.runtime import Upscaler

    torch = require("torch")
    frame = real_frame(*FRAME)
    model = load_model(MODEL).model
    x = torch.from_numpy(to_nchw(frame))
    with torch.inference_mode():
        t_torch = time_calls(lambda: model(x), runs).median
    rows = [("PyTorch fp32 eager", evaluate(torch_upscale_fn(model), bundled_set5(), 4, ssim=False).psnr_y, t_torch)]
    for label, path in (("ONNX Runtime fp32", res.files["onnx"]), ("ONNX Runtime fp16", res.files["fp16_onnx"])):
        u = Upscaler(path, tile=None)
        t = time_calls(lambda: u.upscale(frame), runs).median
        rows.append((label, evaluate(u.backend.infer, bundled_set5(), 4, ssim=False).psnr_y, t))
    return rows


def print_table(rows: list[Row]) -> None:
    """Step 3's table; the speed-up is against the first row (PyTorch)."""
    from bsrn_edge._lazy import require
    from bsrn_edge.hostinfo import cpu_model

    torch = require("torch")
    w, h = FRAME
    print(f"   machine: {cpu_model()} ({platform.machine()}), {torch.get_num_threads()} torch threads")
    print(f"| {MODEL} backend | Set5 PSNR-Y [dB] | {w}×{h}→{4 * w}×{4 * h} median [ms] | speed-up vs PyTorch |")
    print("| --- | --- | --- | --- |")
    t_torch = rows[0][2]
    for label, p, t in rows:
        print(f"| {label} | {p:.3f} | {t:.0f} | {t_torch / t:.2f}× |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsrn-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default ./demo_out)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per row, after one warm-up (median reported)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, got {args.runs}")
    try:
        res = export_step(args.out)
        upscale_step(res.files["onnx"], args.out)
        print(f"== 3. bench (Set5 ×4, Y-PSNR border 4; latency for a {FRAME[0]}×{FRAME[1]} frame)", flush=True)
        print_table(bench_rows(res, args.runs))
    except MissingDependencyError as exc:
        print(f"bsrn-demo: error: {exc}", file=sys.stderr)
        return 3
    except BsrnEdgeError as exc:
        print(f"bsrn-demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
