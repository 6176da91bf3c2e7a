"""Per-frame latency of the camera path (``Upscaler.upscale_into``) on the default CPU backend.

    python benchmarks/frame_latency.py [--models bsrn-s-x4] [--runs 30]

Prints median and p95 per frame for 320×180 and 640×360 uint8 frames (real image content), the
machine, and the same run's plain ``upscale()`` figure for comparison.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import exported_onnx, machine_line, real_frame, time_calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bsrn-s-x4")
    ap.add_argument("--sizes", default="320x180,640x360")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args()
    from bsrn_edge.runtime import Upscaler

    print(machine_line())
    print("| model | frame | backend | upscale_into median [ms] | p95 [ms] | upscale() median [ms] | fps (median) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        up = Upscaler(exported_onnx(name, args.cache))
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            frame = real_frame(w, h)
            out = np.empty((h * up.scale, w * up.scale, 3), np.uint8)
            t_into = time_calls(lambda: up.upscale_into(frame, out), args.runs, warmup=2)
            t_plain = time_calls(lambda: up.upscale(frame), max(5, args.runs // 3), warmup=2)
            print(f"| {name} | {w}×{h} | {up.backend_name} | {t_into.median:.1f} | {t_into.p95:.1f} | "
                  f"{t_plain.median:.1f} | {1000 / t_into.median:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
