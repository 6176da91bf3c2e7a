"""FP16 conversion with an overflow audit (onnx and onnxruntime imported where used).

The route TensorRT 11 needs (REFERENCE.md §4): the ONNX itself carries the precision, so a
strongly typed engine keeps exactly what the audit decided. Rules:

- a node whose output magnitude on the calibration images comes near the FP16 limit stays FP32;
- a node that reads an initializer beyond the FP16 range (65504) stays FP32;
- a reduction over the whole tile (CCA's mean and variance) stays FP32, with the elementwise
  nodes that feed only it and the squeeze-excite branch that reads it (tiny 1×1 tensors);
- everything else runs in FP16; Casts are inserted at every boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from bsrn_edge._lazy import require

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["FP16_MAX", "NEAR_LIMIT", "NodeRange", "AuditReport", "audit_ranges", "fp16_from_onnx", "calibration_tiles"]

FP16_MAX = 65504.0
NEAR_LIMIT = FP16_MAX / 8  # a node whose |activation| exceeds this on calibration data stays FP32
_REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceL1", "GlobalAveragePool", "ReduceLogSumExp"}
_ELEMENTWISE = {"Sub", "Pow", "Mul", "Div", "Add", "Abs", "Sqrt", "Relu", "Sigmoid", "Conv", "Neg", "Reciprocal"}
# inputs that ONNX requires in float32 whatever the data precision: (op, input index)
_FP32_SLOTS = {("Resize", 1), ("Resize", 2)}


@dataclass(frozen=True)
class NodeRange:
    node: str
    op: str
    max_abs: float


@dataclass
class AuditReport:
    """What the audit measured and decided; ``kept`` maps node name → reason it stays FP32."""

    tile: int
    images: int
    ranges: list[NodeRange] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def peak(self) -> NodeRange | None:
        return max(self.ranges, key=lambda r: r.max_abs) if self.ranges else None

    def to_dict(self) -> dict[str, object]:
        peak = self.peak
        return {
            "tile": self.tile,
            "calibration_images": self.images,
            "near_limit_threshold": NEAR_LIMIT,
            "peak_activation": None if peak is None else {"node": peak.node, "op": peak.op, "max_abs": peak.max_abs},
            "kept_fp32": dict(sorted(self.kept.items())),
        }


def _name_nodes(model: "onnx.ModelProto") -> None:
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)


def _float_tensors(model: "onnx.ModelProto") -> set[str]:
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {vi.name for vi in list(g.value_info) + list(g.input) + list(g.output) if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    out |= {t.name for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                    out.update(n.output)
    return out


def calibration_tiles(images: Iterable[np.ndarray], tile: int) -> list[np.ndarray]:
    """Real images brought to ``tile``×``tile`` (mirrored where smaller, cropped where larger), NCHW float32 in [0, 1]."""
    from bsrn_edge.pixels import pad_to_min, to_nchw

    tiles = []
    for img in images:
        a, _ = pad_to_min(np.asarray(img)[..., :3], tile)
        tiles.append(to_nchw(a[:tile, :tile]))
    return tiles


def _probed(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", list[tuple[str, str, str]]]:
    """A copy of ``model`` whose every computed float tensor feeds an ``Abs`` → ``ReduceMax`` probe (a scalar
    graph output), placed right after the node that produces it; returns it with (node, op, probe output) rows."""
    onnx = require("onnx")
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    _name_nodes(m)
    floats = _float_tensors(m)
    graph_inputs = {i.name for i in m.graph.input}
    probes: list[tuple[str, str, str]] = []
    nodes = []
    for n in m.graph.node:
        nodes.append(n)
        if n.op_type == "Constant":
            continue
        for o in n.output:
            if o in floats and o not in graph_inputs:
                a, r = f"__audit_abs_{len(probes)}", f"__audit_max_{len(probes)}"
                nodes.append(helper.make_node("Abs", [o], [a]))
                nodes.append(helper.make_node("ReduceMax", [a], [r], keepdims=0))
                m.graph.output.append(helper.make_tensor_value_info(r, onnx.TensorProto.FLOAT, []))
                probes.append((n.name, n.op_type, r))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m, probes


def audit_ranges(model: "onnx.ModelProto", inputs: Iterable[np.ndarray], tile: int) -> AuditReport:
    """Max |activation| of every float node output over ``inputs`` (one ORT run each, taken one at a time).

    Each float tensor is reduced in the graph (``ReduceMax(Abs(t))``) right after the node that makes it,
    and the session runs the nodes in that order (``PRIORITY_BASED``), so every intermediate is freed as
    soon as its consumers and its probe have run: memory stays that of one inference. ONNX Runtime's
    default order postpones the probes to the end and holds every intermediate at once (7 GB for
    BSRN-S at 256 px, benchmarks/export_memory.py). Graph optimisations are off so the probes see the
    exported nodes.
    """
    ort = require("onnxruntime")

    m, probes = _probed(model)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    opts.enable_mem_pattern = False  # a pattern block per input shape beside the arena (+220 MB for BSRN ×4 at 256 px)
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    input_name, names = m.graph.input[0].name, [p[2] for p in probes]
    del m
    peak = np.zeros(len(probes))
    count = 0
    for x in inputs:
        vals = sess.run(names, {input_name: x})
        peak = np.maximum(peak, np.array([float(v) for v in vals]))
        count += 1
    del sess
    report = AuditReport(tile=tile, images=count)
    report.ranges = [NodeRange(node, op, float(v)) for (node, op, _), v in zip(probes, peak)]
    return report


def _whole_tile_branches(model: "onnx.ModelProto", floats: set[str]) -> dict[str, str]:
    """Nodes of every reduction over the spatial axes, its feeding elementwise chain and its 1×1 branch."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    branch: dict[str, str] = {}
    reductions = [n for n in g.node if n.op_type in _REDUCTIONS]
    for r in reductions:
        branch[r.name] = f"{r.op_type} reduces over the whole tile"
    # backward: elementwise producers whose outputs feed only branch nodes
    changed = True
    while changed:
        changed = False
        for n in g.node:
            if n.name in branch or n.op_type not in _ELEMENTWISE or n.op_type == "Conv":
                continue
            outs = [c for o in n.output for c in consumers.get(o, [])]
            if outs and all(c.name in branch for c in outs) and any(c.op_type in _REDUCTIONS for c in outs):
                branch[n.name] = "feeds a whole-tile reduction only"
                changed = True
    # forward: nodes all of whose computed float inputs come from the branch (1×1 tensors)
    changed = True
    while changed:
        changed = False
        for n in g.node:
            if n.name in branch or n.op_type not in _ELEMENTWISE:
                continue
            computed = [i for i in n.input if i in floats and i in producer and producer[i].op_type != "Constant"]
            if computed and all(producer[i].name in branch for i in computed):
                branch[n.name] = "works on whole-tile statistics (1×1 branch)"
                changed = True
    return branch


@dataclass
class _Plan:
    """The precision decision for one conversion: which nodes stay FP32, and every float tensor's stored type."""

    kept: dict[str, str]
    users: dict[str, list[tuple[Any, int]]]  # tensor → (consuming node, input slot)
    dtype: dict[str, int] = field(default_factory=dict)  # tensor → TensorProto.FLOAT / FLOAT16 as stored

    def wants_fp32(self, node: Any, slot: int) -> bool:
        return node.name in self.kept or (node.op_type, slot) in _FP32_SLOTS


def _kept_nodes(model: "onnx.ModelProto", floats: set[str], report: AuditReport | None, threshold: float) -> dict[str, str]:
    """Whole-tile branches, every node reading an initializer beyond the FP16 range, and every node whose
    audited |activation| exceeds ``threshold``."""
    from onnx import TensorProto, numpy_helper

    kept = _whole_tile_branches(model, floats)
    big = {t.name: float(np.abs(numpy_helper.to_array(t)).max(initial=0)) for t in model.graph.initializer
           if t.data_type == TensorProto.FLOAT}
    for n in model.graph.node:
        over = [i for i in n.input if big.get(i, 0.0) > FP16_MAX]
        if over and n.name not in kept:
            kept[n.name] = f"reads {over[0]} (|value| {big[over[0]]:.4g}) beyond the FP16 range {FP16_MAX:g}"
    if report is not None:
        for r in report.ranges:
            if r.max_abs > threshold and r.node not in kept:
                kept[r.node] = f"|activation| reached {r.max_abs:.4g} (> {threshold:.4g}) on calibration tiles of {report.tile}px"
    return kept


def _convert_initializers(g: Any, plan: _Plan) -> None:
    """Store an initializer FP16 unless only FP32 slots read it; both readers get an FP16 copy beside it.

    An initializer beyond the FP16 range stays FP32 (``_kept_nodes`` keeps its readers in FP32).
    """
    from onnx import TensorProto, numpy_helper

    new_inits = []
    for t in g.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        users = plan.users.get(t.name, [])
        need16 = any(not plan.wants_fp32(n, k) for n, k in users)
        need32 = any(plan.wants_fp32(n, k) for n, k in users)
        arr = numpy_helper.to_array(t)  # readers of values beyond the FP16 range are kept FP32 (_kept_nodes)
        plan.dtype[t.name] = TensorProto.FLOAT
        if not need16:
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), t.name + ("__fp16" if need32 else ""))
        if need32:
            new_inits.append(half)
            for n, k in users:
                if not plan.wants_fp32(n, k):
                    n.input[k] = half.name
            plan.dtype[half.name] = TensorProto.FLOAT16
        else:
            t.CopyFrom(half)
            plan.dtype[t.name] = TensorProto.FLOAT16
    g.initializer.extend(new_inits)


def _convert_constants(g: Any, floats: set[str], plan: _Plan) -> None:
    """Float ``Constant`` nodes become FP16 when every reader runs in FP16."""
    from onnx import TensorProto, numpy_helper

    for n in g.node:
        if n.op_type == "Constant" and n.output[0] in floats:
            users = plan.users.get(n.output[0], [])
            if users and all(not plan.wants_fp32(u, k) for u, k in users):
                for a in n.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
                plan.dtype[n.output[0]] = TensorProto.FLOAT16
            else:
                plan.dtype[n.output[0]] = TensorProto.FLOAT


def _with_casts(g: Any, floats: set[str], plan: _Plan) -> list[Any]:
    """The graph's nodes with a Cast wherever a float input's stored type differs from what its node runs in."""
    from onnx import TensorProto, helper

    new_nodes: list[Any] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        if (name, to) not in casts:
            out = f"{name}__to_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"Cast_{out}"))
            casts[(name, to)] = out
            plan.dtype[out] = to
        return casts[(name, to)]

    for n in list(g.node):
        if n.op_type != "Constant":
            for k, name in enumerate(n.input):
                if name == "" or name not in floats or name not in plan.dtype:
                    continue
                want = TensorProto.FLOAT if plan.wants_fp32(n, k) else TensorProto.FLOAT16
                if plan.dtype[name] != want:
                    n.input[k] = cast(name, want)
            for o in n.output:
                if o in floats:
                    plan.dtype[o] = TensorProto.FLOAT if n.name in plan.kept else TensorProto.FLOAT16
        new_nodes.append(n)
    return new_nodes


def _cast_outputs(g: Any, nodes: list[Any], floats: set[str], plan: _Plan, io_type: int) -> None:
    """Give every float graph output ``io_type``, renaming its producer's tensor and adding a final Cast."""
    from onnx import TensorProto, helper

    for out in g.output:
        if out.name not in floats:
            continue
        if plan.dtype.get(out.name, TensorProto.FLOAT) != io_type:
            inner = out.name + "__inner"
            for n in nodes:
                for seq in (n.output, n.input):
                    for k, name in enumerate(seq):
                        if name == out.name:
                            seq[k] = inner
            nodes.append(helper.make_node("Cast", [inner], [out.name], to=io_type, name=f"Cast_{out.name}_io"))
        out.type.tensor_type.elem_type = io_type


def fp16_from_onnx(
    model: "onnx.ModelProto",
    report: AuditReport | None = None,
    *,
    io_fp16: bool = False,
    threshold: float = NEAR_LIMIT,
) -> tuple["onnx.ModelProto", dict[str, str]]:
    """Convert ``model`` to FP16 except the nodes the audit and the reduction rule keep in FP32.

    Returns the new model and ``{node: reason}`` for every node kept in FP32.
    Inputs and outputs stay float32 unless ``io_fp16``.
    """
    onnx = require("onnx")
    from onnx import TensorProto

    m = onnx.ModelProto()
    m.CopyFrom(model)
    _name_nodes(m)
    g = m.graph
    floats = _float_tensors(m)
    users: dict[str, list[tuple[Any, int]]] = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            users.setdefault(name, []).append((n, k))
    plan = _Plan(_kept_nodes(m, floats, report, threshold), users)
    io_type = TensorProto.FLOAT16 if io_fp16 else TensorProto.FLOAT
    for i in g.input:
        if i.name in floats:
            plan.dtype[i.name] = io_type
            i.type.tensor_type.elem_type = io_type
    _convert_initializers(g, plan)
    _convert_constants(g, floats, plan)
    nodes = _with_casts(g, floats, plan)
    _cast_outputs(g, nodes, floats, plan, io_type)
    del g.node[:]
    g.node.extend(_toposort(nodes, {i.name for i in g.input} | {t.name for t in g.initializer}))
    del g.value_info[:]
    onnx.checker.check_model(m)
    return m, plan.kept


def _toposort(nodes: list, available: set[str]) -> list:  # type: ignore[type-arg]
    ready = set(available) | {""}
    pending = list(nodes)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            names = ", ".join(n.name for n in rest[:5])
            raise RuntimeError(f"FP16 conversion left a cycle or a dangling input near: {names}")
        pending = rest
    return ordered
