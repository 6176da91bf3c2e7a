"""bsrn-demo: the README's first command.

Evaluates the bundled checkpoints on the bundled Set5 ×4 and prints a table (export, upscale and
bench steps are added as those commands land).
"""

from __future__ import annotations

import argparse
import sys

from .errors import BsrnEdgeError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsrn-demo", description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    try:
        from . import load_model
        from .datasets import bundled_set5
        from .evaluate import evaluate, torch_upscale_fn

        print("| model | params | Set5 ×4 PSNR-Y | SSIM-Y | PSNR-RGB (4px) |")
        print("| --- | --- | --- | --- | --- |")
        for name in ("bsrn-s-x4", "bsrn-s-x4-ntire", "bsrn-x4"):
            m = load_model(name)
            s = evaluate(torch_upscale_fn(m.model), bundled_set5(), 4)
            print(f"| {name} | {m.num_params:,} | {s.psnr_y:.2f} | {s.ssim_y:.4f} | {s.psnr_rgb:.2f} |")
    except BsrnEdgeError as exc:
        print(f"bsrn-demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
