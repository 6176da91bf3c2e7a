"""bsrn-bench: a thin command line over :func:`bsrn_edge.bench.iter_bench`.

Prints one row per model × backend × precision (fidelity, complexity beside the published figures,
memory, runtime) as Markdown, CSV or JSON. Exit status: 0 when every row ran or was skipped (a backend
absent here, e.g. TensorRT), 1 when a row failed, 2 for a bad argument, 3 for a missing dependency.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Iterable, TypeVar

from bsrn_edge.errors import BsrnEdgeError, MissingDependencyError
from bsrn_edge.imageio import write_atomic

from .config import BACKENDS, DEFAULT_BACKENDS, DEFAULT_MODELS, BenchConfig, parse_backends, parse_models, parse_size
from .machine import machine_info
from .report import header_lines, rows_to_csv, rows_to_json, rows_to_markdown
from .rows import BenchRow
from .run import iter_bench

EXIT_ROW_FAILED, EXIT_INPUT, EXIT_DEPENDENCY = 1, 2, 3
T = TypeVar("T")

_EPILOG = """\
examples:
  bsrn-bench                                             # every model and backend on the CPU, Markdown
  bsrn-bench --models bsrn-s-x4 --backends torch,onnxruntime --runs 5 --format json
  bsrn-bench --data DIV2K_valid --device cuda --backends torch,tensorrt --out bench.csv --format csv

--size is WIDTHxHEIGHT of the LR timing input (a bundled Set5 image mirrored to that size).
--data takes img_NNN_SRF_4_LR.png/_HR.png pairs or DIV2K naming (0801.png with 0801x4.png).
ONNX exports are cached in --cache-dir (default ~/.cache/bsrn-edge/bench) and reused.
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bsrn-bench",
        description="Benchmark models × backends as in the NTIRE Efficient SR table: PSNR, complexity, memory, runtime.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help=f"comma-separated model names (default: {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help=f"comma-separated, from {','.join(BACKENDS)} (default: all but openvino-int8, which first "
                         "exports an INT8 model: bsrn-export --int8, minutes per model)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default: cpu)")
    ap.add_argument("--data", type=Path, help="folder of LR/HR pairs (default: the bundled Set5 ×4)")
    ap.add_argument("--size", default="256x256", help="LR timing input WIDTHxHEIGHT (default: 256x256)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per row (default: 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per row (default: 2)")
    ap.add_argument("--threads", type=int, help="intra-op threads for torch and onnxruntime (default: their own)")
    ap.add_argument("--cache-dir", type=Path, help="where exported ONNX files are kept (default: ~/.cache/bsrn-edge/bench)")
    ap.add_argument("--format", default="md", choices=("md", "csv", "json"), help="output format (default: md)")
    ap.add_argument("--out", type=Path, help="write the table to this file instead of stdout")
    ap.add_argument("-v", "--verbose", action="store_true", help="log export and cache steps to stderr")
    return ap


def tqdm_progress(it: Iterable[T], desc: str) -> Iterable[T]:
    """``it`` wrapped in a tqdm bar on stderr labelled ``desc``."""
    from tqdm import tqdm

    return tqdm(it, desc=desc, file=sys.stderr, leave=False, disable=None, unit="img")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed arguments into a validated :class:`BenchConfig` (raises :class:`InputError`)."""
    return BenchConfig(
        models=parse_models(args.models),
        backends=parse_backends(args.backends),
        device=args.device,
        data=args.data,
        size=parse_size(args.size),
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        cache_dir=args.cache_dir,
    ).validate()


def render(rows: list[BenchRow], fmt: str, header: list[str]) -> str:
    if fmt == "json":
        return rows_to_json(rows) + "\n"
    if fmt == "csv":
        return rows_to_csv(rows)
    return rows_to_markdown(rows, header)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="bsrn-bench: %(message)s")
    err = sys.stderr
    try:
        cfg = config_from_args(args)
        header = header_lines(machine_info(cfg), cfg)
        if args.format != "md":  # csv and json stay machine-readable; the header goes to stderr
            for line in header:
                print(f"# {line}", file=err)
        rows: list[BenchRow] = []
        from tqdm import tqdm

        with tqdm(total=len(cfg.models) * len(cfg.backends), desc="bsrn-bench", file=sys.stderr, leave=False,
                  disable=None, unit="row") as bar:
            for row in iter_bench(cfg, progress=tqdm_progress):
                rows.append(row)
                bar.update(1)
                if row.status != "ok":
                    print(f"bsrn-bench: {row.model}/{row.backend}: {row.note or row.status}", file=err)
        text = render(rows, args.format, header)
        if args.out is not None:
            write_atomic(args.out, text.encode("utf-8"))
            print(f"bsrn-bench: wrote {len(rows)} rows to {args.out}", file=err)
        else:
            sys.stdout.write(text)
    except MissingDependencyError as exc:
        print(f"bsrn-bench: error: {exc}", file=err)
        return EXIT_DEPENDENCY
    except BsrnEdgeError as exc:
        print(f"bsrn-bench: error: {exc}", file=err)
        return EXIT_INPUT
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        print(f"bsrn-bench: {len(failed)} of {len(rows)} rows failed: "
              + ", ".join(f"{r.model}/{r.backend}" for r in failed), file=err)
        return EXIT_ROW_FAILED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
