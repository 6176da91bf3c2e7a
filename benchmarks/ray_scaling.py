"""Images per second of ``bsrn-upscale --ray`` with 1 and 2 actors, next to the single-process command.

    python benchmarks/ray_scaling.py [--images 16,48] [--repeats 2] [--model bsrn-s-x4]

Needs the ``ray`` extra. Each collection is ``--images`` real LR images (bundled Set5 ×4, plus
../shared/data Set14 ×4 where present, repeated under new names to reach the count). Each
configuration runs the real command in this process, into a fresh output folder, ``--repeats``
times interleaved; the table gives the median wall time, which includes opening the model (in each
actor for Ray) but not starting the local Ray itself (printed on its own line). On one machine the
point is Ray's overhead: 1 actor with all the CPUs against the single-process command, which uses
the same ONNX Runtime threads. Two collection sizes split each configuration's time into a fixed cost
per run and a cost per image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import exported_onnx, machine_line

from bsrn_edge.datasets import bundled_set5, shared_data_dir
from bsrn_edge.hostinfo import usable_cores


def _collection(folder: Path, count: int) -> list[Path]:
    sources = sorted(bundled_set5().glob("*_LR.png"))
    shared = shared_data_dir()
    if shared is not None and (shared / "Set14" / "x4").is_dir():
        sources += sorted((shared / "Set14" / "x4").glob("*_LR.png"))
    folder.mkdir(parents=True)
    return [Path(shutil.copy(sources[i % len(sources)], folder / f"{i:03d}_{sources[i % len(sources)].name}"))
            for i in range(count)]


def _timed(argv: list[str]) -> float:
    from bsrn_edge.apps.upscale import main

    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"bsrn-upscale {' '.join(argv)} exited {code}")
    return time.perf_counter() - start


def _configs(cores: int) -> dict[str, tuple[int, str, list[str]]]:
    """name → (actors, CPUs, extra bsrn-upscale arguments); 1 actor gets every CPU, as the single process."""
    half = max(1, cores // 2)
    return {
        "single process (bsrn-upscale)": (1, f"{cores} threads", []),
        "Ray, 1 actor": (1, f"{cores} CPUs", ["--ray", "--actors", "1", "--cpus-per-actor", str(cores)]),
        "Ray, 2 actors": (2, f"{half} CPU each", ["--ray", "--actors", "2", "--cpus-per-actor", str(half)]),
    }


def _fit(sizes: list[int], walls: list[float]) -> tuple[float, float]:
    """(fixed seconds, seconds per image) of the line through (size, wall)."""
    per = statistics.linear_regression(sizes, walls)
    return per.intercept, per.slope


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="16,48", help="collection sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="bsrn-s-x4")
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args()
    import ray

    sizes = [int(n) for n in args.images.split(",")]
    cores = usable_cores()
    configs = _configs(cores)
    model = str(exported_onnx(args.model, args.cache))
    work = Path(tempfile.mkdtemp(prefix="ray_scaling_"))
    walls: dict[tuple[str, int], list[float]] = {(name, n): [] for name in configs for n in sizes}
    try:
        for n in sizes:
            _collection(work / f"in_{n}", n)
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t0
        for r in range(args.repeats):  # interleaved, so a busy moment of the machine hits every row alike
            for (name, n), runs in walls.items():
                out = work / f"out_{r}_{len(runs)}_{n}_{name[:3]}"
                runs.append(_timed(["-i", str(work / f"in_{n}"), "-o", str(out), "--model", model, *configs[name][2]]))
                shutil.rmtree(out)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(machine_line() + f"; ray {ray.__version__}")
    print(f"{args.model}, Set5/Set14 ×4 LR images, median of {args.repeats} runs; "
          f"local Ray start-up (not counted below): {started:.1f} s")
    print("| configuration | actors | CPUs | images | wall [s] | images/s | wall vs single process |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    median = {key: statistics.median(runs) for key, runs in walls.items()}
    base = "single process (bsrn-upscale)"
    for (name, n), wall in median.items():
        actors, cpus, _ = configs[name]
        print(f"| {name} | {actors} | {cpus} | {n} | {wall:.2f} | {n / wall:.2f} | {wall / median[base, n] - 1:+.1%} |")
    if len(sizes) > 1:
        print("fixed cost per run and cost per image (line through the sizes above):")
        base_per = _fit(sizes, [median[base, n] for n in sizes])[1]
        for name in configs:
            fixed, per = _fit(sizes, [median[name, n] for n in sizes])
            print(f"  {name}: {fixed:.2f} s + {per:.3f} s/image ({1 / per:.2f} images/s; "
                  f"{per / base_per - 1:+.1%} per image vs single process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
