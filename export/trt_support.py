"""Would TensorRT's ONNX parser take this graph? A check against onnx-tensorrt's operator support table.

The table below is data, read from onnx-tensorrt's ``docs/operators.md`` as of the TensorRT 10.15 GA
release (:data:`TENSORRT_VERSION`, :data:`SOURCE`), for the operators our exports and their uint8
pixel I/O contain plus their close relatives. Each operator maps to the element types its main
(data) inputs may have. Beside it, the rules of the same document that our graphs can meet:

- "UINT8 is only supported as network input or output tensor types": a uint8 tensor must be a graph
  input or output, and only ``Cast`` lists UINT8, so the only node that may touch one is a Cast.
  NVIDIA/TensorRT#3985 (an NVIDIA maintainer): "All UINT8 inputs must directly feed into a cast layer".
  TensorRT's ``NvInferRuntimeBase.h`` (``DataType::kUINT8``): conversions only to and from FLOAT and HALF.
- opsets 9 to 24 ("TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset 24");
- Resize's modes and coordinate modes, 2D/3D pooling with unit dilations, and reduction / squeeze
  ``axes`` that must be initializers or constants.

:func:`check_graph` runs ONNX shape inference to learn the type of every tensor and returns one
:class:`Unsupported` per node the parser would refuse. ``bsrn-export`` runs it on every graph it
writes and before any engine build; ``tests/fake_trt.py``'s fake ``OnnxParser`` runs the same check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable

from bsrn_edge._lazy import require
from bsrn_edge.errors import EngineBuildError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["TENSORRT_VERSION", "SOURCE", "SUPPORTED", "Unsupported", "check_graph", "check_bytes", "require_buildable"]

TENSORRT_VERSION = "10.15"
SOURCE = ("onnx/onnx-tensorrt docs/operators.md, TensorRT 10.15 GA (Changelog 'TensorRT 10.15 GA Release - 2026-2-2'); "
          "NVIDIA/TensorRT#3985; NvInferRuntimeBase.h DataType::kUINT8")
OPSETS = (9, 24)

_F = frozenset({"FLOAT", "FLOAT16", "BFLOAT16"})
_I = frozenset({"INT32", "INT64"})
_B = frozenset({"BOOL"})
_FI, _FIB = _F | _I, _F | _I | _B

#: operator → element types of its data inputs (ONNX ``TensorProto`` names), from the 10.15 table
SUPPORTED: dict[str, frozenset[str]] = {
    **{op: _F for op in ("AveragePool", "Ceil", "Clip", "Conv", "Erf", "Exp", "Floor", "GlobalAveragePool", "HardSigmoid",
                         "IsInf", "LeakyRelu", "Log", "MatMul", "MaxPool", "PRelu", "Reciprocal", "Resize", "Round",
                         "Sigmoid", "Softmax", "Sqrt", "Tanh")},
    **{op: _FI for op in ("Abs", "Add", "DepthToSpace", "Div", "Equal", "Greater", "IsNaN", "Less", "Max", "Min", "Mod",
                          "Mul", "Neg", "Pad", "Pow", "Range", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin",
                          "ReduceSum", "Relu", "Sub")},
    **{op: _FIB for op in ("Concat", "Constant", "ConstantOfShape", "Expand", "Gather", "Identity", "Reshape", "Shape",
                           "Slice", "Split", "Squeeze", "Transpose", "Unsqueeze", "Where")},
    **{op: _B for op in ("And", "Not", "Or")},
    "Cast": _FIB | {"UINT8"},
    "Gelu": _FI | {"INT8"},
}

#: inputs that are not data (shapes, sizes, axes: INT64 by the ONNX spec), by position; their type is not judged
_AUX_INPUTS: dict[str, tuple[int, ...]] = {"Resize": (1, 2, 3), "ConstantOfShape": (0,), "Pad": (1, 3)}
#: operators whose output type is not their input's (judged on the output too)
_TYPED_OUTPUTS = frozenset({"Cast", "Constant", "ConstantOfShape"})
#: inputs that must be initializers or Constant outputs, by position
_CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    **{op: (1,) for op in ("ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Squeeze", "Unsqueeze")}}
#: attribute values the table allows (an absent attribute takes the ONNX default, which is allowed)
_ATTRIBUTES: dict[str, dict[str, frozenset[Any]]] = {
    "Resize": {"mode": frozenset({"nearest", "linear"}),
               "coordinate_transformation_mode": frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                            "asymmetric", "align_corners"}),
               "nearest_mode": frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}),
               "keep_aspect_ratio_policy": frozenset({"stretch"}), "antialias": frozenset({0})},
}
_POOLS = frozenset({"AveragePool", "MaxPool"})
_UINT8_CASTS = frozenset({"FLOAT", "FLOAT16"})  # kUINT8 converts only to and from kFLOAT and kHALF


@dataclass(frozen=True)
class Unsupported:
    """One node TensorRT's parser would refuse: its name, operator, the offending type and why."""

    node: str
    op: str
    dtype: str
    reason: str
    index: int = -1  # the node's position in the graph (-1: the model itself)

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.op}, {self.dtype}): {self.reason}"


def _type_names(model: "onnx.ModelProto") -> dict[str, str]:
    """Element type name of every tensor, after ONNX shape inference ('' where it stays unknown)."""
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    names: dict[str, str] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        elem = vi.type.tensor_type.elem_type
        names[vi.name] = onnx.TensorProto.DataType.Name(elem) if elem else ""
    for t in g.initializer:
        names[t.name] = onnx.TensorProto.DataType.Name(t.data_type)
    return names


def _node_name(node: Any, index: int) -> str:
    return node.name or f"#{index} {node.op_type}"


def _attribute_problems(node: Any, name: str) -> Iterable[Unsupported]:
    onnx = require("onnx")
    allowed = _ATTRIBUTES.get(node.op_type, {})
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        value = value.decode() if isinstance(value, bytes) else value
        if attr.name in allowed and value not in allowed[attr.name]:
            yield Unsupported(name, node.op_type, "-", f"{attr.name}={value!r} is not supported")
        if node.op_type in _POOLS and attr.name == "dilations" and any(d != 1 for d in value):
            yield Unsupported(name, node.op_type, "-", f"dilations {list(value)} must be empty or all ones")
        if node.op_type in _POOLS and attr.name == "kernel_shape" and len(value) not in (2, 3):
            yield Unsupported(name, node.op_type, "-", "only 2D or 3D pooling is supported")


def _uint8_problems(node: Any, name: str, types: dict[str, str], graph_io: set[str]) -> Iterable[Unsupported]:
    """The UINT8 rule: only graph inputs/outputs, only through a Cast from or to FLOAT/FLOAT16."""
    for t in [*node.input, *node.output]:
        if t and types.get(t) == "UINT8" and t not in graph_io:
            yield Unsupported(name, node.op_type, "UINT8", f"tensor {t!r} is uint8 inside the graph; "
                              "TensorRT takes UINT8 only as a network input or output")
    if node.op_type == "Cast" and node.input and node.output:
        src, dst = types.get(node.input[0], ""), types.get(node.output[0], "")
        if "UINT8" in (src, dst) and ({src, dst} - {"UINT8"}) - _UINT8_CASTS:
            yield Unsupported(name, "Cast", f"{src}->{dst}", "UINT8 converts only to and from FLOAT and FLOAT16")


def _type_problems(node: Any, name: str, types: dict[str, str], constants: set[str]) -> Iterable[Unsupported]:
    op, allowed = node.op_type, SUPPORTED[node.op_type]
    aux = _AUX_INPUTS.get(op, ())
    judged = [t for i, t in enumerate(node.input) if t and i not in aux]
    judged += list(node.output) if op in _TYPED_OUTPUTS else []
    for t in judged:
        dtype = types.get(t, "")
        if not dtype:
            yield Unsupported(name, op, "?", f"the type of {t!r} is unknown after ONNX shape inference")
        elif dtype not in allowed:
            yield Unsupported(name, op, dtype, f"{op} takes {', '.join(sorted(allowed))} in TensorRT {TENSORRT_VERSION}")
    for i in _CONSTANT_INPUTS.get(op, ()):
        if i < len(node.input) and node.input[i] and node.input[i] not in constants:
            yield Unsupported(name, op, "-", f"input {node.input[i]!r} (axes) must be an initializer or a constant")


def check_graph(model: "onnx.ModelProto") -> list[Unsupported]:
    """Every node of ``model`` that TensorRT's ONNX parser (table of :data:`TENSORRT_VERSION`) would refuse."""
    problems: list[Unsupported] = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not OPSETS[0] <= imp.version <= OPSETS[1]:
            problems.append(Unsupported("<model>", "opset", str(imp.version),
                                        f"TensorRT {TENSORRT_VERSION} imports opsets {OPSETS[0]} to {OPSETS[1]}"))
    g = model.graph
    types = _type_names(model)
    graph_io = {v.name for v in g.input} | {v.name for v in g.output}
    constants = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for k, node in enumerate(g.node):
        name = _node_name(node, k)
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED:
            found = [Unsupported(name, node.op_type, "-", f"operator {node.op_type} is not in onnx-tensorrt's "
                                 f"support table (TensorRT {TENSORRT_VERSION})")]
        else:
            found = [*_uint8_problems(node, name, types, graph_io), *_type_problems(node, name, types, constants),
                     *_attribute_problems(node, name)]
        problems += [replace(p, index=k) for p in found]
    return problems


def check_bytes(data: bytes) -> list[Unsupported]:
    """:func:`check_graph` of a serialized ONNX."""
    return check_graph(require("onnx").load_from_string(data))


def require_buildable(model: "onnx.ModelProto", source: str) -> None:
    """Raise :class:`EngineBuildError` naming every node TensorRT would refuse, before any engine build."""
    problems = check_graph(model)
    if problems:
        listed = "; ".join(str(p) for p in problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise EngineBuildError(f"{source}: TensorRT {TENSORRT_VERSION} cannot build this graph: {listed} "
                            f"(from {SOURCE.split(';')[0]}); re-export it with bsrn-export")
