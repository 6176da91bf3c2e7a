"""CPU speed of the default path and of each lever (issue 6), measured in one run on this machine.

    python benchmarks/cpu_speed.py [--models bsrn-s-x4,bsrn-x4] [--runs 7]

Every row times the same real-content 320×180 LR frame (→ 1280×720 at ×4), median of ``--runs``
after two warm-up runs; speed-ups are ratios to PyTorch fp32 eager of the authors' structure in the
same run. The "default path" row is ``Upscaler(<exported .onnx>)`` — what an app gets. Throughput is
model FLOPs (2 × MACs) / median time, printed beside this run's numpy sgemm throughput.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import exported_onnx, machine_line, median, real_frame, time_ms


def sgemm_gflops(n: int = 1024, runs: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    t = median(time_ms(lambda: a @ b, runs))
    return 2 * n**3 / (t / 1000) / 1e9


def _ort(path_or_bytes, level: str, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from bsrn_edge.runtime.backends.onnxruntime import session_options

    opts = session_options(threads)  # the runtime's options, with one lever changed
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def measure(name: str, runs: int, cache: Path) -> list[str]:
    import torch

    from bsrn_edge import load_model
    from bsrn_edge.complexity import count_complexity
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn
    from bsrn_edge.export.onnx_steps import onnx_from_model, simplify_onnx
    from bsrn_edge.models.deploy import to_deploy
    from bsrn_edge.runtime import Upscaler
    from bsrn_edge.runtime.backends.onnxruntime import physical_cores

    loaded = load_model(name)
    frame = real_frame(320, 180)
    x = np.ascontiguousarray(frame.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    xt = torch.from_numpy(x)
    macs = count_complexity(loaded.model, (1, 3, 180, 320), multiadds_720p=False).flops
    cores = physical_cores()
    torch.set_num_threads(cores)
    deploy = to_deploy(loaded.model)
    naive = simplify_onnx(onnx_from_model(loaded, deploy=False)).SerializeToString()
    default_onnx = exported_onnx(name, cache)
    rows: list[tuple[str, float]] = []
    with torch.inference_mode():
        rows.append(("PyTorch fp32 eager, authors' structure (baseline)", median(time_ms(lambda: loaded.model(xt), runs))))
        rows.append(("PyTorch fp32 eager, deploy form", median(time_ms(lambda: deploy(xt), runs))))
    s = _ort(naive, "all", cores)
    rows.append(("ORT, naive export of the authors' structure (Linear → Transpose/MatMul)", median(time_ms(lambda: s.run(None, {"input": x}), runs))))
    for level, label in (("basic", "ORT deploy form, basic optimisations only"),
                         ("extended", "ORT deploy form, + extended (GELU fusion)"),
                         ("all", "ORT deploy form, + layout (NCHWc), all optimisations")):
        s = _ort(default_onnx, level, cores)
        rows.append((label, median(time_ms(lambda: s.run(None, {"input": x}), runs))))
    s = _ort(default_onnx, "all", 1)
    rows.append(("ORT deploy form, all optimisations, 1 thread", median(time_ms(lambda: s.run(None, {"input": x}), runs))))
    up = Upscaler(default_onnx)
    t_default = median(time_ms(lambda: up.upscale(frame), runs))
    rows.append((f"**default path: Upscaler(.onnx)** ({up.backend_name}, {cores} threads)", t_default))
    out = np.empty((720, 1280, 3), np.uint8)
    rows.append(("Upscaler.upscale_into (preallocated frame buffers)", median(time_ms(lambda: up.upscale_into(frame, out), runs))))
    tiled = Upscaler(default_onnx, tile=99, overlap=24, batch=4)
    rows.append(("Upscaler, tiles of 99 px batched by 4 (cache locality)", median(time_ms(lambda: tiled.upscale(frame), runs))))

    psnr_torch = evaluate(torch_upscale_fn(loaded.model), bundled_set5(), 4, ssim=False).psnr_y
    psnr_default = evaluate(lambda a: up.backend.infer(a), bundled_set5(), 4, ssim=False).psnr_y
    base = rows[0][1]
    out_lines = [f"### {name} ×{loaded.scale}, 320×180 → {320 * loaded.scale}×{180 * loaded.scale} "
                 f"({macs / 1e9:.2f} G MACs = {2 * macs / 1e9:.1f} GFLOP)", "",
                 "| path | median [ms] | speed-up vs baseline | GFLOP/s |", "| --- | ---: | ---: | ---: |"]
    for label, t in rows:
        out_lines.append(f"| {label} | {t:.0f} | {base / t:.2f}× | {2 * macs / (t / 1000) / 1e9:.1f} |")
    out_lines += ["", f"Set5 ×4 PSNR-Y: PyTorch {psnr_torch:.3f} dB, default path {psnr_default:.3f} dB "
                      f"(difference {psnr_default - psnr_torch:+.3f} dB).", ""]
    return out_lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bsrn-s-x4,bsrn-x4")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args(argv)
    print("\n".join(report(args.models.split(","), args.runs, args.cache)))
    return 0


def report(models: list[str], runs: int, cache: Path) -> list[str]:
    t0 = time.perf_counter()
    lines = [f"- {machine_line()}", f"- numpy sgemm (1024³, same run): {sgemm_gflops():.0f} GFLOP/s", ""]
    for name in models:
        lines += measure(name, runs, cache)
    lines.append(f"_{time.perf_counter() - t0:.0f} s for this section._")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
