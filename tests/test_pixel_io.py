"""uint8 pixel I/O inside the exported graph (export/pixel_io.py) and its validation against the float graphs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import needs_ort

pytestmark = [needs_ort]
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bsrn_edge.apps.export_cli import print_table  # noqa: E402
from bsrn_edge.errors import InputError  # noqa: E402
from bsrn_edge.export.onnx_steps import set_metadata  # noqa: E402
from bsrn_edge.export.pixel_io import pixel_io_from_onnx  # noqa: E402
from bsrn_edge.export.validate import validate_uint8  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402
from bsrn_edge.pixels import from_nchw, to_nchw  # noqa: E402

META = ModelMeta("tiny", "bsrn", 1, 3, 1, 32, 8, "0" * 64, "test")
ALL_LEVELS = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)  # every grey level, 16×16×3


def _model(nodes, inits=(), elem=TensorProto.FLOAT, in_dims=("batch", 3, "height", "width"),
           out_dims=("batch", 3, "out_height", "out_width"), scale=1):
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("input", elem, list(in_dims))],
                          [helper.make_tensor_value_info("output", elem, list(out_dims))], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    from dataclasses import replace

    return set_metadata(m, replace(META, scale=scale))


def _run(model, x, outputs=None):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(outputs, {"input": x})


def test_normalisation_equals_host_to_nchw_bit_for_bit():
    u8 = pixel_io_from_onnx(_model([helper.make_node("Identity", ["input"], ["output"])]))
    u8.graph.output.append(helper.make_tensor_value_info("input__nchw", TensorProto.FLOAT, None))  # the network's input
    out, _flag, net_in = _run(u8, ALL_LEVELS[None])
    host = to_nchw(ALL_LEVELS)
    assert np.array_equal(net_in.view(np.uint32), host.view(np.uint32))  # every bit of every level
    assert np.array_equal(out[0], ALL_LEVELS)  # identity network: uint8 in == uint8 out


def test_clamp_and_round_half_to_even():
    # float32 values c whose product c × 255 (float32) is exactly k + 0.5: round half to even gives k for
    # even k and k + 1 for odd k. Plus values outside [0, 1], which clamp to 0 and 255.
    ties = [(np.float32((k + 0.5) / 255), k) for k in range(256)
            if np.float32(np.float32((k + 0.5) / 255) * np.float32(255)) == np.float32(k + 0.5)][:6]
    assert len(ties) >= 4 and {k % 2 for _, k in ties} == {0, 1}  # both parities are exercised
    vals = [c for c, _ in ties] + [np.float32(0.5), np.float32(-0.1), np.float32(1.7), np.float32(1.0)]
    want = [k if k % 2 == 0 else k + 1 for _, k in ties] + [128, 0, 255, 255]  # 127.5 → 128
    n = len(vals)
    const = numpy_helper.from_array(np.array(vals, np.float32).reshape(1, 1, 1, n).repeat(3, axis=1), "c")
    zero = numpy_helper.from_array(np.array(0, np.float32), "z")
    net = _model([helper.make_node("Mul", ["input", "z"], ["x0"]), helper.make_node("Add", ["x0", "c"], ["output"])],
                 [const, zero], in_dims=(1, 3, 1, n), out_dims=(1, 3, 1, n))
    u8 = pixel_io_from_onnx(net)
    got = _run(u8, np.zeros((1, 1, n, 3), np.uint8))[0]
    assert got.dtype == np.uint8 and got.shape == (1, 1, n, 3)
    assert got[0, 0, :, 0].tolist() == want
    tail = u8.graph.node[-5:]
    # explicit round and clamp on float, then the one cast that writes the uint8 graph output: TensorRT's
    # cast truncates, and no TensorRT layer but the I/O Cast takes uint8 (NVIDIA/TensorRT#3985)
    assert [n.op_type for n in tail] == ["Transpose", "Mul", "Round", "Clip", "Cast"]
    assert list(tail[-1].output) == ["output"] and tail[-1].attribute[0].i == TensorProto.UINT8


def test_float16_io_network_round_trips_every_level():
    # FP16 has an 11-bit significand: |error of u/255 in fp16| × 255 ≤ 255 × 2^-11 < 0.5, so every level returns.
    net = _model([helper.make_node("Identity", ["input"], ["output"])], elem=TensorProto.FLOAT16)
    u8 = pixel_io_from_onnx(net)
    # u8→f32, f32→f16, f16→f32, f32→u8, and the non-finite flag's bool→f32
    assert [n.op_type for n in u8.graph.node].count("Cast") == 5
    assert np.array_equal(_run(u8, ALL_LEVELS[None])[0][0], ALL_LEVELS)


def _uint8_nodes(model):
    """Names of the nodes with a uint8 input or output, by ONNX shape inference (a second reading of the types)."""
    g = onnx.shape_inference.infer_shapes(model).graph
    u8 = {v.name for v in [*g.input, *g.output, *g.value_info] if v.type.tensor_type.elem_type == TensorProto.UINT8}
    return [n.name for n in g.node if u8 & {*n.input, *n.output}]


@pytest.mark.parametrize("key", ["u8_onnx", "fp16_u8_onnx"])
def test_only_the_two_io_casts_touch_uint8(bsrn_s_u8_export, key):
    """What TensorRT can build: uint8 only at the graph's input and output, each through a single Cast."""
    u8 = onnx.load(str(bsrn_s_u8_export.files[key]))
    assert _uint8_nodes(u8) == ["pixel_io__cast_in", "pixel_io__cast_out"]
    readers = [n for n in u8.graph.node if "input" in n.input]
    assert [(n.op_type, n.attribute[0].i) for n in readers] == [("Cast", TensorProto.FLOAT)]
    writers = [n for n in u8.graph.node if "output" in n.output]
    assert [(n.op_type, n.attribute[0].i) for n in writers] == [("Cast", TensorProto.UINT8)]


def test_exported_graph_gets_nhwc_uint8_io_with_named_dynamic_dims(bsrn_s_export):
    float_model = onnx.load(str(bsrn_s_export.files["onnx"]))
    u8 = pixel_io_from_onnx(float_model, "bsrn-s-x4.onnx")
    for vi, dims in ((u8.graph.input[0], ["batch", "height", "width", 3]),
                     (u8.graph.output[0], ["batch", "out_height", "out_width", 3])):
        assert vi.type.tensor_type.elem_type == TensorProto.UINT8
        assert [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] == dims
    meta = ModelMeta.from_props({p.key: p.value for p in u8.metadata_props})
    before = ModelMeta.from_props({p.key: p.value for p in float_model.metadata_props})
    assert meta.pixels == "uint8" and before.pixels == "float"
    assert (meta.variant, meta.scale, meta.checkpoint_sha256) == (before.variant, before.scale, before.checkpoint_sha256)
    with pytest.raises(InputError, match="already has uint8 pixel I/O"):
        pixel_io_from_onnx(u8, "x.u8.onnx")
    del float_model.metadata_props[:]
    with pytest.raises(InputError, match="not exported by bsrn-export"):
        pixel_io_from_onnx(float_model, "foreign.onnx")


def _pixel_check(u8_path, float_path, images):
    """A second implementation of the acceptance rule: max level difference and share of differing pixels."""
    s8 = ort.InferenceSession(str(u8_path), providers=["CPUExecutionProvider"])
    sf = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    worst, off, total = 0, 0, 0
    for img in images:
        got = s8.run(None, {"input": img[None]})[0][0]
        y = sf.run(None, {"input": (img.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)})[0]
        ref = np.clip(np.rint(y[0].transpose(1, 2, 0).astype(np.float64) * 255), 0, 255).astype(np.uint8)
        assert got.shape == ref.shape == (img.shape[0] * 4, img.shape[1] * 4, 3) and got.dtype == np.uint8
        d = np.abs(got.astype(int) - ref.astype(int))
        worst, off, total = max(worst, int(d.max())), off + int((d.max(axis=2) > 0).sum()), total + d.shape[0] * d.shape[1]
    return worst, off / total


@pytest.mark.parametrize("u8_key,float_key", [("u8_onnx", "onnx"), ("fp16_u8_onnx", "fp16_onnx")])
def test_uint8_graphs_match_float_graphs_plus_host_conversion(bsrn_s_u8_export, lr_images, u8_key, float_key):
    files = bsrn_s_u8_export.files
    assert files[u8_key].name == {"u8_onnx": "bsrn-s-x4.u8.onnx", "fp16_u8_onnx": "bsrn-s-x4.fp16.u8.onnx"}[u8_key]
    worst, frac = _pixel_check(files[u8_key], files[float_key], lr_images)
    assert worst <= 1 and frac <= 0.001
    rows = {r.artifact: r for r in bsrn_s_u8_export.validation}
    row = rows[files[u8_key].name]
    assert row.passed and row.compared_with == f"{files[float_key].name} + host uint8" and row.max_abs_diff <= 1


def test_uint8_rows_in_the_cli_table(bsrn_s_u8_export):
    buf = io.StringIO()
    print_table(bsrn_s_u8_export.validation, buf)
    lines = buf.getvalue().splitlines()
    u8_lines = [ln for ln in lines if ".u8.onnx" in ln]
    assert len(u8_lines) == 2 and all("host uint8" in ln and ln.rstrip().endswith("| pass |") for ln in u8_lines)


def test_truncating_cast_fails_validation(bsrn_s_export, lr_images):
    """A graph that casts without rounding (what TensorRT's cast alone would do) must be rejected."""
    float_model = onnx.load(str(bsrn_s_export.files["onnx"]))
    u8 = pixel_io_from_onnx(float_model)
    for n in u8.graph.node:
        if n.op_type == "Round":
            n.op_type = "Identity"
    images = [img[:40, :40] for img in lr_images[:2]]
    row = validate_uint8(u8.SerializeToString(), float_model.SerializeToString(), images, [None, None], 4,
                         artifact="t.u8.onnx", precision="fp32", float_artifact="t.onnx")
    assert not row.passed and "of pixels differ" in row.reason
    assert row.off_fraction > 0.3  # truncation is off by one on about half of the values


def test_host_reference_is_from_nchw(lr_images):
    """The check's host side is the runtime's conversion: from_nchw(to_nchw(u8)) is the identity on real images."""
    assert all(np.array_equal(from_nchw(to_nchw(img)), img) for img in lr_images)


def test_help_documents_uint8_io():
    from bsrn_edge.apps.export_cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "--uint8-io" in text and "<stem>.u8.onnx" in text and "<stem>.fp16.u8.onnx" in text
