"""GPU benchmark for a lent GPU (issue 7): the NTIRE table with PyTorch fp32 eager and our best GPU path.

Run on the GPU machine (after `pip install --no-deps --no-build-isolation -e .`):

    python benchmarks/gpu_bench.py                 # full run, well under 8 minutes on an H100
    python benchmarks/gpu_bench.py --device cpu --quick   # check the script on the CPU first

Prints: one row per model × path (whole image, batch 1, NTIRE protocol for the eager row: CUDA
events around the forward, synchronize, copies outside the timed region, warm-up first), the BSRN-S
4K-output latency (960×540 → 3840×2160), fp16-vs-fp32 PSNR, and whether TensorRT / onnxruntime-gpu
exist on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import time

import numpy as np


def _timer(device: str):  # type: ignore[no-untyped-def]
    import torch

    def run(fn, runs: int, warmup: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            if device == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                torch.cuda.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times), statistics.fmean(times)

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--models", default="bsrn-s-x4,bsrn-x4,imdn,rfdn,rlfn")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 2 runs, to check the script on the CPU")
    args = ap.parse_args(argv)
    import torch

    from bsrn_edge import load_model
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn
    from bsrn_edge.imageio import read_rgb
    from bsrn_edge.models.deploy import to_deploy

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to PyTorch; use --device cpu --quick to check the script")
    runs, warm = (2, 1) if args.quick else (args.runs, 10)
    lr_side = (64, 36) if args.quick else (320, 180)  # NTIRE-like LR frame (W×H)
    timer = _timer(dev)
    name = torch.cuda.get_device_name(0) if dev == "cuda" else platform.processor() or platform.machine()
    print(f"# device: {name}; torch {torch.__version__}; "
          f"tensorrt: {'present' if importlib.util.find_spec('tensorrt') else 'absent'}; "
          f"onnxruntime-gpu: {'present' if importlib.util.find_spec('onnxruntime') and 'CUDAExecutionProvider' in __import__('onnxruntime').get_available_providers() else 'absent'}")
    img = read_rgb(sorted(bundled_set5().glob("*_LR.png"))[0])
    big = np.tile(img, (8, 8, 1))
    print("| model | path | Set5 PSNR-Y | params [M] | runtime median [ms] | mean [ms] | mem [MB] |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    eager_ms: dict[str, float] = {}
    for mname in args.models.split(","):
        try:
            loaded = load_model(mname)
        except Exception as exc:  # noqa: BLE001 - report and continue with the others
            print(f"| {mname} | – | error: {exc} | | | | |")
            continue
        x = torch.from_numpy(big[: lr_side[1], : lr_side[0]].transpose(2, 0, 1)[None].astype(np.float32) / 255).to(dev)
        paths = [("torch fp32 eager", loaded.model.to(dev), torch.float32, False)]
        if dev == "cuda":
            deploy = to_deploy(loaded.model, split_concat=False)  # as the torch backend runs it
            paths.append(("torch fp16 channels_last deploy", deploy.to(dev, torch.float16)
                          .to(memory_format=torch.channels_last), torch.float16, True))
        for label, model, dtype, cl in paths:
            xi = x.to(dtype)
            if cl:
                xi = xi.contiguous(memory_format=torch.channels_last)
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                med, mean = timer(lambda: model(xi), runs, warm)
            mem = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else float("nan")
            psnr = evaluate(torch_upscale_fn(model, dev, dtype), bundled_set5(), 4, ssim=False).psnr_y
            eager_ms.setdefault(mname, med)
            print(f"| {mname} | {label} | {psnr:.3f} | {loaded.num_params / 1e6:.3f} | {med:.2f} | {mean:.2f} | {mem:.0f} |")
    if "bsrn-s-x4" in args.models.split(",") and dev == "cuda":
        from bsrn_edge.runtime.backends.torch import TorchBackend

        be = TorchBackend("bsrn-s-x4", device="cuda", precision="fp16", cuda_graph=True)
        x4k = np.ascontiguousarray(np.tile(img, (5, 8, 1))[:540, :960].transpose(2, 0, 1)[None].astype(np.float32) / 255)
        t = torch.from_numpy(x4k).to("cuda", torch.float16).contiguous(memory_format=torch.channels_last)
        med, mean = timer(lambda: be._run(t), runs, warm)
        print(f"\nBSRN-S 960×540 → 3840×2160, fp16 + CUDA graph: median {med:.2f} ms, mean {mean:.2f} ms "
              f"(eager fp32 320×180: {eager_ms.get('bsrn-s-x4', float('nan')):.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
