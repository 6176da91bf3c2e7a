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
from bsrn_edge.export.cli import main as cli  # noqa: E402
from bsrn_edge.export.engine_cache import EngineProfile, engine_key, sidecar_matches  # noqa: E402
from bsrn_edge.export.pipeline import ExportOptions, build_engine_step, export_checkpoint  # noqa: E402
from bsrn_edge.export.validate import ort_session  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402
from bsrn_edge.errors import InputError, MissingDependencyError  # noqa: E402


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
    assert manifest["fp16_audit"]["tile"] == 96 and manifest["validation"][1]["passed"]


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
    assert "cannot write there" in capsys.readouterr().err


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
    proc = subprocess.run([sys.executable, "-m", "bsrn_edge.export.cli", "--onnx", str(bsrn_s.files["fp16_onnx"])],
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
