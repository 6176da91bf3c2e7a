"""The export pipeline: checkpoint → ONNX → simplified → validated → FP16 (audited) → engine.

Each step is a named function elsewhere in this package; this module only sequences them, keeps
artifacts in memory until every validation passed, then writes them atomically.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from bsrn_edge import __version__
from bsrn_edge._lazy import available
from bsrn_edge.errors import InputError, ValidationError
from bsrn_edge.imageio import write_atomic
from bsrn_edge.meta import ModelMeta

from .engine_cache import EngineProfile

__all__ = ["ExportOptions", "ExportResult", "export_checkpoint", "artifact_paths", "check_outputs", "build_engine_step"]

Report = Callable[[str], None]
_IMG = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ExportOptions:
    fp16: bool = False
    fp16_io: bool = False
    calib: Path | None = None
    profile: EngineProfile | None = None
    engine: str = "auto"  # auto: build when TensorRT and a GPU exist; require: fail otherwise; skip
    force: bool = False
    opset: int = 17


@dataclass
class ExportResult:
    stem: str
    files: dict[str, Path] = field(default_factory=dict)
    node_counts: dict[str, int] = field(default_factory=dict)
    validation: list[Any] = field(default_factory=list)
    fp32_nodes: dict[str, str] = field(default_factory=dict)
    engine_note: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)


def artifact_paths(out_dir: Path, stem: str, fp16: bool) -> dict[str, Path]:
    paths = {"onnx": out_dir / f"{stem}.onnx", "manifest": out_dir / f"{stem}.manifest.json"}
    if fp16:
        paths["fp16_onnx"] = out_dir / f"{stem}.fp16.onnx"
    return paths


def check_outputs(paths: Sequence[Path], out_dir: Path, force: bool) -> None:
    """Refuse to overwrite without --force, and fail early on an unwritable directory."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --force to overwrite or choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".bsrn-write-test")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write there ({exc.strerror}); choose a writable --out directory") from exc


def _stem_for(ckpt: str) -> str:
    p = Path(ckpt)
    return p.stem if p.exists() else ckpt.lower()


def export_checkpoint(ckpt: str, out_dir: Path, opts: ExportOptions, report: Report = print) -> ExportResult:
    """Run every export step for ``ckpt`` (a file or bundled name) into ``out_dir``.

    Nothing is written under a final name unless all validations pass.
    """
    import numpy as np

    from bsrn_edge.checkpoint import load_model

    from .fp16 import audit_ranges, calibration_tiles, fp16_from_onnx
    from .onnx_steps import linear_leftovers, onnx_from_model, op_counts, set_metadata, simplify_onnx
    from .validate import reference_outputs, validate_onnx

    out_dir = Path(out_dir)
    stem = _stem_for(ckpt)
    paths = artifact_paths(out_dir, stem, opts.fp16)
    check_outputs(list(paths.values()), out_dir, opts.force)
    calib_files: list[Path] = []
    if opts.calib is not None:
        if not Path(opts.calib).is_dir():
            raise InputError(f"--calib {opts.calib}: not a directory; expected a folder of images")
        calib_files = sorted(p for p in Path(opts.calib).iterdir() if p.suffix.lower() in _IMG)
        if not calib_files:
            raise InputError(f"--calib {opts.calib}: holds no images ({', '.join(_IMG)})")

    t0 = time.perf_counter()
    loaded = load_model(ckpt)
    v = loaded.variant
    profile = (opts.profile or default_profile(v.min_size, v.tile)).validate(v.min_size, "bsrn-export")
    report(f"loaded {loaded.source}: {v.name}, ×{v.scale}, {loaded.num_params:,} parameters")
    result = ExportResult(stem=stem)

    raw = onnx_from_model(loaded, opset=opts.opset)
    simplified = simplify_onnx(raw)
    result.node_counts = {"exported": len(raw.graph.node), "simplified": len(simplified.graph.node)}
    leftovers = linear_leftovers(simplified)
    report(f"onnx: {len(raw.graph.node)} nodes exported, {len(simplified.graph.node)} after onnxsim "
           f"({dict(op_counts(simplified).most_common(6))}); Linear Transpose/MatMul pairs left: {leftovers}")
    meta = ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256,
                     __version__, input_range=v.input_range)
    set_metadata(simplified, meta)
    fp32_bytes = simplified.SerializeToString()

    ref = reference_outputs(loaded.model, v.scale, calib_files)
    report(f"validating on {len(ref.inputs) - len(calib_files)} Set5 ×{v.scale} images"
           f"{f' + {len(calib_files)} calibration images' if calib_files else ''}")
    row32 = validate_onnx(fp32_bytes, ref, artifact=paths["onnx"].name, precision="fp32")
    result.validation.append(row32)
    artifacts: dict[str, bytes] = {"onnx": fp32_bytes}

    if opts.fp16:
        images = [(x[0].transpose(1, 2, 0) * 255).round().astype(np.uint8) for x in ref.inputs]
        audit = audit_ranges(simplified, calibration_tiles(images, profile.max_tile), profile.max_tile)
        half, kept = fp16_from_onnx(simplified, audit, io_fp16=opts.fp16_io)
        set_metadata(half, replace(meta, precision="fp16", io_dtype="float16" if opts.fp16_io else "float32"))
        result.fp32_nodes = kept
        peak = audit.peak
        report(f"fp16: audit on {len(images)} images at {profile.max_tile}px, peak |activation| "
               f"{peak.max_abs:.4g} at {peak.node}; {len(kept)} nodes kept in FP32" if peak else "fp16: no float nodes")
        half_bytes = half.SerializeToString()
        row16 = validate_onnx(half_bytes, ref, artifact=paths["fp16_onnx"].name, precision="fp16",
                              fp32_psnr=row32.psnr_onnx)
        result.validation.append(row16)
        artifacts["fp16_onnx"] = half_bytes
        audit_dict = audit.to_dict()
    else:
        audit_dict = None

    result.manifest = {
        "bsrn_edge_version": __version__,
        "created_unix": int(time.time()),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "checkpoint": {"source": loaded.source, "sha256": loaded.sha256, "variant": v.name, "scale": v.scale},
        "metadata": meta.__dict__,
        "node_counts": result.node_counts,
        "linear_transpose_matmul_pairs": leftovers,
        "validation": [r.to_dict() for r in result.validation],
        "fp16_audit": audit_dict,
        "profile": profile.__dict__,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    failed = [r for r in result.validation if not r.passed]
    if failed:
        err = ValidationError("nothing written: " + "; ".join(f"{r.artifact}: {r.reason}" for r in failed))
        err.rows = result.validation  # type: ignore[attr-defined]
        raise err
    for key, data in artifacts.items():
        write_atomic(paths[key], data)
        result.files[key] = paths[key]
    write_atomic(paths["manifest"], json.dumps(result.manifest, indent=2).encode())
    result.files["manifest"] = paths["manifest"]
    source = paths["fp16_onnx"] if opts.fp16 else paths["onnx"]
    result.engine_note = build_engine_step(source, profile, "fp16" if opts.fp16 else "fp32", opts.engine, report)
    if result.engine_note.startswith("built") or result.engine_note.startswith("reused"):
        result.files["engine"] = engine_path_for(source)
    return result


def default_profile(min_size: int, tile: int) -> EngineProfile:
    """Defaults: tiles from 32 px (or the model minimum) to 256 px, optimised for the recommended tile."""
    lo = max(32, min_size)
    return EngineProfile(min_tile=lo, opt_tile=max(lo, min(tile, 256)), max_tile=max(256, tile), max_batch=4, opt_batch=1)


def engine_path_for(onnx_path: Path) -> Path:
    name = onnx_path.name[: -len(".onnx")]
    if not name.endswith(".fp16") and not name.endswith(".fp32"):
        name += ".fp32"
    return onnx_path.with_name(name + ".engine")


def tensorrt_unavailable_reason() -> str | None:
    """Why the engine step cannot run here, or None when TensorRT and a CUDA GPU are present."""
    if not available("tensorrt"):
        return "TensorRT is not installed (pip install 'bsrn-edge[tensorrt]' on the target machine)"
    if not available("pycuda.driver"):
        return "pycuda is not installed (pip install 'bsrn-edge[tensorrt]')"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA GPU is visible"
    except Exception as exc:  # noqa: BLE001 - any driver failure means no GPU for us
        return f"no usable CUDA GPU ({exc})"
    return None


def build_engine_step(onnx_path: Path, profile: EngineProfile, precision: str, mode: str, report: Report) -> str:
    """Build the TensorRT engine, or explain why it was skipped (``mode='require'`` makes that an error)."""
    if mode == "skip":
        return "skipped (--no-engine)"
    reason = tensorrt_unavailable_reason()
    target = engine_path_for(onnx_path)
    if reason is not None:
        cmd = (f"bsrn-export --onnx {onnx_path} --engine --min-tile {profile.min_tile} --opt-tile {profile.opt_tile} "
               f"--max-tile {profile.max_tile} --max-batch {profile.max_batch}")
        msg = f"engine step skipped: {reason}. On the target device run:\n  {cmd}"
        if mode == "require":
            from bsrn_edge.errors import MissingDependencyError

            raise MissingDependencyError(f"--engine was requested but {reason}. Run on the target device:\n  {cmd}")
        report(msg)
        return msg
    from .tensorrt_build import engine_from_onnx

    from bsrn_edge.runtime.model_info import read_onnx_props

    res = engine_from_onnx(onnx_path, target, profile, precision=precision, report=report)
    props = dict(read_onnx_props(onnx_path))
    props.update({"bsrn_edge.profile_" + k: str(v) for k, v in profile.__dict__.items()})
    write_atomic(Path(str(target) + ".meta.json"), json.dumps(props, indent=2).encode())
    note = f"{'reused' if res.reused else 'built'} {res.path} (key {res.key.digest})"
    report(note)
    return note
