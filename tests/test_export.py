"""bsrn-export on the CPU: every bundled variant, odd sizes, batch 2, FP16, errors, and the torch-free --onnx path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ort, needs_torch

pytestmark = [needs_torch, needs_ort]
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from bsrn_edge import load_model  # noqa: E402
from bsrn_edge.apps.export_cli import main as cli  # noqa: E402
from bsrn_edge.errors import InputError, MissingDependencyError  # noqa: E402
from bsrn_edge.export.engine_cache import EngineProfile, engine_key, sidecar_matches  # noqa: E402
from bsrn_edge.export.pipeline import ExportOptions, build_engine_step, export_checkpoint  # noqa: E402
from bsrn_edge.export.validate import ort_session  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402


@pytest.fixture(scope="module")
def bsrn_s(bsrn_s_export):
    return bsrn_s_export


@pytest.mark.parametrize("name", ["bsrn-x2", "bsrn-x3", "bsrn-x4", "bsrn-s-x4-ntire"])
def test_every_bundled_variant_exports_and_validates(tmp_path, name):
    res = export_checkpoint(name, tmp_path, ExportOptions(engine="skip"), report=lambda m: None)
    row = res.validation[0]
    assert row.passed and row.max_abs_diff <= 1e-4
    assert abs(row.psnr_onnx - row.psnr_torch) <= 0.01
    m = onnx.load(str(res.files["onnx"]))
    meta = ModelMeta.from_props({p.key: p.value for p in m.metadata_props})
    assert meta.variant == name and meta.scale == load_model(name).scale and meta.min_size == 15
    assert meta.checkpoint_sha256 == load_model(name).sha256


def test_graph_is_clean(bsrn_s):
    m = onnx.load(str(bsrn_s.files["onnx"]))
    ops = {n.op_type for n in m.graph.node}
    assert not ops & {"MatMul", "Gemm", "Transpose"}
    assert bsrn_s.node_counts["simplified"] < bsrn_s.node_counts["exported"]
    assert m.opset_import[0].version >= 17
    dims = [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # batch, height and width are dynamic


def test_onnx_runtime_fuses_every_gelu(bsrn_s, tmp_path):
    """Each exact GELU (Div-Erf-Add-Mul-Mul) must reach ORT intact, so it becomes one Gelu kernel."""
    import onnxruntime as ort

    erfs = sum(n.op_type == "Erf" for n in onnx.load(str(bsrn_s.files["onnx"])).graph.node)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(bsrn_s.files["onnx"]), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert erfs == 46  # 9 per block (7 in the block, 2 in ESA) × 5 blocks + the trunk
    assert ops.count("Gelu") == erfs and "Erf" not in ops


@pytest.mark.parametrize("h,w,batch", [(15, 15, 1), (17, 33, 1), (97, 61, 1), (48, 48, 2)])
def test_onnx_matches_pytorch_at_odd_sizes(bsrn_s, lr_images, lr_batch, h, w, batch):
    sess = ort_session(bsrn_s.files["onnx"].read_bytes())
    if batch == 2:
        x = lr_batch
    else:
        img = lr_images[0]
        x = np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    y = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        ref = load_model("bsrn-s-x4").model(torch.from_numpy(x)).numpy()
    assert y.shape == (batch, 3, 4 * x.shape[2], 4 * x.shape[3])
    assert np.abs(y - ref).max() <= 1e-4


def test_fp16_meets_acceptance(bsrn_s):
    rows = {r.precision: r for r in bsrn_s.validation}
    assert rows["fp16"].passed and abs(rows["fp16"].psnr_onnx - rows["fp32"].psnr_onnx) <= 0.02
    m = onnx.load(str(bsrn_s.files["fp16_onnx"]))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O by default
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    manifest = json.loads(bsrn_s.files["manifest"].read_text())
    assert manifest["validation"][1]["passed"]


def test_audit_peak_matches_an_independent_run(bsrn_s, lr_images):
    """The audit's peak |activation|, recomputed by exposing that node's output on hand-made 96-px tiles."""
    import onnxruntime as ort

    peak = json.loads(bsrn_s.files["manifest"].read_text())["fp16_audit"]["peak_activation"]
    m = onnx.load(str(bsrn_s.files["onnx"]))
    node = next(n for n in m.graph.node if n.name == peak["node"])
    assert node.op_type == peak["op"]
    m.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    biggest = 0.0
    for img in lr_images:
        x = _mirror_tile(img, 96)
        biggest = max(biggest, float(np.abs(sess.run([node.output[0]], {"input": x})[0]).max()))
    assert biggest == pytest.approx(peak["max_abs"], rel=1e-5)


def _mirror_tile(img, side):
    """``img`` mirrored to ``side`` px where smaller, then cropped: NCHW float32 in [0, 1], made by hand."""
    h, w = img.shape[:2]
    tile = np.pad(img, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="symmetric")[:side, :side]
    return np.ascontiguousarray(tile.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)


def _reference_ranges(model, tiles, chunk=40):
    """The plain way to audit: expose every computed float node output as a graph output, ``chunk`` at a time, and
    take max |value| in numpy over ``tiles`` (graph optimisations off, as in the audit). [(node, op, max_abs)]."""
    import onnxruntime as ort

    inferred = onnx.shape_inference.infer_shapes(model).graph
    floats = {vi.name for vi in list(inferred.value_info) + list(inferred.output)
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    rows = [(n.name, n.op_type, o) for n in model.graph.node if n.op_type != "Constant" for o in n.output if o in floats]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    peak: dict[str, float] = {}
    for start in range(0, len(rows), chunk):
        names = [o for _, _, o in rows[start:start + chunk]]
        m = onnx.ModelProto()
        m.CopyFrom(model)
        del m.graph.output[:]
        m.graph.output.extend(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in names)
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        for x in tiles:
            for o, v in zip(names, sess.run(names, {"input": x})):
                peak[o] = max(peak.get(o, 0.0), float(np.abs(v).max()))
    return [(node, op, peak[o]) for node, op, o in rows]


def test_streamed_audit_keeps_coverage_and_decisions(bsrn_s, lr_images):
    """The audit (probes reduced in the graph, run in node order) measures every node the plain way measures, with
    the same values on the same tiles, so the same nodes stay FP32; the export reports that audit's peak."""
    from bsrn_edge.export.fp16 import NEAR_LIMIT, AuditReport, NodeRange, audit_ranges, fp16_from_onnx

    m = onnx.load(str(bsrn_s.files["onnx"]))
    assert len({n.name for n in m.graph.node}) == len(m.graph.node)  # named uniquely: node names are the key
    tiles = [_mirror_tile(img, 96) for img in lr_images]  # the fixture's profile: max tile 96
    expected = _reference_ranges(m, tiles)
    audit = audit_ranges(m, tiles, 96)
    assert audit.images == 5 and len(expected) > 400
    assert [(r.node, r.op) for r in audit.ranges] == [(node, op) for node, op, _ in expected]
    assert [r.max_abs for r in audit.ranges] == pytest.approx([v for _, _, v in expected], rel=1e-5)
    manifest = json.loads(bsrn_s.files["manifest"].read_text())["fp16_audit"]
    top = max(expected, key=lambda e: e[2])
    assert (manifest["tile"], manifest["calibration_images"]) == (96, 5)
    assert manifest["peak_activation"]["node"] == top[0]
    assert manifest["peak_activation"]["max_abs"] == pytest.approx(top[2], rel=1e-5)
    reference = AuditReport(96, 5, [NodeRange(*e) for e in expected])
    assert sorted(manifest["kept_fp32"]) == sorted(fp16_from_onnx(m, reference)[1])
    # a threshold that keeps about half the nodes: set in the widest gap near the median, so rounding cannot flip one
    values = sorted(v for _, _, v in expected)
    lo, hi = len(values) // 3, 2 * len(values) // 3
    k = max(range(lo, hi), key=lambda i: values[i + 1] / max(values[i], 1e-12))
    threshold = (values[k] * values[k + 1]) ** 0.5
    kept = set(fp16_from_onnx(m, reference, threshold=threshold)[1])
    assert len(kept) >= len(values) // 3 and threshold < NEAR_LIMIT
    assert set(fp16_from_onnx(m, audit, threshold=threshold)[1]) == kept


def test_audit_memory_is_that_of_one_inference(bsrn_s, lr_images):
    """Auditing BSRN-S on five 128-px tiles raises the peak RSS by far less than holding every intermediate at once
    (the old order: +1.7 GB here, 7 GB at 256 px). Linux: the peak is reset through /proc/self/clear_refs."""
    from bsrn_edge.export.fp16 import audit_ranges

    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists():
        pytest.skip("needs Linux /proc to reset the peak RSS")

    def status_mb(field):
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1]) / 1024

    m = onnx.load(str(bsrn_s.files["onnx"]))
    tiles = [_mirror_tile(img, 128) for img in lr_images]
    clear_refs.write_text("5")  # VmHWM := VmRSS
    base = status_mb("VmRSS")
    audit = audit_ranges(m, tiles, 128)
    assert audit.images == 5
    assert status_mb("VmHWM") - base < 300


def _graph(nodes, inits, shape=(1, 1, 2, 2)):
    g = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))],
                               initializer=[onnx.numpy_helper.from_array(np.array(v, np.float32), k) for k, v in inits.items()])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_fp16_keeps_readers_of_an_initializer_beyond_fp16_range():
    from bsrn_edge.export.fp16 import fp16_from_onnx

    # y = (x · 70000) / 1000 = 70 x; 70000 > 65504 has no FP16 value, so "big" must stay an FP32 Mul.
    m = _graph([onnx.helper.make_node("Mul", ["x", "w"], ["t"], name="big"),
                onnx.helper.make_node("Div", ["t", "d"], ["y"], name="scale_down")], {"w": 70000.0, "d": 1000.0})
    half, kept = fp16_from_onnx(m)
    assert list(kept) == ["big"] and "beyond the FP16 range" in kept["big"]
    inits = {t.name: t.data_type for t in half.graph.initializer}
    assert inits["w"] == onnx.TensorProto.FLOAT and inits["d"] == onnx.TensorProto.FLOAT16
    x = np.array([[[[1e-4, 2e-4], [5e-4, 1e-3]]]], np.float32)
    assert np.allclose(_run(half, x), [[[[0.007, 0.014], [0.035, 0.07]]]], rtol=1e-3)  # by hand: 70 x


def test_fp16_keeps_a_node_whose_audited_activation_is_too_large():
    from bsrn_edge.export.fp16 import NEAR_LIMIT, audit_ranges, fp16_from_onnx

    # a = 200 x, b = 200 a = 40000 x, y = b / 10000 = 4 x; on x ≤ 1: |a| ≤ 200, |b| ≤ 40000 (> 65504 / 8), |y| ≤ 4
    m = _graph([onnx.helper.make_node("Mul", ["x", "k"], ["a"], name="a"),
                onnx.helper.make_node("Mul", ["a", "k"], ["b"], name="b"),
                onnx.helper.make_node("Div", ["b", "d"], ["y"], name="y")], {"k": 200.0, "d": 10000.0})
    x = np.array([[[[0.25, 0.5], [0.75, 1.0]]]], np.float32)
    audit = audit_ranges(m, [x], 2)
    assert {r.node: r.max_abs for r in audit.ranges} == {"a": 200.0, "b": 40000.0, "y": 4.0}
    assert NEAR_LIMIT < 40000.0
    half, kept = fp16_from_onnx(m, audit)
    assert list(kept) == ["b"] and "4e+04" in kept["b"]
    b = next(n for n in half.graph.node if n.name == "b")
    assert b.input[0].endswith("__to_fp32") and b.input[1] == "k"  # FP32 inputs: a cast up, k kept FP32 too
    assert {t.name: t.data_type for t in half.graph.initializer}["k"] == onnx.TensorProto.FLOAT
    assert np.allclose(_run(half, x), 4 * x, rtol=1e-3)
    assert fp16_from_onnx(m, audit, threshold=50000.0)[1] == {}  # 40000 is under this threshold: nothing kept


def test_artifact_and_engine_names():
    from bsrn_edge.export.pipeline import artifact_paths, engine_path_for

    p = artifact_paths(Path("o"), "m", fp16=True, uint8_io=True)
    assert {k: v.name for k, v in p.items()} == {"onnx": "m.onnx", "fp16_onnx": "m.fp16.onnx", "u8_onnx": "m.u8.onnx",
                                                 "fp16_u8_onnx": "m.fp16.u8.onnx", "manifest": "m.manifest.json"}
    assert [engine_path_for(Path(n)).name for n in ("m.onnx", "m.fp16.onnx", "m.u8.onnx", "m.fp16.u8.onnx")] == [
        "m.fp32.engine", "m.fp16.engine", "m.fp32.u8.engine", "m.fp16.u8.engine"]


def test_fp16_keeps_cca_reductions_in_fp32(tmp_path):
    res = export_checkpoint("bsrn-x4", tmp_path, ExportOptions(fp16=True, fp16_io=True, profile=EngineProfile(32, 48, 64),
                                                                engine="skip"), report=lambda m: None)
    assert sum("reduces over the whole tile" in why for why in res.fp32_nodes.values()) == 16
    rows = {r.precision: r for r in res.validation}
    assert rows["fp16"].passed
    m = onnx.load(str(res.files["fp16_onnx"]))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_failed_validation_leaves_nothing(tmp_path, monkeypatch):
    import bsrn_edge.export.validate as val

    monkeypatch.setattr(val, "FP32_MAX_DIFF", 0.0)
    rc = cli(["--ckpt", "bsrn-s-x4", "--out", str(tmp_path), "--no-engine", "-q"])
    assert rc == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_need_force(tmp_path, capsys):
    (tmp_path / "bsrn-s-x4.onnx").write_bytes(b"keep me")
    assert cli(["--ckpt", "bsrn-s-x4", "--out", str(tmp_path), "--no-engine"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "bsrn-s-x4.onnx").read_bytes() == b"keep me"


def test_bad_inputs_get_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    assert cli(["--ckpt", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert cli(["--ckpt", "bsrn-s-x4", "--out", str(tmp_path / "o"), "--min-tile", "8"]) == 2
    assert "minimum input size 15" in capsys.readouterr().err
    assert cli(["--ckpt", "bsrn-s-x4", "--out", str(tmp_path / "o"), "--min-tile", "64", "--opt-tile", "32", "--max-tile", "128"]) == 2
    assert "min ≤ opt ≤ max" in capsys.readouterr().err


def test_unwritable_directory_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the directory should be
    assert cli(["--ckpt", "bsrn-s-x4", "--out", str(blocker / "out")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_engine_step_without_tensorrt(tmp_path, bsrn_s):
    notes = []
    msg = build_engine_step(bsrn_s.files["fp16_onnx"], EngineProfile(32, 64, 96), "fp16", "auto", notes.append)
    if "skipped" not in msg:
        pytest.skip("TensorRT and a GPU are present")
    assert "bsrn-export --onnx" in msg and "--max-tile 96" in msg
    with pytest.raises(MissingDependencyError, match="--engine"):
        build_engine_step(bsrn_s.files["fp16_onnx"], EngineProfile(32, 64, 96), "fp16", "require", notes.append)


def test_engine_cache_key_changes_with_every_input(tmp_path):
    p = EngineProfile(32, 128, 256)
    base = engine_key(b"onnx", "10.12.0", "NVIDIA H100", (9, 0), "fp16", p)
    variants = [
        engine_key(b"onnx2", "10.12.0", "NVIDIA H100", (9, 0), "fp16", p),
        engine_key(b"onnx", "11.0.0", "NVIDIA H100", (9, 0), "fp16", p),
        engine_key(b"onnx", "10.12.0", "NVIDIA L4", (8, 9), "fp16", p),
        engine_key(b"onnx", "10.12.0", "NVIDIA H100", (9, 0), "fp32", p),
        engine_key(b"onnx", "10.12.0", "NVIDIA H100", (9, 0), "fp16", EngineProfile(32, 128, 512)),
    ]
    assert len({base.digest, *(k.digest for k in variants)}) == 6
    assert "h100" in base.file_name("m") and "sm90" in base.file_name("m")
    side = tmp_path / "e.engine.json"
    side.write_text(base.to_json())
    assert sidecar_matches(side, base) and not sidecar_matches(side, variants[0])
    with pytest.raises(InputError):
        EngineProfile(32, 16, 64).validate(15)


def test_onnx_path_runs_without_torch(tmp_path, bsrn_s):
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "bsrn_edge.apps.export_cli", "--onnx", str(bsrn_s.files["fp16_onnx"])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "torch" not in proc.stderr.lower().replace("tensorrt", "")
    if proc.returncode == 0:
        pytest.skip("TensorRT present: engine built")
    assert proc.returncode == 3 and "TensorRT is not installed" in proc.stderr


def test_calibration_images_join_validation_and_audit(tmp_path, set5_dir):
    import shutil

    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(set5_dir.glob("*_LR.png"))[:2]:
        shutil.copy(p, calib / p.name.replace("_LR", "_cal"))
    res = export_checkpoint("bsrn-s-x4", tmp_path / "out", ExportOptions(fp16=True, calib=calib, profile=EngineProfile(32, 48, 64),
                                                                      engine="skip"), report=lambda m: None)
    manifest = json.loads(res.files["manifest"].read_text())
    assert manifest["fp16_audit"]["calibration_images"] == 7  # 5 bundled Set5 + 2 from --calib
    assert all(r["passed"] for r in manifest["validation"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        export_checkpoint("bsrn-s-x4", tmp_path / "o2", ExportOptions(calib=tmp_path / "empty"), report=lambda m: None)
