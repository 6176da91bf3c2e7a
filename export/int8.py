"""INT8 export (``bsrn-export --int8``): post-training quantisation with NNCF, then a measured search for the layers
that must stay in float, validated on OpenVINO against its own FP32.

1. NNCF quantises every layer it can (QDQ, INT8 weights per channel, bias correction), with statistics taken on
   crops of the calibration images (real photographs: Set5 and B100 LR, or ``--calib``).
2. Sensitivity, measured: one ONNX Runtime session of the quantised graph in which every quantised input of a
   layer is mixed with its float original by a mask input (``f + m·(q − f)``), so that each layer switches between
   INT8 and float without a new session. A layer's sensitivity is the mean squared error against the FP32 output
   when it alone is quantised, on real crops.
3. Layers go back to float from the most sensitive down; how many is found by bisection on the PSNR-Y lost against
   the HR crops (images apart from the validation ones where ../shared/data has them).
4. The graph with those layers in float (their FP32 inputs, weights and biases restored, the unused Q/DQ pruned) is
   validated on OpenVINO (INT8 kernels, FP32 elsewhere) against OpenVINO FP32 on full Set5 and B100 images: the
   PSNR-Y lost on the worse set must be within the budget, else nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.hostinfo import cpu_isa, cpu_model, package_version
from bsrn_edge.metrics import psnr_y
from bsrn_edge.pixels import from_nchw, to_nchw

from .validate import openvino_psnr, ort_session

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["Int8Result", "quantize_int8", "float_layers_model", "DEFAULT_MAX_LOSS_DB"]

DEFAULT_MAX_LOSS_DB = 0.1
CALIB_CROPS, CALIB_SIDE = 24, 48  # LR crops NNCF takes its statistics on
SENSITIVITY_CROPS, SENSITIVITY_SIDE = 6, 40  # LR crops each layer's sensitivity is measured on (200 runs for BSRN-S)
SEARCH_SIDE = 80  # the search judges the loss on the middle of each search image, at most this LR side
SEARCH_B100 = 10  # B100 images the search judges on beside Set5 (after the validation ones)
_SKIP = ("QuantizeLinear", "DequantizeLinear", "Shape")  # not layers: the quantisers themselves, shape arithmetic
_FP32 = "::fp32"  # suffix of an FP32 initializer that NNCF changed in place (a bias after bias correction)


@dataclass
class Int8Result:
    model: "onnx.ModelProto | None"
    passed: bool
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)


def _crops(images: Sequence[np.ndarray], n: int, size: int, seed: int = 0, hr: Sequence[np.ndarray] = (),
           scale: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` random ``size``² crops (N×3×size×size float) of the images, and of their HR images when given."""
    rng = np.random.default_rng(seed)
    usable = [i for i, im in enumerate(images) if min(im.shape[:2]) >= size]
    if not usable:
        raise InputError(f"INT8 calibration and search need images of at least {size}×{size} pixels")
    lr, out_hr = [], []
    for k in range(n):
        i = usable[k % len(usable)]
        y, x = (int(rng.integers(0, d - size + 1)) for d in images[i].shape[:2])
        lr.append(images[i][y:y + size, x:x + size])
        if hr:
            out_hr.append(hr[i][y * scale:(y + size) * scale, x * scale:(x + size) * scale])
    batch = np.ascontiguousarray(np.stack(lr).transpose(0, 3, 1, 2), np.float32) / 255
    return batch, (np.stack(out_hr) if hr else None)


def _nncf_quantize(fp32: "onnx.ModelProto", calib: np.ndarray) -> "onnx.ModelProto":
    os.environ.setdefault("NNCF_CI", "1")  # nncf's telemetry (on unless opted out) stays off: no network at export
    nncf = require("nncf")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    name = fp32.graph.input[0].name
    data = nncf.Dataset(list(calib[:, None]), lambda x: {name: x})
    with contextlib.redirect_stdout(sys.stderr):  # its progress bars: stdout keeps bsrn-export's table
        return nncf.quantize(fp32, data, subset_size=len(calib), target_device=nncf.TargetDevice.CPU)


def _layers(q: "onnx.ModelProto") -> list[str]:
    """Names of the quantised layers: nodes (not Q/DQ or Shape) that read a DequantizeLinear output."""
    dq = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in q.graph.node if n.op_type not in _SKIP and any(i in dq for i in n.input)]


def _float_inputs(q: "onnx.ModelProto", fp32: "onnx.ModelProto", layers: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
    """For each of ``layers``: (input index, FP32 tensor) where its input differs from the FP32 graph's. Adds to ``q``
    the FP32 initializers those need (one that NNCF changed in place under its own name gets the ``::fp32`` suffix)."""
    fp_nodes = {n.name: n for n in fp32.graph.node}
    fp_init = {i.name: i for i in fp32.graph.initializer}
    q_init = {i.name: i for i in q.graph.initializer}
    known = set(q_init) | {o for n in q.graph.node for o in n.output} | {i.name for i in q.graph.input}
    out: dict[str, list[tuple[int, str]]] = {}
    for n in q.graph.node:
        if n.name not in layers:
            continue
        for k, (got, want) in enumerate(zip(n.input, fp_nodes[n.name].input)):
            if not want:  # an optional input left out
                continue
            name = want
            if want in q_init and want in fp_init and q_init[want] != fp_init[want]:
                name = want + _FP32
            if name not in known:
                init = q.graph.initializer.add()
                init.CopyFrom(fp_init[want])
                init.name = name
                known.add(name)
            if got != name:
                out.setdefault(n.name, []).append((k, name))
    return out


def _mask_model(q: "onnx.ModelProto", fp32: "onnx.ModelProto", layers: list[str]) -> "onnx.ModelProto":
    """``q`` with a float input ``qmask`` (one value per layer): layer j reads each quantised input ``q`` where
    ``qmask[j] > 0.5`` and its float original ``f`` elsewhere, so 1 runs it in INT8 and 0 in float."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(q)
    mixes = _float_inputs(m, fp32, layers)
    g = m.graph
    g.input.append(helper.make_tensor_value_info("qmask", TensorProto.FLOAT, [len(layers)]))
    g.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "qmask_half"))
    index = {name: j for j, name in enumerate(layers)}
    nodes = []
    for n in g.node:
        j = index.get(n.name)
        if j is not None and n.name in mixes:
            g.initializer.append(numpy_helper.from_array(np.array(j, np.int64), f"qmask_index_{j}"))
            nodes += [helper.make_node("Gather", ["qmask", f"qmask_index_{j}"], [f"qmask_{j}"], axis=0),
                      helper.make_node("Greater", [f"qmask_{j}", "qmask_half"], [f"qmask_on_{j}"])]
            for k, f in mixes[n.name]:
                nodes.append(helper.make_node("Where", [f"qmask_on_{j}", n.input[k], f], [f"qmask_{j}_{k}"]))
                n.input[k] = f"qmask_{j}_{k}"
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return m


def float_layers_model(q: "onnx.ModelProto", fp32: "onnx.ModelProto", kept: Sequence[str]) -> "onnx.ModelProto":
    """``q`` with the layers ``kept`` back in float (their FP32 inputs, weights and biases), unused nodes and
    initializers pruned."""
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(q)
    nodes = {n.name: n for n in m.graph.node}
    for name, inputs in _float_inputs(m, fp32, kept).items():
        for k, f in inputs:
            nodes[name].input[k] = f
    g = m.graph
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return m


Sets = dict[str, tuple[list[np.ndarray], list]]  # name → (N×3×h×w float inputs, HR uint8 images in the same order)


class _Search:
    """The quantised graph with one switch per layer (:func:`_mask_model`) on ONNX Runtime, against the FP32 graph:
    ``crops`` (N×3×h×w) measure each layer's sensitivity, ``sets`` the PSNR-Y lost."""

    def __init__(self, q: "onnx.ModelProto", fp32: "onnx.ModelProto", layers: list[str], crops: np.ndarray,
                 sets: Sets, scale: int):
        self.layers, self.crops, self.sets, self.scale = layers, crops, sets, scale
        self._mask = ort_session(_mask_model(q, fp32, layers).SerializeToString())
        self._name = fp32.graph.input[0].name
        ref = ort_session(fp32.SerializeToString())
        self.ref = ref.run(None, {self._name: crops})[0]
        self.ref_psnr = {k: self._psnr([ref.run(None, {self._name: x})[0] for x in xs], hr) for k, (xs, hr) in sets.items()}

    def run(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._mask.run(None, {self._name: x, "qmask": mask.astype(np.float32)})[0]

    def _psnr(self, outs: list[np.ndarray], hr: list) -> float:
        images = [from_nchw(o[None]) for batch in outs for o in batch]
        return float(np.mean([psnr_y(o, h, self.scale) for o, h in zip(images, hr)]))

    def sensitivity(self) -> np.ndarray:
        """Mean squared error against FP32 on the crops with each layer alone in INT8."""
        eye = np.eye(len(self.layers))
        return np.array([np.mean((self.run(self.crops, eye[j]) - self.ref) ** 2) for j in range(len(self.layers))])

    def loss(self, order: np.ndarray, kept: int) -> float:
        """PSNR-Y (dB) lost against FP32 on the worse set, with the ``kept`` most sensitive layers in float."""
        mask = np.ones(len(self.layers))
        mask[order[:kept]] = 0
        return max(self.ref_psnr[k] - self._psnr([self.run(x, mask) for x in xs], hr) for k, (xs, hr) in self.sets.items())

    def fewest_kept(self, order: np.ndarray, budget: float) -> tuple[int, float]:
        """The fewest layers kept in float (most sensitive first) for a loss within ``budget`` (bisection), and that
        loss (NaN when no count was measured within it: every layer would have to stay in float)."""
        lo, hi, best = 0, len(self.layers), float("nan")
        while lo < hi:
            mid = (lo + hi) // 2
            loss = self.loss(order, mid)
            if loss <= budget:
                hi, best = mid, loss
            else:
                lo = mid + 1
        return lo, best


def _middles(pairs: Sequence[tuple[np.ndarray, np.ndarray]], side: int, scale: int) -> tuple[list[np.ndarray], list]:
    """The middle of each (LR, HR) pair, at most ``side`` LR pixels a side, as (1×3×h×w float inputs, HR images)."""
    xs, hrs = [], []
    for lr, hr in pairs:
        h, w = min(side, lr.shape[0]), min(side, lr.shape[1])
        y, x = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
        xs.append(to_nchw(lr[y:y + h, x:x + w]))
        hrs.append(hr[y * scale:(y + h) * scale, x * scale:(x + w) * scale])
    return xs, hrs


def quantize_int8(fp32: "onnx.ModelProto", calib: Sequence[np.ndarray], search: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                  sets: Sets, scale: int, budget: float = DEFAULT_MAX_LOSS_DB,
                  report: Callable[[str], None] = print) -> Int8Result:
    """Quantise ``fp32`` (see the module doc): ``calib`` LR images (H×W×3 uint8), ``search`` the (LR, HR) pairs per set
    the layer search judges on, ``sets`` (:func:`~.validate.validation_sets`) the final validation's on OpenVINO,
    ``budget`` in dB."""
    t0 = time.perf_counter()
    calib_crops, _ = _crops(calib, CALIB_CROPS, CALIB_SIDE)
    q = _nncf_quantize(fp32, calib_crops)
    layers = _layers(q)
    sens_crops, _ = _crops([lr for pairs in search.values() for lr, _ in pairs], SENSITIVITY_CROPS, SENSITIVITY_SIDE, seed=1)
    s = _Search(q, fp32, layers, sens_crops, {k: _middles(v, SEARCH_SIDE, scale) for k, v in search.items()}, scale)
    sens = s.sensitivity()
    order = np.argsort(-sens, kind="stable")
    all_int8 = s.loss(order, 0)
    kept, loss = s.fewest_kept(order, budget)
    reached = f"→ {loss:.3f} dB on the search images" if loss == loss else "still over the budget on the search images"
    report(f"int8: {len(layers)} layers quantised by NNCF on {len(calib_crops)} calibration crops; all in INT8 they lose "
           f"{all_int8:.3f} dB; the {kept} most sensitive kept in float {reached}")
    names = [layers[j] for j in order[:kept]]
    record: dict[str, Any] = {
        "budget_db": budget, "layers": len(layers), "calibration_crops": len(calib_crops), "calibration_side": CALIB_SIDE,
        "search_images": {k: len(v) for k, v in search.items()}, "search_side": SEARCH_SIDE,
        "all_int8_search_loss_db": all_int8, "search_loss_db": loss if loss == loss else None,
        "sensitivity_mse": {layers[j]: float(sens[j]) for j in order},
        "kept_in_float": names, "quantised": [n for n in layers if n not in names],
        "machine": {"cpu": cpu_model(), "isa": cpu_isa(), "nncf": package_version("nncf"),
                    "openvino": package_version("openvino"), "onnxruntime": package_version("onnxruntime")},
    }
    if kept >= len(layers):
        return Int8Result(None, False, f"no layer can be INT8 within {budget:g} dB (all-INT8 loses {all_int8:.3f} dB "
                                       "on the search images); raise --max-loss-db to accept more", record)
    model = float_layers_model(q, fp32, names)
    ref, got = (openvino_psnr(m.SerializeToString(), sets, scale) for m in (fp32, model))
    record["validation"] = {k: {"fp32": ref[k], "int8": got[k], "loss_db": ref[k] - got[k]} for k in sets}
    worst = max(ref[k] - got[k] for k in sets)
    record.update(loss_db=worst, seconds=round(time.perf_counter() - t0, 1))
    if worst > budget:
        return Int8Result(None, False, f"INT8 loses {worst:.3f} dB PSNR-Y against FP32 on OpenVINO (budget "
                                       f"{budget:g} dB) with {kept} of {len(layers)} layers kept in float", record)
    return Int8Result(model, True, "", record)
