"""INT8 export: the layer switches and the float restore against the FP32 and QDQ graphs themselves, and
``bsrn-export --onnx FILE --int8`` refusing a model over budget (exit 1, nothing written) or writing one within it.

The search runs here on tiny crops (module constants shrunk): the real one takes minutes, not a test's seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_openvino, needs_ort, needs_torch

from bsrn_edge._lazy import available


def needs_int8(test):  # type: ignore[no-untyped-def]
    for mark in (needs_openvino, needs_ort, needs_torch,
                 pytest.mark.skipif(not available("nncf"), reason="nncf not installed (extra 'int8')")):
        test = mark(test)
    return test


def test_int8_without_its_libraries_exits_3_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    from bsrn_edge.apps.export_cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    assert main(["--ckpt", "bsrn-s-x4", "--int8", "--out", str(tmp_path / "out")]) == 3
    assert "--int8 needs nncf: pip install 'bsrn-edge[int8,cpu]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def graphs(bsrn_s_export, lr_images):
    """The FP32 graph, its NNCF INT8 graph (calibrated on two Set5 crops) and the quantised layers."""
    import onnx

    from bsrn_edge.export import int8

    fp32 = onnx.load(str(bsrn_s_export.files["onnx"]))
    crops, _ = int8._crops(lr_images, 2, 24)
    q = int8._nncf_quantize(fp32, crops)
    return fp32, q, int8._layers(q)


def _run(model, x, fuse: bool = True):
    """``model`` on ONNX Runtime; ``fuse=False`` keeps every QuantizeLinear/DequantizeLinear as an op of its own (no
    INT8 kernels): INT8 emulated in float, as the search's mask model computes it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not fuse:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@needs_int8
def test_every_layer_restored_to_float_is_the_fp32_graph(graphs, lr_images):
    from bsrn_edge.export.int8 import float_layers_model

    fp32, q, layers = graphs
    assert len(layers) > 100 and {"Conv", "Add"} <= {n.op_type for n in q.graph.node if n.name in layers}
    x = np.ascontiguousarray(lr_images[1][:40, :40].transpose(2, 0, 1)[None], np.float32) / 255
    ref = _run(fp32, x)
    assert np.abs(_run(q, x) - ref).max() > 1e-3  # INT8 really changes the output
    restored = float_layers_model(q, fp32, layers)
    assert np.abs(_run(restored, x) - ref).max() <= 1e-5  # weights, inputs and the corrected biases all back
    dq = {o for n in restored.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert not [n.name for n in restored.graph.node if n.op_type != "Shape" and set(n.input) & dq]
    one = float_layers_model(q, fp32, layers[:1])
    assert len([n for n in one.graph.node if n.op_type == "QuantizeLinear"]) < len(
        [n for n in q.graph.node if n.op_type == "QuantizeLinear"])  # its quantisers pruned


@needs_int8
def test_the_mask_switches_each_layer_between_int8_and_float(graphs, lr_images):
    from bsrn_edge.export.int8 import _mask_model
    from bsrn_edge.export.validate import ort_session

    fp32, q, layers = graphs
    sess = ort_session(_mask_model(q, fp32, layers).SerializeToString())
    x = np.ascontiguousarray(lr_images[2][:32, :32].transpose(2, 0, 1)[None], np.float32) / 255
    run = lambda mask: sess.run(None, {"input": x, "qmask": mask.astype(np.float32)})[0]  # noqa: E731
    ref, quant = _run(fp32, x), _run(q, x, fuse=False)
    assert np.abs(run(np.zeros(len(layers))) - ref).max() <= 1e-5
    assert np.abs(run(np.ones(len(layers))) - quant).max() <= 1e-5
    one = run(np.eye(len(layers))[0])
    assert 0 < np.abs(one - ref).max() and np.mean((one - ref) ** 2) < np.mean((quant - ref) ** 2)


@pytest.fixture
def fast_search(monkeypatch, graphs):
    """The search on tiny crops, and NNCF's graph of the module (quantising the same FP32 graph again takes 20 s)."""
    from bsrn_edge.export import int8

    for name, value in {"SENSITIVITY_CROPS": 1, "SENSITIVITY_SIDE": 16, "SEARCH_SIDE": 24}.items():
        monkeypatch.setattr(int8, name, value)
    monkeypatch.setattr(int8, "_nncf_quantize", lambda fp32, crops: graphs[1])


@needs_int8
def test_int8_over_budget_is_refused_and_writes_nothing(bsrn_s_export, tmp_path, fast_search, capsys):
    from bsrn_edge.apps.export_cli import main

    src = tmp_path / "m.onnx"
    src.write_bytes(bsrn_s_export.files["onnx"].read_bytes())
    assert main(["--onnx", str(src), "--int8", "--max-loss-db", "0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "validation failed: m.int8.onnx: " in err  # by the search, or by OpenVINO's validation
    assert "Nothing was written (no file of this export, not only the INT8 one)" in err and "--max-loss-db" in err
    assert "within 0 dB" in err or "(budget 0 dB)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@needs_int8
def test_int8_within_budget_is_written_with_the_layers_kept(bsrn_s_export, tmp_path, fast_search):
    from bsrn_edge.apps.export_cli import main
    from bsrn_edge.runtime.model_info import read_onnx_props
    from bsrn_edge.runtime.open import open_backend

    src = tmp_path / "m.onnx"
    src.write_bytes(bsrn_s_export.files["onnx"].read_bytes())
    assert main(["--onnx", str(src), "--int8", "--max-loss-db", "5", "-q"]) == 0  # 5 dB: a budget INT8 meets
    record = json.loads((tmp_path / "m.int8.manifest.json").read_text())["int8"]
    assert record["kept_in_float"] == [] and len(record["sensitivity_mse"]) == record["layers"] > 100
    set5 = record["validation"]["Set5"]
    assert set5["loss_db"] == pytest.approx(set5["fp32"] - set5["int8"]) and 0 < set5["loss_db"] <= 5
    props = read_onnx_props(tmp_path / "m.int8.onnx")
    assert props["bsrn_edge.precision"] == "int8" and float(props["bsrn_edge.int8_loss_db"]) == pytest.approx(
        record["loss_db"], abs=1e-4)
    assert open_backend(src, "openvino", precision="int8").name == "openvino-cpu-int8"
    with pytest.raises(Exception, match="already exist"):
        from bsrn_edge.export.pipeline import ExportOptions, int8_from_onnx

        int8_from_onnx(src, ExportOptions(int8=True, max_loss_db=5), report=lambda m: None)
