"""Numeric validation of exported ONNX files against PyTorch fp32, on real images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.datasets import bundled_arrays, find_pairs, shared_data_dir
from bsrn_edge.errors import InputError
from bsrn_edge.evaluate import torch_upscale_fn
from bsrn_edge.imageio import read_rgb
from bsrn_edge.metrics import psnr_y
from bsrn_edge.pixels import from_nchw, to_nchw

__all__ = ["ValidationRow", "ort_session", "onnx_outputs", "validate_onnx", "validate_uint8", "uint8_images",
           "reference_outputs", "shared_pairs", "validation_sets", "openvino_psnr", "FP32_MAX_DIFF", "FP32_PSNR_TOL",
           "FP16_PSNR_TOL", "U8_MAX_LEVELS", "U8_MAX_FRACTION", "PRECISION_B100_IMAGES"]

FP32_MAX_DIFF = 1e-4
FP32_PSNR_TOL = 0.01
FP16_PSNR_TOL = 0.02
U8_MAX_LEVELS = 1  # uint8-I/O graph vs its float sibling + host conversion: at most 1 grey level ...
U8_MAX_FRACTION = 0.001  # ... on at most 0.1% of the pixels
U8_SHARED_IMAGES = 4  # B100 LR images from ../shared/data added to Set5 for the uint8 check, where present
PRECISION_B100_IMAGES = 20  # the first B100 images judge BF16 and INT8 beside Set5, where ../shared/data has them


@dataclass
class ValidationRow:
    artifact: str
    precision: str
    max_abs_diff: float
    psnr_torch: float  # NaN when no HR images were given
    psnr_onnx: float
    passed: bool
    reason: str = ""
    compared_with: str = "PyTorch fp32"
    off_fraction: float | None = None  # uint8 rows: share of pixels that differ from the reference
    psnr_images: int = 0  # how many images (those with an HR target) the PSNR columns average over

    @property
    def diff_text(self) -> str:
        """The difference column: a float difference, or grey levels and the share of pixels for uint8 rows."""
        if self.off_fraction is None:
            return f"{self.max_abs_diff:.2e}"
        return f"{self.max_abs_diff:.0f} grey level(s) on {self.off_fraction:.4%} of pixels"

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(self).items()}


def ort_session(model_bytes: bytes, threads: int = 0) -> Any:
    """A CPU session configured exactly as the runtime's (what users will run)."""
    ort = require("onnxruntime")
    from bsrn_edge.runtime.backends.onnxruntime import session_options

    return ort.InferenceSession(model_bytes, session_options(threads or None), providers=["CPUExecutionProvider"])


@dataclass
class Reference:
    """PyTorch fp32 outputs (authors' structure) for the validation images."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    hr: list[np.ndarray | None]
    scale: int


def reference_outputs(model: Any, scale: int, extra: Sequence[Path] = ()) -> Reference:
    """PyTorch outputs for the bundled Set5 (at ``scale``) and any extra calibration images."""
    run = torch_upscale_fn(model)
    items = [(lr, h) for _, lr, h in bundled_arrays(scale)] + [(read_rgb(e), None) for e in extra]
    inputs = [to_nchw(lr) for lr, _ in items]
    outputs = [run(x) for x in inputs]
    hr = [target for _, target in items]
    return Reference(inputs, outputs, hr, scale)


def _mean_psnr(outs: Sequence[np.ndarray], hr: Sequence[np.ndarray | None], scale: int) -> float:
    """Mean PSNR-Y over the images that have an HR target; outputs are NCHW float or H×W×3 uint8."""
    vals = [psnr_y(o if o.dtype == np.uint8 else from_nchw(o), h, scale) for o, h in zip(outs, hr) if h is not None]
    return float(np.mean(vals)) if vals else float("nan")


def onnx_outputs(model_bytes: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outputs of a float-I/O model on NCHW float32 ``inputs``, as float32 (float16 I/O cast at the boundary)."""
    sess = ort_session(model_bytes)
    name = sess.get_inputs()[0].name
    half = sess.get_inputs()[0].type == "tensor(float16)"
    return [sess.run(None, {name: x.astype(np.float16) if half else x})[0].astype(np.float32) for x in inputs]


def validate_onnx(model_bytes: bytes, ref: Reference, *, artifact: str, precision: str,
                  fp32_psnr: float | None = None) -> ValidationRow:
    """Run ``model_bytes`` on ONNX Runtime over the reference inputs and judge it.

    FP32: max |ONNX − PyTorch| ≤ 1e-4 and PSNR equal to 0.01 dB. FP16: PSNR within 0.02 dB of the
    FP32 ONNX's (``fp32_psnr``); its max difference is reported, not judged.
    """
    outs = onnx_outputs(model_bytes, ref.inputs)
    diff = max(float(np.abs(o - r).max()) for o, r in zip(outs, ref.outputs))
    p_torch, p_onnx = _mean_psnr(ref.outputs, ref.hr, ref.scale), _mean_psnr(outs, ref.hr, ref.scale)
    reasons = []
    if precision == "fp32":
        if not diff <= FP32_MAX_DIFF:
            reasons.append(f"max abs diff {diff:.3g} > {FP32_MAX_DIFF:g}")
        if not np.isnan(p_torch) and not abs(p_onnx - p_torch) <= FP32_PSNR_TOL:
            reasons.append(f"PSNR {p_onnx:.3f} vs PyTorch {p_torch:.3f} differs by more than {FP32_PSNR_TOL} dB")
    else:
        base = p_torch if fp32_psnr is None else fp32_psnr
        if not np.isnan(base) and not abs(p_onnx - base) <= FP16_PSNR_TOL:
            reasons.append(f"FP16 PSNR {p_onnx:.3f} vs FP32 {base:.3f} differs by more than {FP16_PSNR_TOL} dB")
        if not np.all([np.isfinite(o).all() for o in outs]):
            reasons.append("non-finite values in the FP16 output")
    return ValidationRow(artifact, precision, diff, p_torch, p_onnx, not reasons, "; ".join(reasons),
                         psnr_images=sum(h is not None for h in ref.hr))


def shared_pairs(scale: int, start: int, stop: int, dataset: str = "B100") -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) uint8 images ``start`` to ``stop - 1`` of ``../shared/data/<dataset>`` at ``scale``, sorted by name;
    none where that folder (or that scale) is absent."""
    root = shared_data_dir()
    if root is None or not (root / dataset).is_dir() or stop <= start:
        return []
    try:
        pairs = find_pairs(root / dataset, scale)[start:stop]
    except InputError:  # no pairs at this scale
        return []
    return [(read_rgb(p.lr), read_rgb(p.hr)) for p in pairs]


def uint8_images(ref: Reference, shared_count: int = U8_SHARED_IMAGES) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """H×W×3 uint8 images for the uint8-I/O check, with their HR targets (None where absent).

    The reference's images (Set5 LR and any --calib ones) plus the first ``shared_count`` B100 LR
    images of ``../shared/data`` at the reference's scale, where that folder exists.
    """
    images, hr = [from_nchw(x) for x in ref.inputs], list(ref.hr)
    pairs = shared_pairs(ref.scale, 0, shared_count)
    return images + [lr for lr, _ in pairs], hr + [h for _, h in pairs]


def validation_sets(ref: Reference, b100: int = PRECISION_B100_IMAGES) -> dict[str, tuple[list[np.ndarray], list]]:
    """The images lossy CPU precisions (BF16, INT8) are judged on: Set5 and the first ``b100`` B100 images, as
    {name: (NCHW float inputs, HR uint8 targets)}; B100 only where ``../shared/data`` has it at this scale."""
    set5 = [(x, h) for x, h in zip(ref.inputs, ref.hr) if h is not None]
    sets = {"Set5": ([x for x, _ in set5], [h for _, h in set5])}
    pairs = shared_pairs(ref.scale, 0, b100)
    if pairs:
        sets["B100"] = ([to_nchw(lr) for lr, _ in pairs], [h for _, h in pairs])
    return sets


def openvino_psnr(model_bytes: bytes, sets: dict[str, tuple[list[np.ndarray], list]], scale: int,
                  precision: str = "fp32") -> dict[str, float]:
    """Mean PSNR-Y against HR per set of ``model_bytes`` (a float-I/O ONNX) on OpenVINO's CPU plugin at ``precision``."""
    import tempfile

    from bsrn_edge.runtime.backends.openvino import OpenVINOBackend

    with tempfile.TemporaryDirectory(prefix="bsrn-ov-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model_bytes)
        backend = OpenVINOBackend(path, precision=precision, shape_sessions=0)
        try:
            return {name: _mean_psnr([backend.infer(x) for x in xs], hr, scale) for name, (xs, hr) in sets.items()}
        finally:
            backend.close()


def validate_uint8(u8_bytes: bytes, float_bytes: bytes, images: Sequence[np.ndarray], hr: Sequence[np.ndarray | None],
                   scale: int, *, artifact: str, precision: str, float_artifact: str) -> ValidationRow:
    """Judge a uint8-I/O graph against its float sibling followed by the host conversion (``from_nchw``).

    Passes when no pixel differs by more than ``U8_MAX_LEVELS`` grey level and at most
    ``U8_MAX_FRACTION`` of the pixels (H×W positions) differ at all.
    """
    expected = [from_nchw(y) for y in onnx_outputs(float_bytes, [to_nchw(im) for im in images])]
    sess = ort_session(u8_bytes)
    name = sess.get_inputs()[0].name
    runs = [sess.run(None, {name: np.ascontiguousarray(im)[None]}) for im in images]
    got = [r[0][0] for r in runs]
    reasons = []
    if any(len(r) < 2 or float(np.max(r[1])) != 0.0 for r in runs):
        reasons.append("the graph's non-finite flag is missing or set on real images")
    shapes = [(g.shape, e.shape) for g, e in zip(got, expected) if g.shape != e.shape or g.dtype != np.uint8]
    if shapes:
        return ValidationRow(artifact, precision, float("nan"), float("nan"), float("nan"), False,
                             f"output shape/dtype {shapes[0][0]} differs from the float sibling's {shapes[0][1]} uint8",
                             compared_with=float_artifact + " + host uint8")
    levels = max(int(np.abs(g.astype(np.int16) - e.astype(np.int16)).max()) for g, e in zip(got, expected))
    off = sum(int((g != e).any(axis=2).sum()) for g, e in zip(got, expected))
    fraction = off / sum(e.shape[0] * e.shape[1] for e in expected)
    if levels > U8_MAX_LEVELS:
        reasons.append(f"a pixel differs by {levels} grey levels (> {U8_MAX_LEVELS}) from {float_artifact} + host conversion")
    if fraction > U8_MAX_FRACTION:
        reasons.append(f"{fraction:.3%} of pixels differ (> {U8_MAX_FRACTION:.1%}) from {float_artifact} + host conversion")
    return ValidationRow(artifact, precision, float(levels), _mean_psnr(expected, hr, scale), _mean_psnr(got, hr, scale),
                         not reasons, "; ".join(reasons), compared_with=float_artifact + " + host uint8",
                         off_fraction=fraction, psnr_images=sum(h is not None for h in hr))
