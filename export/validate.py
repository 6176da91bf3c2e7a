"""Numeric validation of exported ONNX files against PyTorch fp32, on real images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.datasets import bundled_arrays
from bsrn_edge.evaluate import from_nchw, to_nchw, torch_upscale_fn
from bsrn_edge.imageio import read_rgb
from bsrn_edge.metrics import psnr_y

__all__ = ["ValidationRow", "ort_session", "validate_onnx", "reference_outputs", "FP32_MAX_DIFF", "FP32_PSNR_TOL", "FP16_PSNR_TOL"]

FP32_MAX_DIFF = 1e-4
FP32_PSNR_TOL = 0.01
FP16_PSNR_TOL = 0.02


@dataclass
class ValidationRow:
    artifact: str
    precision: str
    max_abs_diff: float
    psnr_torch: float  # NaN when no HR images were given
    psnr_onnx: float
    passed: bool
    reason: str = ""

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


def _mean_psnr(outs: Sequence[np.ndarray], ref: Reference) -> float:
    vals = [psnr_y(from_nchw(o), h, ref.scale) for o, h in zip(outs, ref.hr) if h is not None]
    return float(np.mean(vals)) if vals else float("nan")


def validate_onnx(model_bytes: bytes, ref: Reference, *, artifact: str, precision: str,
                  fp32_psnr: float | None = None) -> ValidationRow:
    """Run ``model_bytes`` on ONNX Runtime over the reference inputs and judge it.

    FP32: max |ONNX − PyTorch| ≤ 1e-4 and PSNR equal to 0.01 dB. FP16: PSNR within 0.02 dB of the
    FP32 ONNX's (``fp32_psnr``); its max difference is reported, not judged.
    """
    sess = ort_session(model_bytes)
    name = sess.get_inputs()[0].name
    half = sess.get_inputs()[0].type == "tensor(float16)"
    outs = []
    for x in ref.inputs:
        y = sess.run(None, {name: x.astype(np.float16) if half else x})[0]
        outs.append(y.astype(np.float32))
    diff = max(float(np.abs(o - r).max()) for o, r in zip(outs, ref.outputs))
    p_torch, p_onnx = _mean_psnr(ref.outputs, ref), _mean_psnr(outs, ref)
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
    return ValidationRow(artifact, precision, diff, p_torch, p_onnx, not reasons, "; ".join(reasons))
