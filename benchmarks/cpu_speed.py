"""CPU speed of the default path and of each lever (issue 6), and of each CPU engine (issue 23), measured in one run.

    python benchmarks/cpu_speed.py [--models bsrn-s-x4,bsrn-x4] [--runs 8]      # the levers of the default path
    python benchmarks/cpu_speed.py --engines [--int8] [--runs 20]                # ONNX Runtime, OpenVINO, auto
    python benchmarks/cpu_speed.py --engines --quick                             # a short look on a busy machine

Every row times the same real-content 320×180 LR frame (→ 1280×720 at ×4).

Levers: each row runs back to back in its own block after a warm-up call; the table walks the rows four times
(alternately forward and in reverse, a quarter of ``--runs`` each) so a slow spell of this shared machine is
spread over the rows, and quotes the median of each row's ``--runs`` calls. Speed-ups are ratios to PyTorch fp32
eager of the authors' structure in the same run. The "default path" row is ``Upscaler(<exported .onnx>,
"onnxruntime")``. Throughput is model FLOPs (2 × MACs) / median time, printed beside this run's numpy sgemm.

Engines (``--engines``): ``Upscaler.upscale_into`` on ONNX Runtime FP32, OpenVINO FP32, BF16 (CPUs with native
BF16) and INT8 (``--int8``: the model's ``bsrn-export --int8``, exported once into the bench cache when its
validation passes), PyTorch fp32 eager, and the ``auto`` default path (``Upscaler(<.onnx>)``: the engine it
measured fastest here); the engines are interleaved call by call, medians of ``--runs`` calls each, ratios to
ONNX Runtime FP32 and to PyTorch eager from the same run, and each engine's PSNR-Y on Set5 and the first 20 B100
images against its own FP32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from _common import exported_onnx, machine_line, real_frame, time_calls
from ort_profile import FRAME_DIMS, kernel_times

TARGETS = {"bsrn-s-x4": 3.0, "bsrn-x4": 2.5}  # issue 6: speed-up over PyTorch eager, authors' structure


def sgemm_gflops(n: int = 1024, runs: int = 9) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    ms = time_calls(lambda: a @ b, runs, warmup=2).median
    return 2 * n**3 / (ms / 1e3) / 1e9


def _ort(model: Path | bytes, level: str = "all", threads: int | None = None, fixed: bool = False):  # type: ignore[no-untyped-def]
    """An ORT session with the runtime's options and one lever changed."""
    import onnxruntime as ort

    from bsrn_edge.runtime.backends.onnxruntime import session_options

    opts = session_options(threads, FRAME_DIMS if fixed else None)
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def _runner(sess, x: np.ndarray) -> Callable[[], object]:  # type: ignore[no-untyped-def]
    return lambda: sess.run(None, {"input": x})


def timed_blocks(fns: list[Callable[[], object]], runs: int, passes: int = 4, warmup: int = 1) -> list[float]:
    """Median milliseconds of each callable, each timed back to back in its own block (as a user runs it).

    The rows are walked ``passes`` times, alternately forward and in reverse, each visit timing an equal
    share of ``runs`` after ``warmup`` calls, so a slow spell of this shared machine is spread over
    the table instead of landing on the rows at one end.
    """
    times: list[list[float]] = [[] for _ in fns]
    share = [runs // passes + (p < runs % passes) for p in range(passes)]
    for p, n in enumerate(share):
        order = range(len(fns)) if p % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            if n:
                times[i] += time_calls(fns[i], n, warmup).times_ms
    return [statistics.median(t) for t in times]


def _lever_table(name: str, scale: int, macs: int, labels: list[str], times: list[float]) -> list[str]:
    """The Markdown table of one model: each lever's median, speed-up over the first row, and throughput."""
    base, gflop = times[0], 2 * macs / 1e9
    lines = [f"### {name} ×{scale}, 320×180 → {320 * scale}×{180 * scale} "
             f"({macs / 1e9:.2f} G MACs = {gflop:.1f} GFLOP)", "",
             "| path | median [ms] | speed-up vs baseline | GFLOP/s |", "| --- | ---: | ---: | ---: |"]
    for label, t in zip(labels, times):
        lines.append(f"| {label} | {t:.0f} | {base / t:.2f}× | {gflop / (t / 1000):.1f} |")
    return lines


def _graph_variants(loaded) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Earlier export forms the table compares against: the naive export, 0.1.0's, and Concats kept."""
    from bsrn_edge.export.onnx_steps import onnx_from_model, simplify_onnx

    concat_graph = onnx_from_model(loaded, split_concat=False)
    return {
        "naive": simplify_onnx(onnx_from_model(loaded, deploy=False)).SerializeToString(),
        "v010": simplify_onnx(concat_graph, keep_gelu=False).SerializeToString(),  # the 0.1.0 export
        "concat_kept": simplify_onnx(concat_graph).SerializeToString(),
    }


def _levers(loaded, default_onnx: Path, frame: np.ndarray, x: np.ndarray,  # type: ignore[no-untyped-def]
            cores: int) -> tuple[list[tuple[str, Callable[[], object]]], Any]:
    """(label, call) per row of the table, the first being the baseline, and the default path's Upscaler."""
    import torch

    from bsrn_edge.models.deploy import to_deploy
    from bsrn_edge.runtime import Upscaler

    xt = torch.from_numpy(x)
    deploy = to_deploy(loaded.model, split_concat=False)  # as the torch backend runs it
    g = _graph_variants(loaded)

    def eager(model):  # type: ignore[no-untyped-def]
        def run() -> object:
            with torch.inference_mode():
                return model(xt)
        return run

    up = Upscaler(default_onnx, "onnxruntime")
    out = np.empty((180 * loaded.scale, 320 * loaded.scale, 3), np.uint8)
    rows: list[tuple[str, Callable[[], object]]] = [
        ("PyTorch fp32 eager, authors' structure (baseline)", eager(loaded.model)),
        ("PyTorch fp32 eager, deploy form (as the torch backend runs it)", eager(deploy)),
        ("ORT, naive export of the authors' structure (Linear → Transpose/MatMul), all optimisations",
         _runner(_ort(g["naive"]), x)),
        ("ORT deploy form, basic optimisations only", _runner(_ort(default_onnx, "basic"), x)),
        ("… + extended (GELU fusion)", _runner(_ort(default_onnx, "extended"), x)),
        ("… + NCHWc layout, all optimisations (one dynamic-shape session)", _runner(_ort(default_onnx), x)),
        ("… + **session specialised to the input shape** (the runtime's CPU backend)",
         _runner(_ort(default_onnx, fixed=True), x)),
        ("… same, 1 thread", _runner(_ort(default_onnx, threads=1, fixed=True), x)),
        ("… same, export 0.1.0 (onnxsim folds GELU's ×0.5: 16 GELUs unfused; Concats kept)",
         _runner(_ort(g["v010"], fixed=True), x)),
        ("… same, GELU kept fusable but Concats kept (no SplitPointwise)", _runner(_ort(g["concat_kept"], fixed=True), x)),
        (f"**default path: Upscaler(.onnx)** ({up.backend_name}, {cores} threads)", lambda: up.upscale(frame)),
        ("Upscaler.upscale_into (preallocated frame buffers)", lambda: up.upscale_into(frame, out)),
        ("Upscaler, tiles of 99 px batched by 4 (cache locality)",
         lambda t=Upscaler(default_onnx, "onnxruntime", tile=99, overlap=24, batch=4): t.upscale(frame)),
    ]
    return rows, up


def measure(name: str, runs: int, cache: Path | None, sgemm: float) -> list[str]:
    """The table and findings of one model (see the module docstring)."""

    import torch

    from bsrn_edge import load_model
    from bsrn_edge.complexity import count_complexity
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn
    from bsrn_edge.hostinfo import physical_cores
    from bsrn_edge.pixels import to_nchw

    loaded = load_model(name)
    frame = real_frame(320, 180)
    x = to_nchw(frame)
    macs = count_complexity(loaded.model, (1, 3, 180, 320), multiadds_720p=False).flops
    cores = physical_cores()
    torch.set_num_threads(cores)
    default_onnx = exported_onnx(name, cache)
    rows, up = _levers(loaded, default_onnx, frame, x, cores)
    times = timed_blocks([fn for _, fn in rows], runs)

    set5 = bundled_set5()
    psnr_torch = evaluate(torch_upscale_fn(loaded.model), set5, loaded.scale, ssim=False).psnr_y
    psnr_default = evaluate(lambda a: up.backend.infer(a), set5, loaded.scale, ssim=False).psnr_y
    by_op, by_conv = kernel_times(default_onnx, 3)

    lines = _lever_table(name, loaded.scale, macs, [label for label, _ in rows], times)
    base, t_default, gflop = times[0], times[10], 2 * macs / 1e9
    target = TARGETS.get(name)
    conv_ms = by_op.get("Conv", 0.0)
    lines += [
        "",
        f"- Set5 ×{loaded.scale} PSNR-Y: PyTorch {psnr_torch:.3f} dB, default path {psnr_default:.3f} dB "
        f"(difference {psnr_default - psnr_torch:+.3f} dB).",
        f"- Default path throughput {gflop / (t_default / 1000):.0f} GFLOP/s = "
        f"{100 * gflop / (t_default / 1000) / sgemm:.0f}% of this run's sgemm ({sgemm:.0f} GFLOP/s).",
        f"- ORT profile of the default session (3 runs): {sum(by_op.values()):.0f} ms of kernels, of which Conv "
        f"{conv_ms:.0f} ms (1×1 {by_conv.get('1x1', 0):.0f}, depthwise {by_conv.get('depthwise', 0):.0f}, dense "
        f"{sum(v for k, v in by_conv.items() if 'dense' in k):.0f}) and Gelu {by_op.get('Gelu', 0):.0f} ms.",
    ]
    if target:
        need = base / target
        verdict = "met" if base / t_default >= target else "NOT met"
        share = (conv_ms + by_op.get("Gelu", 0.0)) / sum(by_op.values())
        lines.append(f"- Issue 6 target {target:g}× → at most {need:.0f} ms: {verdict} ({base / t_default:.2f}×). "
                     f"Conv and Gelu kernels are {100 * share:.0f}% of the profiled kernel time, i.e. ≈{share * t_default:.0f} ms "
                     f"of the default path's median by themselves.")
    lines.append("")
    return lines


def _engine_files(name: str, cache: Path | None, int8: bool) -> tuple[Path, Path | None, str]:
    """The bench cache's FP32 ONNX of ``name`` (exported again when it predates the BF16 record that ``auto`` reads),
    its INT8 sibling when asked (exported once; None when its validation refused it) and why not."""
    from bsrn_edge import load_model
    from bsrn_edge._lazy import available
    from bsrn_edge.bench import cached_export, default_cache_dir
    from bsrn_edge.errors import ValidationError
    from bsrn_edge.meta import BF16_LOSS
    from bsrn_edge.runtime.model_info import read_onnx_props

    loaded, cache = load_model(name), cache or default_cache_dir()
    onnx = cached_export(loaded, cache, fp16=False)["onnx"]
    if available("openvino") and BF16_LOSS not in read_onnx_props(onnx):
        from bsrn_edge.runtime.backends.openvino import native_bf16

        if native_bf16():
            onnx.unlink()
            onnx = cached_export(loaded, cache, fp16=False)["onnx"]
    if not int8:
        return onnx, None, "not asked for (--int8)"
    try:
        return onnx, cached_export(loaded, cache, fp16=False, int8=True)["int8_onnx"], ""
    except ValidationError as exc:
        return onnx, None, str(exc).splitlines()[0]


def _engine_upscalers(onnx: Path, int8: Path | None) -> list[tuple[str, Any]]:
    """(label, Upscaler) per CPU engine installed here, ONNX Runtime FP32 first and the auto default path last."""
    from bsrn_edge._lazy import available
    from bsrn_edge.runtime import Upscaler

    ups = [("ONNX Runtime FP32 (the default before `auto`)", Upscaler(onnx, "onnxruntime"))]
    if available("openvino"):
        from bsrn_edge.runtime.backends.openvino import native_bf16

        ups.append(("OpenVINO FP32", Upscaler(onnx, "openvino", precision="fp32")))
        if native_bf16():
            ups.append(("OpenVINO BF16", Upscaler(onnx, "openvino", precision="bf16")))
        if int8 is not None:
            ups.append(("OpenVINO INT8 (`bsrn-export --int8`)", Upscaler(onnx, "openvino", precision="int8")))
    auto = Upscaler(onnx)
    ups.append((f"**auto: `Upscaler(.onnx)`** → {auto.backend_name}", auto))
    return ups


def _interleaved(calls: list[Callable[[], object]], runs: int, warmup: int = 2) -> list[float]:
    """Median milliseconds of each call, the calls taking turns one call at a time (``warmup`` rounds untimed)."""
    times: list[list[float]] = [[] for _ in calls]
    for r in range(warmup + runs):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            if r >= warmup:
                times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def engines(name: str, runs: int, cache: Path | None, int8: bool, b100: int) -> list[str]:
    """The engine table of one model (see the module docstring); ``b100`` B100 images join Set5 for PSNR-Y."""
    import torch

    from bsrn_edge import load_model
    from bsrn_edge.datasets import bundled_set5, find_pairs, shared_data_dir
    from bsrn_edge.evaluate import evaluate
    from bsrn_edge.hostinfo import physical_cores
    from bsrn_edge.pixels import to_nchw

    loaded = load_model(name)
    torch.set_num_threads(physical_cores())
    onnx, int8_path, int8_note = _engine_files(name, cache, int8)
    ups = _engine_upscalers(onnx, int8_path)
    frame = real_frame(320, 180)
    xt = torch.from_numpy(to_nchw(frame))

    def eager() -> object:
        with torch.inference_mode():
            return loaded.model(xt)

    outs = [np.empty((180 * loaded.scale, 320 * loaded.scale, 3), np.uint8) for _ in ups]
    calls = [eager] + [lambda u=u, o=o: u.upscale_into(frame, o) for (_, u), o in zip(ups, outs)]
    times = _interleaved(calls, runs)
    shared = shared_data_dir()
    sets = {"Set5": find_pairs(bundled_set5(), loaded.scale)}
    if b100 and shared is not None and (shared / "B100").is_dir():
        sets["B100"] = find_pairs(shared / "B100", loaded.scale)[:b100]
    psnr = [{k: evaluate(u.backend.infer, v, loaded.scale, ssim=False).psnr_y for k, v in sets.items()} for _, u in ups]
    base, torch_ms = times[1], times[0]
    lines = [f"### {name} ×{loaded.scale}: CPU engines, `upscale_into` 320×180 → {320 * loaded.scale}×{180 * loaded.scale}", "",
             "| engine | median [ms] | × ONNX Runtime FP32 | × PyTorch eager | " + " | ".join(f"PSNR-Y {k} (Δ)" for k in sets)
             + " |", "| --- | ---: | ---: | ---: |" + " ---: |" * len(sets),
             f"| PyTorch fp32 eager, authors' structure | {torch_ms:.0f} | {base / torch_ms:.2f}× | 1.00× |" + " |" * len(sets)]
    for (label, _), t, p in zip(ups, times[1:], psnr):
        lines.append(f"| {label} | {t:.0f} | {base / t:.2f}× | {torch_ms / t:.2f}× | "
                     + " | ".join(f"{p[k]:.3f} ({p[k] - psnr[0][k]:+.3f})" for k in sets) + " |")
    why = getattr(ups[-1][1].backend, "choice", "")
    lines += ["", f"- auto: {why or ups[-1][1].backend_name}.", f"- INT8: {int8_note or 'row above'}."]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bsrn-s-x4,bsrn-x4")
    ap.add_argument("--runs", type=int, default=8, help="timed calls per row (levers: split over 4 passes; default: 8)")
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    ap.add_argument("--engines", action="store_true", help="the CPU engine table (issue 23) instead of the levers")
    ap.add_argument("--int8", action="store_true", help="with --engines: the INT8 row (bsrn-export --int8 once, minutes)")
    ap.add_argument("--quick", action="store_true", help="with --engines: bsrn-s-x4, 4 runs, Set5 only (a busy machine)")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.runs = "bsrn-s-x4", 4
    print("\n".join(report(args.models.split(","), args.runs, args.cache, args.engines, args.int8, 0 if args.quick else 20)))
    return 0


def report(models: list[str], runs: int, cache: Path | None, engine_table: bool = False, int8: bool = False,
           b100: int = 20) -> list[str]:
    t0 = time.perf_counter()
    lines = [f"- {machine_line()}"]
    if not engine_table:
        sgemm = sgemm_gflops()
        lines += [f"- numpy sgemm (1024³, median of 9, same run): {sgemm:.0f} GFLOP/s", ""]
    for name in models:
        lines += engines(name, runs, cache, int8, b100) if engine_table else measure(name, runs, cache, sgemm)
    lines.append(f"_{time.perf_counter() - t0:.0f} s for this section._")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
