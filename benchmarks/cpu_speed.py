"""CPU speed of the default path and of each lever (issue 6), measured in one run on this machine.

    python benchmarks/cpu_speed.py [--models bsrn-s-x4,bsrn-x4] [--runs 8]

Every row times the same real-content 320×180 LR frame (→ 1280×720 at ×4), back to back in its own
block after a warm-up call; the table walks the rows four times (alternately forward and in reverse,
a quarter of ``--runs`` each) so a slow spell of this shared machine is spread over the rows, and
quotes the median of each row's ``--runs`` calls. Speed-ups are ratios
to PyTorch fp32 eager of the authors' structure in the same run. The "default path" row is
``Upscaler(<exported .onnx>)``: what an app gets. Throughput is model FLOPs (2 × MACs) / median
time, printed beside this run's numpy sgemm throughput.

Levers that lost are measured too: OpenVINO's CPU runtime (when ``openvino`` is installed) and INT8
(ONNX Runtime static quantisation, QDQ, per-channel weights, calibrated on the five Set5 LR images,
first and last layers fp32), with its PSNR cost. Neither is shipped.
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


def int8_onnx(src: Path, workdir: Path, scale: int) -> Path:
    """Statically quantised copy of ``src`` (QDQ, per-channel int8 weights, uint8 activations, Set5 calibration;
    the first and last layers kept fp32)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from bsrn_edge.datasets import bundled_arrays
    from bsrn_edge.pixels import to_nchw

    class Set5(CalibrationDataReader):
        def __init__(self) -> None:
            feeds = [{"input": to_nchw(lr)} for _, lr, _ in bundled_arrays(scale)]
            self._it = iter(feeds)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self._it, None)

    import onnx

    pre, out = workdir / "pre.onnx", workdir / f"{src.stem}-int8.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    # the usual practice: the first block (fea_conv pw+dw) and the output conv stay fp32; quantising
    # them too cost 10 dB on Set5 (22.2 dB) instead of 1.4
    quantize_static(str(pre), str(out), Set5(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=convs[:2] + convs[-1:])
    return out


def _openvino(path: Path, threads: int):  # type: ignore[no-untyped-def]
    """OpenVINO's CPU plugin on the same ONNX, reshaped to the frame (None when openvino is absent)."""
    from bsrn_edge._lazy import available

    if not available("openvino"):
        return None
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({"input": [1, 3, 180, 320]})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    return lambda x: req.infer({0: x})


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


def _lever_table(name: str, scale: int, macs: int, labels: list[str], times: list[float],
                 openvino_missing: bool) -> list[str]:
    """The Markdown table of one model: each lever's median, speed-up over the first row, and throughput."""
    base, gflop = times[0], 2 * macs / 1e9
    lines = [f"### {name} ×{scale}, 320×180 → {320 * scale}×{180 * scale} "
             f"({macs / 1e9:.2f} G MACs = {gflop:.1f} GFLOP)", "",
             "| path | median [ms] | speed-up vs baseline | GFLOP/s |", "| --- | ---: | ---: | ---: |"]
    for label, t in zip(labels, times):
        lines.append(f"| {label} | {t:.0f} | {base / t:.2f}× | {gflop / (t / 1000):.1f} |")
    if openvino_missing:
        lines.append("| OpenVINO CPU plugin | not installed (`pip install openvino` adds this row) | | |")
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


def _levers(loaded, default_onnx: Path, int8: Path, frame: np.ndarray, x: np.ndarray,  # type: ignore[no-untyped-def]
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

    up = Upscaler(default_onnx)
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
         lambda t=Upscaler(default_onnx, tile=99, overlap=24, batch=4): t.upscale(frame)),
        ("INT8 (ORT static QDQ, per-channel), shape-specialised — not shipped", _runner(_ort(int8, fixed=True), x)),
    ]
    return rows, up


def measure(name: str, runs: int, cache: Path | None, sgemm: float) -> list[str]:
    """The table and findings of one model (see the module docstring)."""
    import tempfile

    import torch

    from bsrn_edge import load_model
    from bsrn_edge.complexity import count_complexity
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn
    from bsrn_edge.hostinfo import physical_cores
    from bsrn_edge.pixels import to_nchw
    from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    loaded = load_model(name)
    frame = real_frame(320, 180)
    x = to_nchw(frame)
    macs = count_complexity(loaded.model, (1, 3, 180, 320), multiadds_720p=False).flops
    cores = physical_cores()
    torch.set_num_threads(cores)
    default_onnx = exported_onnx(name, cache)
    work = Path(tempfile.mkdtemp(prefix="bsrn-cpu-speed-"))
    int8 = int8_onnx(default_onnx, work, loaded.scale)
    rows, up = _levers(loaded, default_onnx, int8, frame, x, cores)
    ov = _openvino(default_onnx, cores)
    if ov is not None:
        rows.append(("OpenVINO CPU plugin, same ONNX at the frame's shape — not shipped", lambda: ov(x)))
    times = timed_blocks([fn for _, fn in rows], runs)

    set5 = bundled_set5()
    psnr_torch = evaluate(torch_upscale_fn(loaded.model), set5, loaded.scale, ssim=False).psnr_y
    psnr_default = evaluate(lambda a: up.backend.infer(a), set5, loaded.scale, ssim=False).psnr_y
    psnr_int8 = evaluate(OnnxRuntimeBackend(int8).infer, set5, loaded.scale, ssim=False).psnr_y
    by_op, by_conv = kernel_times(default_onnx, 3)

    lines = _lever_table(name, loaded.scale, macs, [label for label, _ in rows], times, ov is None)
    base, t_default, gflop = times[0], times[10], 2 * macs / 1e9
    target = TARGETS.get(name)
    conv_ms = by_op.get("Conv", 0.0)
    lines += [
        "",
        f"- Set5 ×{loaded.scale} PSNR-Y: PyTorch {psnr_torch:.3f} dB, default path {psnr_default:.3f} dB "
        f"(difference {psnr_default - psnr_torch:+.3f} dB); INT8 {psnr_int8:.3f} dB ({psnr_int8 - psnr_torch:+.3f} dB).",
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bsrn-s-x4,bsrn-x4")
    ap.add_argument("--runs", type=int, default=8, help="timed calls per row, split over 4 passes (default: 8)")
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args(argv)
    print("\n".join(report(args.models.split(","), args.runs, args.cache)))
    return 0


def report(models: list[str], runs: int, cache: Path | None) -> list[str]:
    t0 = time.perf_counter()
    sgemm = sgemm_gflops()
    lines = [f"- {machine_line()}", f"- numpy sgemm (1024³, median of 9, same run): {sgemm:.0f} GFLOP/s", ""]
    for name in models:
        lines += measure(name, runs, cache, sgemm)
    lines.append(f"_{time.perf_counter() - t0:.0f} s for this section._")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
