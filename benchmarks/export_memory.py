"""Peak memory of `bsrn-export`: each case runs in a child process, whose peak RSS is read from the kernel.

    python benchmarks/export_memory.py [--cases bsrn-s-x4:--fp16 bsrn-x4:--fp16,--uint8-io ...]

A case is ``<checkpoint>:<flags>`` (flags comma-separated). Every case exports into a fresh temporary
folder with ``--no-engine`` (the TensorRT build is not part of this measurement). The peak is the child's
``ru_maxrss`` from ``os.wait4``: the largest resident set the export reached, PyTorch included. Targets
(issue 16): an FP16 export peaks at ≤ 1 GB for BSRN-S and ≤ 1.5 GB for BSRN ×4, so both export on an
8 GB machine; cases without ``--fp16`` have no target. Exits 1 when a case fails or misses its target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import machine_line

DEFAULT_CASES = ("bsrn-s-x4:", "bsrn-s-x4:--fp16", "bsrn-s-x4:--fp16,--uint8-io",
                 "bsrn-x4:--fp16", "bsrn-x4:--fp16,--uint8-io")
TARGET_MB = {"bsrn-s-x4": 1000, "bsrn-x4": 1500}  # with --fp16 (issue 16)
_EXPORT = "import sys; from bsrn_edge.apps.export_cli import main; sys.exit(main(sys.argv[1:]))"


def peak_rss_of(cmd: list[str]) -> tuple[int, float, float]:
    """Run ``cmd`` and return (exit code, its peak RSS in MB, wall seconds); Linux/macOS ``wait4`` rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return proc.returncode, usage.ru_maxrss * scale / 2**20, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="CKPT:FLAGS")
    args = ap.parse_args()
    print(machine_line())
    print("| model | flags | peak RSS [MB] | target [MB] | within | time [s] |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    ok = True
    for case in args.cases:
        ckpt, _, flags = case.partition(":")
        extra = [f for f in flags.split(",") if f]
        with tempfile.TemporaryDirectory(prefix="bsrn-export-memory-") as out:
            rc, peak, seconds = peak_rss_of([sys.executable, "-c", _EXPORT, "--ckpt", ckpt, "--out", out,
                                             "--no-engine", "-q", *extra])
        target = TARGET_MB.get(ckpt) if "--fp16" in extra else None
        within = "failed" if rc else "—" if target is None else "yes" if peak <= target else "NO"
        ok &= rc == 0 and within != "NO"
        print(f"| {ckpt} | {' '.join(extra) or '(none)'} | {peak:.0f} | {target or '—'} | {within} | {seconds:.0f} |",
              flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
