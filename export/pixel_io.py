"""uint8 pixel I/O inside the graph: the network's float boundary wrapped into N×H×W×3 uint8 in and out.

The wrapped graph computes, for an input ``u`` (N×H×W×3 uint8 RGB)::

    x = Transpose(Cast(u, float32), NHWC→NCHW) / 255          # bit for bit bsrn_edge.pixels.to_nchw
    y = network(x)                                              # float32 or float16 I/O, as exported
    out = Cast(Clip(Round(Transpose(Cast(y, float32), NCHW→NHWC) × 255), 0, 255), uint8)
    nonfinite = ReduceMax(Cast(IsNaN(y) or IsInf(y), float32))  # 1×1×1×1: 1.0 when the image is garbage

``Div`` by 255 is used rather than ``Mul`` by 1/255: IEEE division is correctly rounded, so it equals
the host's ``astype(float32) / float32(255)`` exactly, whereas ``u × float32(1/255)`` differs from it
in the last bit for some ``u``. ONNX ``Round`` rounds half to even, like ``np.rint`` in
``bsrn_edge.pixels.quantize``.

What TensorRT can build decides the order (onnx-tensorrt ``docs/operators.md``, TensorRT 10.15: "UINT8 is
only supported as network input or output tensor types", UINT8 appears only under Cast; NVIDIA/TensorRT#3985):
uint8 touches exactly two nodes, the Cast that reads the graph input and the Cast that writes the graph
output, and every Transpose, Clip and Round runs on float. TensorRT's float → uint8 cast truncates and
is undefined outside [0, 256) (``NvInferRuntimeBase.h``, ``DataType::kUINT8``), so the value is rounded,
then clamped, before that cast. The non-finite flag uses IsNaN and IsInf on float32, Or on BOOL, Cast
BOOL → float and ReduceMax on float, all in the same table (``export/trt_support.py`` checks every graph).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import NONFINITE_OUTPUT, ModelMeta

from .onnx_steps import set_metadata

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["pixel_io_from_onnx"]

_IN_DIMS = ("batch", "height", "width")
_OUT_DIMS = ("batch", "out_height", "out_width")


def _float_boundary(model: "onnx.ModelProto", source: str) -> tuple[int, int]:
    """The element types of the single input and output; both must be float32 or float16 NCHW with 3 channels."""
    onnx = require("onnx")
    g = model.graph
    ok = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    if len(g.input) != 1 or len(g.output) != 1:
        raise InputError(f"{source}: expected one input and one output, found {len(g.input)} and {len(g.output)}")
    types = []
    for vi in (g.input[0], g.output[0]):
        tt = vi.type.tensor_type
        dims = tt.shape.dim
        if tt.elem_type not in ok or len(dims) != 4 or (dims[1].HasField("dim_value") and dims[1].dim_value != 3):
            raise InputError(f"{source}: {vi.name} must be N×3×H×W float32/float16 to get uint8 pixel I/O; "
                             "pass the float-I/O ONNX written by bsrn-export")
        types.append(tt.elem_type)
    return types[0], types[1]


def _nhwc_dims(vi: "onnx.ValueInfoProto", names: tuple[str, str, str]) -> list[int | str]:
    """N, H, W of an NCHW value (static sizes kept, dynamic ones named ``names``) followed by 3."""
    dims = vi.type.tensor_type.shape.dim
    out: list[int | str] = []
    for d, name in zip((dims[0], dims[2], dims[3]), names):
        out.append(d.dim_value if d.HasField("dim_value") else name)
    return out + [3]


def _rename(model: "onnx.ModelProto", old: str, new: str) -> None:
    for n in model.graph.node:
        for seq in (n.input, n.output):
            for k, name in enumerate(seq):
                if name == old:
                    seq[k] = new
    for vi in model.graph.value_info:
        if vi.name == old:
            vi.name = new


_P = "pixel_io__"  # prefix of every tensor and node the wrapper adds


def _prologue(u8_name: str, net_in: str, net_type: int) -> list["onnx.NodeProto"]:
    """uint8 N×H×W×3 → float32 N×3×H×W ÷ 255 (then the network's input type)."""
    from onnx import TensorProto, helper

    to_net = net_type != TensorProto.FLOAT
    nodes = [
        helper.make_node("Cast", [u8_name], [_P + "u_f"], to=TensorProto.FLOAT, name=_P + "cast_in"),
        helper.make_node("Transpose", [_P + "u_f"], [_P + "u_nchw"], perm=[0, 3, 1, 2], name=_P + "to_nchw"),
        helper.make_node("Div", [_P + "u_nchw", _P + "peak"], [_P + "x" if to_net else net_in], name=_P + "normalise"),
    ]
    if to_net:
        nodes.append(helper.make_node("Cast", [_P + "x"], [net_in], to=net_type, name=_P + "cast_net_in"))
    return nodes


def _epilogue(net_out: str, u8_name: str, net_type: int) -> list["onnx.NodeProto"]:
    """Network output (as float32) → N×sH×sW×3 → × 255 → Round (half to even) → Clip [0, 255] → uint8."""
    from onnx import TensorProto, helper

    nodes, y = [], net_out
    if net_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [net_out], [_P + "y_f"], to=TensorProto.FLOAT, name=_P + "cast_net_out"))
        y = _P + "y_f"
    return nodes + [
        # the flag: any NaN or ±inf in the network's output (the cast to uint8 would hide it as garbage)
        helper.make_node("IsNaN", [y], [_P + "nan"], name=_P + "is_nan"),
        helper.make_node("IsInf", [y], [_P + "inf"], name=_P + "is_inf"),
        helper.make_node("Or", [_P + "nan", _P + "inf"], [_P + "bad"], name=_P + "bad"),
        helper.make_node("Cast", [_P + "bad"], [_P + "bad_f"], to=TensorProto.FLOAT, name=_P + "cast_bad"),
        helper.make_node("ReduceMax", [_P + "bad_f"], [NONFINITE_OUTPUT], keepdims=1, name=_P + "any_bad"),
        helper.make_node("Transpose", [y], [_P + "y_nhwc"], perm=[0, 2, 3, 1], name=_P + "to_nhwc"),
        helper.make_node("Mul", [_P + "y_nhwc", _P + "peak"], [_P + "scaled"], name=_P + "scale"),
        helper.make_node("Round", [_P + "scaled"], [_P + "rounded"], name=_P + "round_half_even"),
        helper.make_node("Clip", [_P + "rounded", _P + "zero", _P + "peak"], [_P + "clipped"], name=_P + "clamp"),
        helper.make_node("Cast", [_P + "clipped"], [u8_name], to=TensorProto.UINT8, name=_P + "cast_out"),
    ]


def pixel_io_from_onnx(model: "onnx.ModelProto", source: str = "<onnx>") -> "onnx.ModelProto":
    """A copy of ``model`` (bsrn-export float I/O) taking N×H×W×3 uint8 RGB and returning N×sH×sW×3 uint8.

    Input and output keep their names and their dynamic batch/height/width dims; the metadata
    (which must be bsrn-export's) gets ``pixels="uint8"``.
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, source)
    if meta.pixels != "float":
        raise InputError(f"{source}: already has {meta.pixels} pixel I/O; pass the float-I/O ONNX")
    in_type, out_type = _float_boundary(model, source)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    in_vi, out_vi = g.input[0], g.output[0]
    in_name, out_name = in_vi.name, out_vi.name
    net_in, net_out = f"{in_name}__nchw", f"{out_name}__nchw"
    _rename(m, in_name, net_in)
    _rename(m, out_name, net_out)
    u8_in = helper.make_tensor_value_info(in_name, TensorProto.UINT8, _nhwc_dims(in_vi, _IN_DIMS))
    u8_out = helper.make_tensor_value_info(out_name, TensorProto.UINT8, _nhwc_dims(out_vi, _OUT_DIMS))

    g.initializer.extend([numpy_helper.from_array(np.array(255.0, np.float32), _P + "peak"),
                          numpy_helper.from_array(np.array(0.0, np.float32), _P + "zero")])
    prologue, epilogue = _prologue(in_name, net_in, in_type), _epilogue(net_out, out_name, out_type)
    nodes = prologue + list(g.node) + epilogue
    del g.node[:]
    g.node.extend(nodes)
    g.input.remove(in_vi)
    g.input.append(u8_in)
    g.output.remove(out_vi)
    g.output.append(u8_out)
    g.output.append(helper.make_tensor_value_info(NONFINITE_OUTPUT, TensorProto.FLOAT, [1, 1, 1, 1]))
    set_metadata(m, replace(meta, pixels="uint8"))
    onnx.checker.check_model(m)
    return m
