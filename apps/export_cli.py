"""bsrn-export: a thin command line over :mod:`bsrn_edge.export.pipeline`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bsrn_edge.errors import BsrnEdgeError, EngineBuildError, InputError, MissingDependencyError, ValidationError
from bsrn_edge.export.engine_cache import EngineProfile
from bsrn_edge.meta import INT8_MAX_LOSS_DB

from .args import EXIT_FAILED, EXIT_MISSING, EXIT_USAGE, whole_number

EXIT_VALIDATION = EXIT_WRITE = EXIT_FAILED  # a failed validation; the work ran but a file could not be written
EXIT_INPUT, EXIT_DEPENDENCY = EXIT_USAGE, EXIT_MISSING


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bsrn-export",
        description="Export a BSRN checkpoint to ONNX (simplified, validated), optionally FP16, uint8 pixel I/O and INT8, "
                    "and a TensorRT engine.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="checkpoint file (.pth/.safetensors) or bundled name (bsrn-s-x4, bsrn-x2/x3/x4, bsrn-s-x4-ntire)")
    src.add_argument("--onnx", type=Path, help="build the TensorRT engine from an exported ONNX (no PyTorch needed)")
    ap.add_argument("--out", type=Path, default=Path("exported"), help="output directory (default: ./exported)")
    ap.add_argument("--fp16", action="store_true", help="also write an audited FP16 ONNX (and build the engine from it)")
    ap.add_argument("--fp16-io", action="store_true", help="FP16 inputs and outputs too (default: FP32 I/O)")
    ap.add_argument("--uint8-io", action="store_true",
                    help="also write <stem>.u8.onnx (and <stem>.fp16.u8.onnx with --fp16): uint8 N×H×W×3 RGB in and out, "
                         "normalisation, clamp and rounding inside the graph; the engine is built from it (fastest GPU path)")
    ap.add_argument("--calib", type=Path, help="folder of extra real images for validation and the FP16 audit; with "
                                               "--int8 the INT8 calibration images (default: Set5 and B100 LR)")
    ap.add_argument("--int8", action="store_true",
                    help="also write <stem>.int8.onnx (NNCF INT8, the layers measured most sensitive kept in float), "
                         "validated on OpenVINO against FP32 on Set5 and B100; with --onnx FILE, from that FP32 ONNX "
                         "(written beside it). Over --max-loss-db nothing is written and the exit code is 1")
    ap.add_argument("--max-loss-db", type=_loss, default=INT8_MAX_LOSS_DB, metavar="DB",
                    help=f"PSNR-Y that INT8 may lose against FP32 on the worse of Set5 and B100 (default {INT8_MAX_LOSS_DB:g}; "
                         "backend='auto' considers an INT8 model only within the default)")
    ap.add_argument("--min-tile", type=whole_number(1), help="smallest LR tile side of the engine profile (default 32)")
    ap.add_argument("--opt-tile", type=whole_number(1), help="LR tile side the engine is tuned for (default: the model's tile)")
    ap.add_argument("--max-tile", type=whole_number(1), help="largest LR tile side of the engine profile (default 256)")
    ap.add_argument("--max-batch", type=whole_number(1), help="largest batch of tiles of the engine profile (default 4)")
    eng = ap.add_mutually_exclusive_group()
    eng.add_argument("--engine", action="store_true", help="fail when the TensorRT engine cannot be built here")
    eng.add_argument("--no-engine", action="store_true", help="do not try to build a TensorRT engine")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (≥ 17, default 17)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the validation table and errors")
    return ap


def _loss(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a loss in dB ≥ 0 (e.g. 0.1), got {text!r}")
    return value


def _profile(args: argparse.Namespace, min_size: int, tile: int) -> EngineProfile:
    from bsrn_edge.export.pipeline import default_profile

    d = default_profile(min_size, tile)
    return EngineProfile(
        min_tile=args.min_tile or d.min_tile,
        opt_tile=args.opt_tile or max(args.min_tile or 0, min(d.opt_tile, args.max_tile or d.opt_tile)),
        max_tile=args.max_tile or max(d.max_tile, args.opt_tile or 0),
        max_batch=args.max_batch or d.max_batch,
        opt_batch=1,
    ).validate(min_size, "bsrn-export")


def print_table(rows: list, file=None) -> None:  # type: ignore[no-untyped-def]
    """One row per artifact: what it was compared with, the difference, PSNR-Y of the reference and of the artifact,
    and over how many images (uint8 rows add B100 images to Set5's five, so their PSNR is not the float rows').
    ``file``: default the standard output of the moment (not the one there was at import)."""
    file = file or sys.stdout
    print("| artifact | precision | compared with | max abs diff | PSNR-Y reference | PSNR-Y artifact | images | result |",
          file=file)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", file=file)
    for r in rows:
        fmt = lambda x: "–" if x != x else f"{x:.3f}"  # noqa: E731 - NaN when no HR images
        print(f"| {r.artifact} | {r.precision} | {r.compared_with} | {r.diff_text} | {fmt(r.psnr_torch)} | "
              f"{fmt(r.psnr_onnx)} | {r.psnr_images or '–'} | {'pass' if r.passed else 'FAIL: ' + r.reason} |", file=file)


def _onnx_only(args: argparse.Namespace, say) -> int:  # type: ignore[no-untyped-def]
    from bsrn_edge.export.pipeline import build_engine_step
    from bsrn_edge.meta import ModelMeta
    from bsrn_edge.runtime.model_info import read_onnx_props

    path: Path = args.onnx
    if not path.is_file():
        raise InputError(f"--onnx {path}: no such file; pass an ONNX written by bsrn-export")
    if args.int8:
        from bsrn_edge.export.pipeline import ExportOptions, int8_from_onnx

        opts = ExportOptions(calib=args.calib, force=args.force, int8=True, max_loss_db=args.max_loss_db)
        for kind, written in int8_from_onnx(path, opts, report=say).files.items():
            say(f"wrote {kind}: {written}")
        return 0
    meta = ModelMeta.from_props(read_onnx_props(path), str(path))
    profile = _profile(args, meta.min_size, meta.tile)
    build_engine_step(path, profile, meta.precision, "require", say)
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Every check that needs no work, before anything is read or created (errors exit 2)."""
    if args.opset < 17:
        raise InputError(f"--opset {args.opset}: opset 17 or newer is required")
    if args.int8:
        import importlib.util

        missing = [m for m in ("nncf", "openvino", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(f"--int8 needs {', '.join(missing)}: pip install 'bsrn-edge[int8,cpu]'")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: is a file, not a folder; choose another --out directory")
    if args.ckpt is not None:
        from bsrn_edge.checkpoint import resolve_checkpoint

        resolve_checkpoint(args.ckpt)  # a name, a file or nothing: decided before --out can shadow it


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    say = (lambda _m: None) if args.quiet else (lambda m: print(m, flush=True))
    try:
        _check_arguments(args)
        if args.onnx is not None:
            return _onnx_only(args, say)
        from bsrn_edge.export.pipeline import ExportOptions, export_checkpoint
        from bsrn_edge.variants import get_variant

        profile = None
        if any(x is not None for x in (args.min_tile, args.opt_tile, args.max_tile, args.max_batch)):
            try:
                v = get_variant(args.ckpt)
                min_size, tile = v.min_size, v.tile
            except InputError:
                min_size, tile = 15, 128
            profile = _profile(args, min_size, tile)
        opts = ExportOptions(fp16=args.fp16 or args.fp16_io, fp16_io=args.fp16_io, uint8_io=args.uint8_io,
                             calib=args.calib, profile=profile,
                             engine="require" if args.engine else "skip" if args.no_engine else "auto",
                             force=args.force, opset=args.opset, int8=args.int8, max_loss_db=args.max_loss_db)
        try:
            result = export_checkpoint(args.ckpt, args.out, opts, report=say)
        except ValidationError as exc:
            rows = getattr(exc, "rows", None)
            if rows:
                print_table(rows, sys.stderr)
            raise
        print_table(result.validation)
        if result.fp32_nodes and not args.quiet:
            reasons: dict[str, int] = {}
            for why in result.fp32_nodes.values():
                key = why.split(" on calibration")[0]
                reasons[key] = reasons.get(key, 0) + 1
            say("kept in FP32: " + "; ".join(f"{n} × {k}" for k, n in reasons.items()))
        for kind, path in result.files.items():
            say(f"wrote {kind}: {path}")
        return 0
    except ValidationError as exc:
        print(f"bsrn-export: validation failed: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except MissingDependencyError as exc:
        print(f"bsrn-export: {exc}", file=sys.stderr)
        return EXIT_DEPENDENCY
    except EngineBuildError as exc:  # the work ran and failed: not a usage error
        kept = "; the .onnx files written before it are kept" if args.onnx is None else ""
        print(f"bsrn-export: engine build failed: {exc}{kept}", file=sys.stderr)
        return EXIT_FAILED
    except BsrnEdgeError as exc:
        print(f"bsrn-export: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # a full disk, a read-only folder, a folder taking an output name
        print(f"bsrn-export: cannot write {exc.filename or args.out}: {exc.strerror or exc}; "
              f"no file was left half-written", file=sys.stderr)
        return EXIT_WRITE


if __name__ == "__main__":
    raise SystemExit(main())
