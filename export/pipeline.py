"""The export pipeline: checkpoint → ONNX → simplified → validated → FP16 (audited) → BF16 measured → uint8 pixel I/O
→ INT8 (searched and validated) → engine.

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
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bsrn_edge import __version__
from bsrn_edge._lazy import available, require
from bsrn_edge.artifacts import artifact_name, parse_artifact, sibling
from bsrn_edge.errors import InputError, ValidationError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, write_atomic
from bsrn_edge.meta import BF16_LOSS, INT8_LOSS, INT8_MAX_LOSS_DB, META_PREFIX, ModelMeta

from .engine_cache import EngineProfile

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from bsrn_edge.checkpoint import LoadedModel

    from .validate import Reference, ValidationRow

__all__ = ["ExportOptions", "ExportResult", "export_checkpoint", "int8_from_onnx", "artifact_paths", "check_outputs",
           "build_engine_step", "engine_path_for", "default_profile"]

Report = Callable[[str], None]


@dataclass
class ExportOptions:
    fp16: bool = False
    fp16_io: bool = False
    uint8_io: bool = False  # also write the uint8-pixel-I/O graphs (<stem>.u8.onnx, <stem>.fp16.u8.onnx) and build the engine from one
    calib: Path | None = None
    profile: EngineProfile | None = None
    engine: str = "auto"  # auto: build when TensorRT and a GPU exist; require: fail otherwise; skip
    force: bool = False
    opset: int = 17
    int8: bool = False  # also write <stem>.int8.onnx (NNCF QDQ, sensitive layers in float), within max_loss_db of FP32
    max_loss_db: float = INT8_MAX_LOSS_DB


@dataclass
class ExportResult:
    stem: str
    files: dict[str, Path] = field(default_factory=dict)
    node_counts: dict[str, int] = field(default_factory=dict)
    validation: list[Any] = field(default_factory=list)
    fp32_nodes: dict[str, str] = field(default_factory=dict)
    engine_note: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    tensorrt_check: dict[str, list[str]] = field(default_factory=dict)  # artifact → nodes TensorRT would refuse


def artifact_paths(out_dir: Path, stem: str, fp16: bool, uint8_io: bool = False, int8: bool = False) -> dict[str, Path]:
    """Output paths by key (``onnx``, ``fp16_onnx``, ``u8_onnx``, ``fp16_u8_onnx``, ``int8_onnx``, ``manifest``), named
    by bsrn_edge.artifacts."""
    paths = {"onnx": out_dir / artifact_name(stem), "manifest": out_dir / f"{stem}.manifest.json"}
    if int8:
        paths["int8_onnx"] = out_dir / artifact_name(stem, precision="int8")
    if fp16:
        paths["fp16_onnx"] = out_dir / artifact_name(stem, precision="fp16")
    if uint8_io:
        paths["u8_onnx"] = out_dir / artifact_name(stem, pixels="uint8")
        if fp16:
            paths["fp16_u8_onnx"] = out_dir / artifact_name(stem, precision="fp16", pixels="uint8")
    return paths


def check_outputs(paths: Sequence[Path], out_dir: Path, force: bool) -> None:
    """Refuse to overwrite without --force, and fail early on an unwritable directory."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --force to overwrite or choose another --out")
    probe_dir = out_dir  # probe the nearest existing folder: nothing is created before the export succeeds
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"{out_dir}: {probe_dir} is a file, not a folder; choose another --out directory")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".bsrn-write-test")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot write there ({exc.strerror}); choose a writable --out directory") from exc


def _stem_for(ckpt: str) -> str:
    p = Path(ckpt)
    return p.stem if p.is_file() else ckpt.lower()


def _calibration_files(calib: Path | None) -> list[Path]:
    """The images of ``--calib`` (none without it); an empty or missing folder is an input error."""
    if calib is None:
        return []
    if not Path(calib).is_dir():
        raise InputError(f"--calib {calib}: not a directory; expected a folder of images")
    files = sorted(p for p in Path(calib).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"--calib {calib}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


@dataclass
class _Run:
    """What the steps of one export share: the options, the reference outputs and what is produced so far."""

    opts: ExportOptions
    paths: dict[str, Path]
    profile: EngineProfile
    report: Report
    result: ExportResult
    ref: "Reference | None" = None
    models: dict[str, "onnx.ModelProto"] = field(default_factory=dict)  # artifact key → graph, written once all pass
    audit: dict[str, Any] | None = None
    leftovers: int = 0  # Linear Transpose/MatMul pairs onnxsim left
    records: dict[str, Any] = field(default_factory=dict)  # the manifest's "bf16" and "int8" records

    def add(self, key: str, model: "onnx.ModelProto", row: "ValidationRow") -> None:
        self.models[key] = model
        self.result.validation.append(row)


def _fp32_step(run: _Run, loaded: "LoadedModel", calib_files: list[Path]) -> ModelMeta:
    """Export, simplify, stamp the metadata and validate the FP32 graph against PyTorch."""
    from .onnx_steps import linear_leftovers, onnx_from_model, op_counts, set_metadata, simplify_onnx
    from .validate import reference_outputs, validate_onnx

    v = loaded.variant
    raw = onnx_from_model(loaded, opset=run.opts.opset)
    simplified = simplify_onnx(raw)
    run.result.node_counts = {"exported": len(raw.graph.node), "simplified": len(simplified.graph.node)}
    run.leftovers = linear_leftovers(simplified)
    run.report(f"onnx: {len(raw.graph.node)} nodes exported, {len(simplified.graph.node)} after onnxsim "
               f"({dict(op_counts(simplified).most_common(6))}); Linear Transpose/MatMul pairs left: {run.leftovers}")
    meta = ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256,
                     __version__, input_range=v.input_range)
    set_metadata(simplified, meta)
    run.ref = reference_outputs(loaded.model, v.scale, calib_files)
    run.report(f"validating on {len(run.ref.inputs) - len(calib_files)} Set5 ×{v.scale} images"
               f"{f' + {len(calib_files)} calibration images' if calib_files else ''}")
    run.add("onnx", simplified, validate_onnx(simplified.SerializeToString(), run.ref, artifact=run.paths["onnx"].name,
                                              precision="fp32"))
    return meta


def _fp16_step(run: _Run, meta: ModelMeta) -> None:
    """Audit activation ranges on the calibration tiles, convert to FP16 and validate against the FP32 graph's PSNR."""
    from bsrn_edge.pixels import from_nchw

    from .fp16 import audit_ranges, calibration_tiles, fp16_from_onnx
    from .onnx_steps import set_metadata
    from .validate import validate_onnx

    assert run.ref is not None
    tile = run.profile.max_tile
    images = [from_nchw(x) for x in run.ref.inputs]
    audit = audit_ranges(run.models["onnx"], calibration_tiles(images, tile), tile)
    half, kept = fp16_from_onnx(run.models["onnx"], audit, io_fp16=run.opts.fp16_io)
    set_metadata(half, replace(meta, precision="fp16", io_dtype="float16" if run.opts.fp16_io else "float32"))
    run.result.fp32_nodes, run.audit = kept, audit.to_dict()
    peak = audit.peak
    run.report(f"fp16: audit on {len(images)} images at {tile}px, peak |activation| {peak.max_abs:.4g} at {peak.node}; "
               f"{len(kept)} nodes kept in FP32" if peak else "fp16: no float nodes")
    row32 = run.result.validation[0]
    run.add("fp16_onnx", half, validate_onnx(half.SerializeToString(), run.ref, artifact=run.paths["fp16_onnx"].name,
                                             precision="fp16", fp32_psnr=row32.psnr_onnx))


def _uint8_step(run: _Run) -> None:
    """Wrap every float graph into uint8 pixel I/O and check it against its float sibling + host conversion."""
    from .pixel_io import pixel_io_from_onnx
    from .validate import uint8_images, validate_uint8

    assert run.ref is not None
    images, hr = uint8_images(run.ref)
    run.report(f"uint8 I/O: checking against the float graphs on {len(images)} images")
    for key, precision in (("onnx", "fp32"), ("fp16_onnx", "fp16")):
        if key not in run.models:
            continue
        u8_key = "u8_onnx" if key == "onnx" else "fp16_u8_onnx"
        wrapped = pixel_io_from_onnx(run.models[key], run.paths[key].name)
        row = validate_uint8(wrapped.SerializeToString(), run.models[key].SerializeToString(), images, hr,
                             run.ref.scale, artifact=run.paths[u8_key].name, precision=precision,
                             float_artifact=run.paths[key].name)
        run.add(u8_key, wrapped, row)


def _tensorrt_check_step(run: _Run) -> None:
    """Every graph against onnx-tensorrt's support table (``trt_support``): which node would fail, before any build.
    The INT8 graph (an OpenVINO and NPU target) comes after: its Q/DQ nodes are not among the table's rows."""
    from .trt_support import TENSORRT_VERSION, check_graph

    for key, model in run.models.items():
        name = run.paths[key].name
        problems = [str(p) for p in check_graph(model)]
        run.result.tensorrt_check[name] = problems
        verdict = "ok" if not problems else f"{len(problems)} node(s) TensorRT would refuse: " + "; ".join(problems[:3])
        run.report(f"tensorrt check (TensorRT {TENSORRT_VERSION} support table): {name}: {verdict}")


def _bf16_step(run: _Run) -> None:
    """Measure OpenVINO BF16 against its FP32 (when OpenVINO and native BF16 are here) and record the loss in the FP32
    graph's metadata, which the uint8-I/O graphs inherit (see :mod:`.bf16`)."""
    from .bf16 import bf16_check
    from .onnx_steps import set_prop
    from .validate import validation_sets

    assert run.ref is not None
    rec = run.records["bf16"] = bf16_check(run.models["onnx"].SerializeToString(), validation_sets(run.ref), run.ref.scale)
    if rec["measured"]:
        set_prop(run.models["onnx"], BF16_LOSS, f"{rec['loss_db']:.4f}")
        run.report(f"bf16: OpenVINO BF16 against its FP32 loses {rec['loss_db']:.3f} dB PSNR-Y ("
                   + ", ".join(f"{k} {v['loss_db']:+.3f}" for k, v in rec["sets"].items())
                   + f"); backend='auto' {'may use' if rec['within_budget'] else 'will not use'} BF16")
    elif "not installed" not in rec["reason"]:
        run.report(f"bf16: not measured: {rec['reason']}")


def _int8_images(scale: int, calib_files: list[Path]) -> tuple[list, dict[str, list]]:
    """INT8 calibration images (``--calib``'s, else Set5 and B100 LR) and the (LR, HR) pairs the layer search judges
    on (Set5, and B100 images apart from the validation ones where ../shared/data has them)."""
    from bsrn_edge.datasets import bundled_arrays
    from bsrn_edge.imageio import read_rgb

    from .validate import PRECISION_B100_IMAGES, shared_pairs

    set5 = [(lr, hr) for _, lr, hr in bundled_arrays(scale)]
    b100 = shared_pairs(scale, PRECISION_B100_IMAGES, 10**6)
    calib = [read_rgb(f) for f in calib_files] if calib_files else [lr for lr, _ in set5 + b100]
    from .int8 import SEARCH_B100

    return calib, {"Set5": set5, **({"B100": b100[:SEARCH_B100]} if b100 else {})}


def _int8_work(fp32: "onnx.ModelProto", meta: ModelMeta, ref: "Reference", calib_files: list[Path], budget: float,
               name: str, report: Report) -> tuple["onnx.ModelProto", dict[str, Any]]:
    """The INT8 graph of ``fp32`` with its metadata, and its record; :class:`ValidationError` over ``budget``."""
    from .int8 import quantize_int8
    from .onnx_steps import set_metadata, set_prop
    from .validate import validation_sets

    calib, search = _int8_images(meta.scale, calib_files)
    res = quantize_int8(fp32, calib, search, validation_sets(ref), meta.scale, budget, report)
    if not res.passed or res.model is None:
        err = ValidationError(f"{name}: {res.reason}. Nothing was written (no file of this export, not only the INT8 one): "
                              f"run again without --int8, or with a larger --max-loss-db to accept the loss")
        err.record = res.record  # type: ignore[attr-defined]
        raise err
    set_metadata(res.model, replace(meta, precision="int8"))
    set_prop(res.model, INT8_LOSS, f"{res.record['loss_db']:.4f}")
    set_prop(res.model, META_PREFIX + "int8_budget_db", f"{budget:g}")
    report("int8: OpenVINO INT8 against its FP32: " + ", ".join(f"{k} {v['loss_db']:+.3f} dB" for k, v in
                                                                  res.record["validation"].items())
           + f" (budget {budget:g}); {len(res.record['kept_in_float'])} layers kept in float")
    return res.model, res.record


def _manifest(run: _Run, loaded: "LoadedModel", meta: ModelMeta, seconds: float) -> dict[str, Any]:
    v = loaded.variant
    return {
        "bsrn_edge_version": __version__,
        "created_unix": int(time.time()),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "checkpoint": {"source": loaded.source, "sha256": loaded.sha256, "variant": v.name, "scale": v.scale},
        "metadata": meta.__dict__,
        "node_counts": run.result.node_counts,
        "linear_transpose_matmul_pairs": run.leftovers,
        "validation": [r.to_dict() for r in run.result.validation],
        "fp16_audit": run.audit,
        "tensorrt_check": run.result.tensorrt_check,
        **run.records,
        "artifacts": {key: run.paths[key].name for key in run.models},
        "profile": run.profile.__dict__,
        "seconds": round(seconds, 2),
    }


def _write_all(run: _Run) -> None:
    """Raise :class:`ValidationError` (writing nothing) if any row failed; else write every artifact atomically."""
    failed = [r for r in run.result.validation if not r.passed]
    if failed:
        err = ValidationError("nothing written: " + "; ".join(f"{r.artifact}: {r.reason}" for r in failed))
        err.rows = run.result.validation  # type: ignore[attr-defined]
        raise err
    for key, model in run.models.items():
        write_atomic(run.paths[key], model.SerializeToString())
        run.result.files[key] = run.paths[key]
    write_atomic(run.paths["manifest"], json.dumps(run.result.manifest, indent=2).encode())
    run.result.files["manifest"] = run.paths["manifest"]


def engine_source(paths: dict[str, Path], fp16: bool, uint8_io: bool) -> Path:
    """The ONNX the engine is built from: FP16 when exported, uint8 pixel I/O when asked (the fastest GPU path)."""
    key = ("fp16_" if fp16 else "") + ("u8_onnx" if uint8_io else "onnx")
    return paths[key]


def export_checkpoint(ckpt: str, out_dir: Path, opts: ExportOptions, report: Report = print) -> ExportResult:
    """Run every export step for ``ckpt`` (a file or bundled name) into ``out_dir``.

    Nothing is written under a final name unless all validations pass.
    """
    from bsrn_edge.checkpoint import load_model

    out_dir = Path(out_dir)
    stem = _stem_for(ckpt)
    paths = artifact_paths(out_dir, stem, opts.fp16, opts.uint8_io, opts.int8)
    check_outputs(list(paths.values()), out_dir, opts.force)
    calib_files = _calibration_files(opts.calib)

    t0 = time.perf_counter()
    loaded = load_model(ckpt)
    v = loaded.variant
    profile = (opts.profile or default_profile(v.min_size, v.tile)).validate(v.min_size, "bsrn-export")
    report(f"loaded {loaded.source}: {v.name}, ×{v.scale}, {loaded.num_params:,} parameters")
    run = _Run(opts, paths, profile, report, ExportResult(stem=stem))
    meta = _fp32_step(run, loaded, calib_files)
    if opts.fp16:
        _fp16_step(run, meta)
    _bf16_step(run)
    if opts.uint8_io:
        _uint8_step(run)
    _tensorrt_check_step(run)
    if opts.int8:
        assert run.ref is not None
        run.models["int8_onnx"], run.records["int8"] = _int8_work(run.models["onnx"], meta, run.ref, calib_files,
                                                                   opts.max_loss_db, paths["int8_onnx"].name, report)
    run.result.manifest = _manifest(run, loaded, meta, time.perf_counter() - t0)
    _write_all(run)
    source = engine_source(paths, opts.fp16, opts.uint8_io)
    run.result.engine_note = build_engine_step(source, profile, "fp16" if opts.fp16 else "fp32", opts.engine, report)
    if run.result.engine_note.startswith(("built", "reused")):
        run.result.files["engine"] = engine_path_for(source)
    return run.result


def int8_from_onnx(path: Path, opts: ExportOptions, report: Report = print) -> ExportResult:
    """``bsrn-export --onnx FILE --int8``: the INT8 graph of an exported FP32 ONNX, written beside it as
    ``<stem>.int8.onnx`` with ``<stem>.int8.manifest.json``; nothing is written over the budget. No PyTorch needed."""
    onnx = require("onnx")
    from bsrn_edge.datasets import bundled_arrays
    from bsrn_edge.pixels import to_nchw
    from bsrn_edge.runtime.model_info import read_onnx_props

    from .validate import Reference

    meta = ModelMeta.from_props(read_onnx_props(path), str(path))
    if meta.precision != "fp32" or meta.pixels != "float":
        raise InputError(f"--onnx {path}: INT8 starts from the FP32 float-I/O graph (<stem>.onnx), not a {meta.precision} "
                         f"{meta.pixels}-I/O one")
    out = sibling(path, precision="int8")
    manifest = out.with_name(f"{parse_artifact(path).stem}.int8.manifest.json")
    check_outputs([out, manifest], path.parent, opts.force)
    pairs = [(lr, hr) for _, lr, hr in bundled_arrays(meta.scale)]
    ref = Reference([to_nchw(lr) for lr, _ in pairs], [], [hr for _, hr in pairs], meta.scale)
    model, record = _int8_work(onnx.load(str(path)), meta, ref, _calibration_files(opts.calib), opts.max_loss_db,
                               out.name, report)
    write_atomic(out, model.SerializeToString())
    write_atomic(manifest, json.dumps({"bsrn_edge_version": __version__, "source": str(path), "int8": record},
                                      indent=2).encode())
    return ExportResult(stem=parse_artifact(path).stem, files={"int8_onnx": out, "manifest": manifest},
                        manifest={"int8": record})


def default_profile(min_size: int, tile: int) -> EngineProfile:
    """Defaults: tiles from 32 px (or the model minimum) to 256 px, optimised for the recommended tile."""
    lo = max(32, min_size)
    return EngineProfile(min_tile=lo, opt_tile=max(lo, min(tile, 256)), max_tile=max(256, tile), max_batch=4, opt_batch=1)


def engine_path_for(onnx_path: Path) -> Path:
    """``<stem>[.fp16][.u8].onnx`` → ``<stem>.<precision>[.u8].engine`` (bsrn_edge.artifacts)."""
    return sibling(onnx_path, kind="engine")


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
    from bsrn_edge.runtime.model_info import read_onnx_props

    from .tensorrt_build import engine_from_onnx

    if available("onnx"):  # name the node TensorRT would refuse before the build starts (minutes)
        from .trt_support import require_buildable

        require_buildable(require("onnx").load(str(onnx_path)), str(onnx_path))
    props = dict(read_onnx_props(onnx_path))
    pixels = props.get(META_PREFIX + "pixels", "float")
    res = engine_from_onnx(onnx_path, target, profile, precision=precision, pixels=pixels, report=report)
    props.update({"bsrn_edge.profile_" + k: str(v) for k, v in profile.__dict__.items()})
    write_atomic(Path(str(target) + ".meta.json"), json.dumps(props, indent=2).encode())
    note = f"{'reused' if res.reused else 'built'} {res.path} (key {res.key.digest})"
    report(note)
    return note
