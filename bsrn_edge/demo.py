"""bsrn-demo: the README's first command, end to end on bundled files.

1. export the bundled BSRN-S ×4 checkpoint to a validated ONNX (FP32 + audited FP16);
2. upscale a bundled Set5 image with the torch-free runtime and save it;
3. print a short bench table: Set5 ×4 PSNR and the median latency of a 320×180 → 1280×720 frame.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .errors import BsrnEdgeError


def _median_ms(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsrn-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default ./demo_out)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per row (median reported)")
    args = ap.parse_args(argv)
    try:
        import torch

        from . import load_model
        from .datasets import bundled_set5, find_pairs
        from .evaluate import evaluate, torch_upscale_fn
        from .export.pipeline import ExportOptions, export_checkpoint
        from .imageio import read_rgb
        from .runtime import Upscaler
        from .runtime.cli import write_image

        print("== 1. export bsrn-s-x4", flush=True)
        res = export_checkpoint("bsrn-s-x4", args.out, ExportOptions(fp16=True, force=True), report=print)
        for r in res.validation:
            print(f"   {r.artifact}: max |ONNX-PyTorch| {r.max_abs_diff:.2e}, PSNR-Y {r.psnr_onnx:.3f} dB, "
                  f"{'pass' if r.passed else 'FAIL'}")

        print("== 2. upscale a bundled image with the runtime (no PyTorch inside)", flush=True)
        pair = find_pairs(bundled_set5(), 4)[2]
        up = Upscaler(res.files["onnx"])
        sr = up.upscale(read_rgb(pair.lr))
        dest = args.out / f"{pair.name}_x4.png"
        write_image(sr, dest, "PNG", None)
        print(f"   {pair.lr.name} {read_rgb(pair.lr).shape[1::-1]} → {dest} {sr.shape[1::-1]} on {up.backend_name}")

        print("== 3. bench (Set5 ×4, Y-PSNR border 4; latency for a 320×180 frame)", flush=True)
        lr = read_rgb(find_pairs(bundled_set5(), 4)[0].lr)
        frame = np.ascontiguousarray(np.tile(lr, (2, 3, 1))[:180, :320])
        model = load_model("bsrn-s-x4").model
        x = torch.from_numpy(frame.transpose(2, 0, 1)[None].astype(np.float32) / 255)
        rows = []
        with torch.inference_mode():
            t_torch = _median_ms(lambda: model(x), args.runs)
        rows.append(("PyTorch fp32 eager", evaluate(torch_upscale_fn(model), bundled_set5(), 4, ssim=False).psnr_y, t_torch))
        for label, path in (("ONNX Runtime fp32", res.files["onnx"]), ("ONNX Runtime fp16", res.files["fp16_onnx"])):
            u = Upscaler(path, tile=None)
            t = _median_ms(lambda: u.upscale(frame), args.runs)
            rows.append((label, evaluate(lambda a: u.backend.infer(a), bundled_set5(), 4, ssim=False).psnr_y, t))
        from .bench import cpu_model

        print(f"   machine: {cpu_model()} ({platform.machine()}), {torch.get_num_threads()} torch threads")
        print("| bsrn-s-x4 backend | Set5 PSNR-Y [dB] | 320×180→1280×720 median [ms] | speed-up vs PyTorch |")
        print("| --- | --- | --- | --- |")
        for label, p, t in rows:
            print(f"| {label} | {p:.3f} | {t:.0f} | {t_torch / t:.2f}× |")
    except BsrnEdgeError as exc:
        print(f"bsrn-demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
