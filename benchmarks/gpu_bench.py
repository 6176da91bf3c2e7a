"""GPU benchmark (issues 11 and 20): BSRN-S ×4 through every GPU path, network alone and through the runtime,
beside the NTIRE baselines of the paper's Table 7 (IMDN, RFDN, RLFN) on the same network paths.

Run on a GPU machine after `pip install --no-deps --no-build-isolation -e .`:

    python benchmarks/gpu_bench.py --models bsrn-s-x4,imdn,rfdn,rlfn   # one H100: well under 10 minutes
    python benchmarks/gpu_bench.py --device cpu --quick                  # checks the script on the CPU (a test runs this)

One table, one row per model and path: PyTorch fp32 eager, fp16 eager (channels-last), fp16 channels-last with
``cudnn.benchmark`` (the paper finds depth-wise convolutions unfriendly to GPUs: this asks cuDNN to pick its
fastest kernels for them), fp16 + CUDA graph, fp16 + inductor (``torch.compile``, default mode and
``max-autotune``); for the first model also ONNX Runtime CUDA (uint8-I/O model) and TensorRT (uint8-I/O
engine) where present. Columns: network-only median ms at 320×180 and 960×540 (CUDA events around the
forward, input already on the device); for the first model's plain paths also ``Upscaler.upscale_into``
wall ms for 960×540 → 3840×2160 (host uint8 in and out), ``Upscaler.stream()`` frames per second over 100
frames, 4000×3000 → 16000×12000 ``upscale`` wall seconds and peak device memory. Inputs are Set5 LR images
mirrored to size (never noise: FP16 overflows on noise). The targets of the issues are checked below the
table, each as a ratio of figures from this run. On the CPU the paths are fp32 eager and fp32 channels-last.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

MODEL = "bsrn-s-x4"


@dataclass
class Sizes:
    small: tuple[int, int]  # (h, w) LR
    frame: tuple[int, int]
    big: tuple[int, int]
    frames: int
    runs: int
    warmup: int


FULL = Sizes((180, 320), (540, 960), (3000, 4000), frames=100, runs=30, warmup=5)
QUICK = Sizes((36, 64), (45, 80), (100, 130), frames=6, runs=2, warmup=1)


@dataclass
class Row:
    path: str
    model: str = MODEL
    net_small_ms: float | None = None
    net_frame_ms: float | None = None
    into_ms: float | None = None
    stream_fps: float | None = None
    big_s: float | None = None
    big_again_s: float | None = None
    net_big_s: float | None = None
    mem_mb: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def real_image(h: int, w: int) -> np.ndarray:
    """A Set5 LR image mirrored to h×w (uint8 H×W×3): the bench harness's timing frame."""
    from bsrn_edge.bench import real_frame

    return real_frame(w, h)


def clip(h: int, w: int, n: int) -> list[np.ndarray]:
    """n real frames of h×w: a pan across a mirrored Set5 image."""
    base = real_image(h + n, w + n)
    return [np.ascontiguousarray(base[i:i + h, i:i + w]) for i in range(n)]


def _timer(device: str) -> Callable[..., Any]:
    from bsrn_edge.bench import cuda_event_clock, time_calls

    def run(fn: Callable[[], object], sz: Sizes) -> float:
        return time_calls(fn, sz.runs, sz.warmup, clock=cuda_event_clock() if device == "cuda" else None).median

    return run


def _peak_reset(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(torch: Any, device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def net_only(backend: Any, torch: Any, device: str, sz: Sizes, time_it: Callable[..., float],
             channels_last: bool = False) -> tuple[float, float]:
    """Median ms of the network alone (float input already on the device) at the two frame sizes."""
    from bsrn_edge.pixels import to_nchw

    out = []
    for h, w in (sz.small, sz.frame):
        x = torch.from_numpy(to_nchw(real_image(h, w))).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call() -> None:
            with backend._lock, torch.inference_mode():
                backend.forward_tensor(x)

        out.append(time_it(call, sz))
    return out[0], out[1]


def net_big(backend: Any, torch: Any, device: str, sz: Sizes) -> float:
    """Seconds of the network alone on the big image (input on the device; median of 2 after a warm-up):
    what the runtime's big upscale is compared with."""
    from bsrn_edge.bench import cuda_event_clock, time_calls
    from bsrn_edge.pixels import to_nchw

    x = torch.from_numpy(to_nchw(real_image(*sz.big))).to(device)

    def call() -> None:
        with backend._lock, torch.inference_mode():
            backend.forward_tensor(x)

    ms = time_calls(call, 2, 1, clock=cuda_event_clock() if device == "cuda" else None).median
    return ms / 1000.0


def through_runtime(up: Any, sz: Sizes, device: str, torch: Any | None) -> tuple[float, float, float, float]:
    """(upscale_into wall ms, stream fps, big upscale wall s: first call and a second one) through the
    Upscaler, host uint8 in and out. The first call at a new size pays the allocator's first allocation."""
    from bsrn_edge.bench import time_calls

    frame = real_image(*sz.frame)
    out = np.empty((frame.shape[0] * 4, frame.shape[1] * 4, 3), np.uint8)
    into = time_calls(lambda: up.upscale_into(frame, out), sz.runs, sz.warmup).median
    frames = clip(*sz.frame, sz.frames)
    for _ in up.stream(frames[:2]):  # warm the slots
        pass
    t0 = time.perf_counter()
    n = sum(1 for _ in up.stream(frames))
    fps = n / (time.perf_counter() - t0)
    big = real_image(*sz.big)
    up.upscale(big[:64, :64])  # warm
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        up.upscale(big)
        walls.append(time.perf_counter() - t0)
    return into, fps, walls[0], walls[1]


#: (label, precision, TorchBackend mode, tweak): tweak "cudnn" = channels-last + cudnn.benchmark, "autotune" =
#: inductor max-autotune; rows with a tweak are network-only
CUDA_PATHS = [("PyTorch fp32 eager", "fp32", "eager", None), ("PyTorch fp16 eager", "fp16", "eager", None),
              ("PyTorch fp16 channels-last + cudnn.benchmark", "fp16", "eager", "cudnn"),
              ("PyTorch fp16 + CUDA graph", "fp16", "graph", None), ("PyTorch fp16 + inductor", "fp16", "compile", None),
              ("PyTorch fp16 + inductor max-autotune", "fp16", "compile", "autotune")]
CPU_PATHS = [("PyTorch fp32 eager", "fp32", "eager", None), ("PyTorch fp32 channels-last", "fp32", "eager", "cudnn")]


def _backend(model: str, precision: str, mode: str, tweak: str | None, device: str) -> Any:
    import torch

    from bsrn_edge.runtime.backends.torch import TorchBackend

    be = TorchBackend(model, device=device, precision=precision, mode=mode)  # type: ignore[arg-type]
    if tweak == "autotune":
        be._net = torch.compile(be.model, mode="max-autotune")
    if tweak == "cudnn" and device == "cpu":  # on CUDA the backend is channels-last already
        be.model = be.model.to(memory_format=torch.channels_last)
    return be


def torch_row(model: str, path: tuple[str, str, str, str | None], device: str, sz: Sizes, time_it: Callable[..., float],
              full: bool) -> Row:
    """One model on one PyTorch path: network-only, and through the runtime when ``full``."""
    import torch

    from bsrn_edge.runtime import Upscaler

    label, precision, mode, tweak = path
    row = Row(label, model=model)
    benchmark = torch.backends.cudnn.benchmark
    try:
        t0 = time.perf_counter()
        be = _backend(model, precision, mode, tweak, device)
        _peak_reset(torch, device)
        torch.backends.cudnn.benchmark = tweak == "cudnn" or benchmark
        row.net_small_ms, row.net_frame_ms = net_only(be, torch, device, sz, time_it, channels_last=tweak == "cudnn")
        if mode == "compile":
            row.note = f"first call per shape compiles (setup {time.perf_counter() - t0:.0f} s)"
        if full:
            up = Upscaler(be)
            row.into_ms, row.stream_fps, row.big_s, row.big_again_s = through_runtime(up, sz, device, torch)
            row.mem_mb = _peak_mb(torch, device)
            row.net_big_s = net_big(be, torch, device, sz)
    except Exception as exc:  # noqa: BLE001 - one failing path must not stop the others
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        torch.backends.cudnn.benchmark = benchmark
    print(f"done: {row_line(row)}", file=sys.stderr, flush=True)  # a run cut short keeps what it measured
    return row


def torch_rows(device: str, sz: Sizes, time_it: Callable[..., float], skip_compile: bool,
               models: list[str] | None = None) -> list[Row]:
    """Every model on every PyTorch path; the runtime columns for the first model's paths without a tweak.
    With the quick sizes (a check of the script) the other models take the first path only."""
    models = models or [MODEL]
    paths = CUDA_PATHS if device == "cuda" else CPU_PATHS
    if skip_compile:
        paths = [p for p in paths if p[2] != "compile"]
    return [torch_row(m, p, device, sz, time_it, full=m == models[0] and p[3] is None)
            for m in models for p in (paths if m == models[0] or sz is not QUICK else paths[:1])]


def _export_u8(tmp: Path) -> Path:
    """The FP16 uint8-I/O ONNX of the bundled BSRN-S (and its FP32 sibling for the fallback)."""
    from bsrn_edge.export.pipeline import ExportOptions, export_checkpoint

    res = export_checkpoint(MODEL, tmp, ExportOptions(fp16=True, uint8_io=True, engine="skip", force=True),
                            report=lambda m: None)
    return res.files["fp16_u8_onnx"] if "fp16_u8_onnx" in res.files else res.files["fp16_onnx"]


def ort_row(sz: Sizes, tmp: Path) -> Row:
    row = Row("ONNX Runtime CUDA (uint8 I/O)")
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            row.note = "skipped: onnxruntime-gpu is not installed here"
            return row
        from bsrn_edge.runtime import Upscaler

        up = Upscaler(_export_u8(tmp), device="cuda")
        row.into_ms, row.stream_fps, row.big_s, row.big_again_s = through_runtime(up, sz, "cuda", None)
    except Exception as exc:  # noqa: BLE001
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return row


def trt_row(sz: Sizes, tmp: Path) -> Row:
    row = Row("TensorRT (uint8 I/O engine)")
    from bsrn_edge._lazy import available

    if not available("tensorrt"):
        row.note = "skipped: TensorRT is not installed here"
        return row
    try:
        from bsrn_edge.export.pipeline import build_engine_step, default_profile, engine_path_for
        from bsrn_edge.runtime import Upscaler

        onnx = _export_u8(tmp)
        build_engine_step(onnx, default_profile(15, 195), "fp16", "require", lambda m: None)
        up = Upscaler(engine_path_for(onnx))
        row.into_ms, row.stream_fps, row.big_s, row.big_again_s = through_runtime(up, sz, "cuda", None)
    except Exception as exc:  # noqa: BLE001
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return row


def _f(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(rows: list[Row], sz: Sizes, machine: str) -> str:
    (sh, sw), (fh, fw), (bh, bw) = sz.small, sz.frame, sz.big
    lines = [f"# {machine}",
             f"| model | path | net {sw}×{sh} [ms] | net {fw}×{fh} [ms] | upscale_into {fw}×{fh}→×4 [ms] | "
             f"stream fps ({sz.frames} frames) | upscale {bw}×{bh}→×4 first / again [s] | net {bw}×{bh} [s] | "
             "peak device mem [MB] | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    lines += [row_line(r) for r in rows]
    return "\n".join(lines)


def row_line(r: Row) -> str:
    return (f"| {r.model} | {r.path} | {_f(r.net_small_ms, 2)} | {_f(r.net_frame_ms, 2)} | {_f(r.into_ms, 1)} | "
            f"{_f(r.stream_fps, 1)} | {_f(r.big_s, 2)} / {_f(r.big_again_s, 2)} | {_f(r.net_big_s, 2)} | "
            f"{_f(r.mem_mb, 0)} | {r.note} |")


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets, each from this run's own figures."""
    out = []
    for r in rows:
        if r.net_frame_ms and r.stream_fps:
            ratio = r.stream_fps / (1000.0 / r.net_frame_ms)
            out.append(f"{r.path}: stream {r.stream_fps:.1f} fps = {ratio:.2f}× the network-only rate "
                       f"({'ok' if ratio >= 0.8 else 'NO'}, target ≥ 0.8×)")
        if r.net_frame_ms and r.into_ms:
            over = r.into_ms - r.net_frame_ms
            out.append(f"{r.path}: upscale_into {r.into_ms:.1f} ms = network + {over:.1f} ms "
                       f"({'ok' if over <= 8 else 'NO'}, target ≤ +8 ms)")
        if r.big_s is not None and r.big_again_s is not None:
            out.append(f"{r.path}: big upscale {r.big_s:.2f} s first, {r.big_again_s:.2f} s again "
                       f"({'ok' if max(r.big_s, r.big_again_s) <= 1.5 else 'NO'}, target ≤ 1.5 s)")
    fastest = min((r.net_frame_ms for r in rows if r.net_frame_ms and r.model == MODEL and r.path.startswith("PyTorch")),
                  default=None)
    if fastest is not None:
        out.append(f"fastest PyTorch network-only {fastest:.2f} ms ({'ok' if fastest <= 8 else 'NO'}, target ≤ 8 ms)")
    return out + table7(rows)


def table7(rows: list[Row]) -> list[str]:
    """The paper's Table 7 question from this run: each model's fastest network-only path at the frame size,
    and BSRN-S's time as a ratio of each baseline's."""
    best: dict[str, Row] = {}
    for r in rows:
        if r.net_frame_ms and (r.model not in best or r.net_frame_ms < best[r.model].net_frame_ms):  # type: ignore[operator]
            best[r.model] = r
    ours = best.get(MODEL)
    if ours is None or len(best) < 2:
        return []
    out = ["fastest network-only path per model: " + "; ".join(f"{m} {r.net_frame_ms:.2f} ms ({r.path})" for m, r in best.items())]
    for m, r in best.items():
        if m != MODEL:
            ratio = ours.net_frame_ms / r.net_frame_ms  # type: ignore[operator]
            out.append(f"{MODEL} / {m} = {ratio:.2f}× ({'faster' if ratio < 1 else 'slower'}), fastest paths of each")
    return out


def machine_line(device: str) -> str:
    import torch

    from bsrn_edge.hostinfo import cpu_model

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU"
    return (f"device: {gpu}; CPU: {cpu_model()} ({platform.machine()}); torch {torch.__version__}; "
            f"python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 2 runs, to check the script on the CPU")
    ap.add_argument("--no-compile", action="store_true", help="skip the inductor rows (their compile takes 10-120 s)")
    ap.add_argument("--models", default=MODEL,
                    help="comma-separated bundled models, e.g. bsrn-s-x4,imdn,rfdn,rlfn (the first gets the runtime rows)")
    args = ap.parse_args(argv)
    import tempfile

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU visible to PyTorch; use --device cpu --quick to check the script", file=sys.stderr)
        return 2
    sz = QUICK if args.quick else FULL
    time_it = _timer(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or models[0] != MODEL:
        print(f"gpu_bench: --models must start with {MODEL} (the runtime rows and the ratios are about it)", file=sys.stderr)
        return 2
    rows = torch_rows(args.device, sz, time_it, args.no_compile, models)
    if args.device == "cuda":
        with tempfile.TemporaryDirectory() as tmp:
            rows += [ort_row(sz, Path(tmp)), trt_row(sz, Path(tmp))]
    print(table(rows, sz, machine_line(args.device)))
    print()
    for line in targets(rows):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
