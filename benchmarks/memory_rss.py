"""Peak memory of a large upscale: 4000×3000 → 16000×12000 with BSRN-S on the default CPU path.

    python benchmarks/memory_rss.py [--size 4000x3000] [--model bsrn-s-x4]

Prints the peak resident set size (VmHWM) of this process during ``Upscaler.upscale`` next to the
output array's size; the target is peak RSS < output size + 500 MB. The input is real image content
(a bundled Set5 image mirrored out to the size), never noise. Export happens in a child process so
PyTorch's memory does not count.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import machine_line, real_frame

from bsrn_edge.bench.memory import proc_status_kb


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (this script needs Linux)."""
    kb = proc_status_kb(field)
    if kb is None:
        raise RuntimeError(f"{field} not in /proc/self/status: this benchmark needs Linux")
    return kb * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--model", default="bsrn-s-x4")
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    # export (or find in the cache) in a child so torch never enters this process
    code = ("import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); from _common import exported_onnx; "
            "print(exported_onnx(sys.argv[1], Path(sys.argv[2]) if sys.argv[2] else None))")
    child = subprocess.run([sys.executable, "-c", code, args.model, str(args.cache or "")], check=True,
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    onnx = Path(child.stdout.strip().splitlines()[-1])
    from bsrn_edge.runtime import Upscaler

    print(machine_line())
    image = real_frame(w, h)
    up = Upscaler(onnx)
    tile = up.tile_for(h, w)
    base = _status("VmRSS")
    t = time.perf_counter()
    out = up.upscale(image)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    assert "torch" not in sys.modules
    out_mb, peak_mb, base_mb = out.nbytes / 2**20, peak / 2**20, base / 2**20
    print("| model | input | output | tile (auto) | output array [MB] | RSS before [MB] | peak RSS [MB] | "
          "bound (output + 500) [MB] | within | time [s] |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    print(f"| {args.model} | {w}×{h} | {out.shape[1]}×{out.shape[0]} | {tile} | {out_mb:.0f} | {base_mb:.0f} | "
          f"{peak_mb:.0f} | {out_mb + 500:.0f} | {'yes' if peak_mb < out_mb + 500 else 'NO'} | {seconds:.0f} |")
    del image
    return 0 if peak_mb < out_mb + 500 else 1


if __name__ == "__main__":
    raise SystemExit(main())
