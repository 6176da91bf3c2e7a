"""The TensorRT compatibility check (export/trt_support.py): our exported graphs pass it, deliberately wrong
graphs fail it with the node's name, and the fake parser (tests/fake_trt.py) refuses what it refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_ort, needs_torch
from fake_trt import fake_gpu  # noqa: F401 - a fixture

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bsrn_edge.errors import BsrnEdgeError  # noqa: E402
from bsrn_edge.export.engine_cache import EngineProfile  # noqa: E402
from bsrn_edge.export.onnx_steps import set_metadata  # noqa: E402
from bsrn_edge.export.pipeline import build_engine_step  # noqa: E402
from bsrn_edge.export.pixel_io import pixel_io_from_onnx  # noqa: E402
from bsrn_edge.export.tensorrt_build import engine_from_onnx  # noqa: E402
from bsrn_edge.export.trt_support import SUPPORTED, TENSORRT_VERSION, check_graph  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402

PROFILE = EngineProfile(min_tile=16, opt_tile=32, max_tile=64, max_batch=2)
F = {"FLOAT", "FLOAT16", "BFLOAT16"}


def test_the_table_is_onnx_tensorrt_10_15():
    """Spot checks against onnx-tensorrt docs/operators.md at TensorRT 10.15 (copied into
    /work/research/trt_ort.md §1 by hand): logic ops take BOOL only; UINT8 appears only under Cast."""
    assert TENSORRT_VERSION == "10.15"
    assert SUPPORTED["Or"] == SUPPORTED["And"] == SUPPORTED["Not"] == {"BOOL"}
    assert SUPPORTED["IsInf"] == SUPPORTED["Round"] == SUPPORTED["Clip"] == SUPPORTED["Resize"] == F
    assert SUPPORTED["IsNaN"] == SUPPORTED["ReduceMax"] == F | {"INT32", "INT64"}
    assert SUPPORTED["Transpose"] == F | {"INT32", "INT64", "BOOL"}
    assert [op for op, types in SUPPORTED.items() if "UINT8" in types] == ["Cast"]
    assert not any("DOUBLE" in types for types in SUPPORTED.values())  # "limited support": cast down, not a type


@needs_ort
@needs_torch
def test_every_exported_bsrn_s_graph_passes(bsrn_s_u8_export):
    """FP32 and FP16, float and uint8 I/O, as bsrn-export wrote them; the export recorded the same verdict."""
    files = bsrn_s_u8_export.files
    for key in ("onnx", "fp16_onnx", "u8_onnx", "fp16_u8_onnx"):
        assert check_graph(onnx.load(str(files[key]))) == [], key
        assert bsrn_s_u8_export.tensorrt_check[files[key].name] == []
    manifest = json.loads(files["manifest"].read_text())
    assert manifest["tensorrt_check"] == {files[k].name: [] for k in ("onnx", "fp16_onnx", "u8_onnx", "fp16_u8_onnx")}


@needs_ort
@needs_torch
def test_bsrn_graphs_pass_in_both_precisions_and_pixel_ios():
    """BSRN ×4 (CCA's statistics, 64 channels), traced as bsrn-export traces it, converted to FP16 (the
    reduction rule, no audit) and wrapped into uint8 I/O: every one of the four graphs passes."""
    from bsrn_edge.checkpoint import load_model
    from bsrn_edge.export.fp16 import fp16_from_onnx
    from bsrn_edge.export.onnx_steps import onnx_from_model, simplify_onnx

    loaded = load_model("bsrn-x4")
    v = loaded.variant
    fp32 = set_metadata(simplify_onnx(onnx_from_model(loaded)),
                        ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256, "t"))
    fp16, _ = fp16_from_onnx(fp32)
    set_metadata(fp16, ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256, "t",
                                 precision="fp16"))
    for model in (fp32, fp16, pixel_io_from_onnx(fp32), pixel_io_from_onnx(fp16)):
        assert check_graph(model) == []


def _tiny_u8(tmp_path, *, uint8_transpose: bool = False, extra_op: str | None = None):
    """A ×4 nearest-neighbour network with bsrn-export metadata, wrapped into uint8 I/O; optionally broken
    the way issue 20 found the old epilogue (Transpose after the uint8 Cast) or with an operator TensorRT lacks."""
    scales = numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["input", "", "scales"], ["r"], mode="nearest", name="upsample")]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["r"], ["output"], domain="com.example", name="fancy"))
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["output"], name="same"))
    g = helper.make_graph(nodes, "tiny",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])],
                          initializer=[scales])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    set_metadata(m, ModelMeta("tiny", "bsrn", 4, 3, 15, 32, 8, "0" * 64, "test"))
    u8 = pixel_io_from_onnx(m) if not extra_op else m
    if uint8_transpose:  # the pre-fix tail: ... Clip → Cast(uint8) → Transpose → output
        by_name = {n.name: n for n in u8.graph.node}
        t, cast = by_name["pixel_io__to_nhwc"], by_name["pixel_io__cast_out"]
        by_name["pixel_io__scale"].input[0] = t.input[0]  # Mul reads NCHW, the Transpose moves after the Cast
        cast.output[0], t.input[0], t.output[0] = "q_u8", "q_u8", "output"
        nodes = [n for n in u8.graph.node if n.name != "pixel_io__to_nhwc"] + [t]
        del u8.graph.node[:]
        u8.graph.node.extend(nodes)
    path = tmp_path / ("tiny.u8.onnx" if not extra_op else "tiny.onnx")
    path.write_bytes(u8.SerializeToString())
    return u8, path


def test_a_uint8_transpose_fails_the_check_with_its_name(tmp_path):
    good, _ = _tiny_u8(tmp_path)
    assert check_graph(good) == []
    bad, _ = _tiny_u8(tmp_path, uint8_transpose=True)
    onnx.checker.check_model(bad)  # a valid ONNX graph (ONNX Runtime runs it): only TensorRT refuses it
    problems = check_graph(bad)
    assert {(p.node, p.op, p.dtype) for p in problems} == {("pixel_io__to_nhwc", "Transpose", "UINT8"),
                                                           ("pixel_io__cast_out", "Cast", "UINT8")}
    assert any("uint8 inside the graph" in p.reason for p in problems)


def test_an_unknown_operator_fails_the_check_with_its_name(tmp_path):
    model, _ = _tiny_u8(tmp_path, extra_op="FancyOp")
    assert [(p.node, p.op) for p in check_graph(model)] == [("fancy", "FancyOp")]


def test_float64_and_a_bad_resize_mode_are_named():
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 3, 8, 8])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu64")], "g", [x], [y])
    opset17 = [helper.make_opsetid("", 17)]
    assert [(p.node, p.dtype) for p in check_graph(helper.make_model(g, opset_imports=opset17))] == [("relu64", "DOUBLE")]
    newest = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25)])
    assert ("<model>", "opset", "25") in [(p.node, p.op, p.dtype) for p in check_graph(newest)]  # TensorRT 10.15: 9 to 24
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])
    s = numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "s")
    g = helper.make_graph([helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", name="bicubic")], "g", [x], [y],
                          initializer=[s])
    assert [(p.node, p.op) for p in check_graph(helper.make_model(g, opset_imports=opset17))] == [("bicubic", "Resize")]


@pytest.mark.parametrize("broken", ["uint8_transpose", "unknown_op"])
def test_the_fake_parser_refuses_the_same_nodes(fake_gpu, tmp_path, broken):
    """The fake TensorRT runs the same check in OnnxParser.parse: the build fails naming the node."""
    _, path = _tiny_u8(tmp_path, **({"uint8_transpose": True} if broken == "uint8_transpose" else {"extra_op": "FancyOp"}))
    node = "pixel_io__to_nhwc" if broken == "uint8_transpose" else "fancy"
    with pytest.raises(BsrnEdgeError, match=f"could not parse the ONNX: .*with name: {node} and operator"):
        engine_from_onnx(path, tmp_path / "t.engine", PROFILE, precision="fp32",
                         pixels="uint8" if broken == "uint8_transpose" else "float", cache_dir=tmp_path / "c")
    assert fake_gpu.calls_to("OnnxParser.parse") and not fake_gpu.calls_to("Builder.build_serialized_network")


def test_the_engine_step_names_the_node_before_touching_tensorrt(fake_gpu, tmp_path, monkeypatch):
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    _, path = _tiny_u8(tmp_path, uint8_transpose=True)
    with pytest.raises(BsrnEdgeError, match=r"TensorRT 10\.15 cannot build this graph: .*node 'pixel_io__to_nhwc' \(Transpose, UINT8\)"):
        build_engine_step(path, PROFILE, "fp32", "require", lambda m: None)
    assert not fake_gpu.calls_to("Builder") and not fake_gpu.calls_to("OnnxParser")  # refused before any build
    assert not (tmp_path / "tiny.fp32.u8.engine").exists()


@pytest.mark.parametrize("broken", ["uint8_transpose", "build_fails"])
def test_bsrn_export_says_the_engine_build_failed_and_exits_1(fake_gpu, tmp_path, monkeypatch, capsys, broken):
    """A graph the support table refuses, or a builder that returns no engine: the work ran and failed (exit 1),
    not a usage error (exit 2), and the message names the file."""
    from bsrn_edge.apps.export_cli import main

    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    _, path = _tiny_u8(tmp_path, uint8_transpose=broken == "uint8_transpose")
    fake_gpu.build_fails = broken == "build_fails"
    assert main(["--onnx", str(path), "--engine", "--min-tile", "16", "--opt-tile", "32", "--max-tile", "64"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bsrn-export: engine build failed: {path}: ") and "Traceback" not in err
    assert ("cannot build this graph" if broken == "uint8_transpose" else "failed to build an engine") in err
    assert not list(tmp_path.glob("*.engine"))
