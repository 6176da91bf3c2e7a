"""export/tensorrt_build.py and the engine branch of export/pipeline.py against the fake TensorRT/pycuda (tests/fake_trt.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ort
from fake_trt import fake_gpu, nearest_upsample  # noqa: F401 - fake_gpu is a fixture

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bsrn_edge.errors import BsrnEdgeError  # noqa: E402
from bsrn_edge.export.engine_cache import EngineProfile, sidecar_matches  # noqa: E402
from bsrn_edge.export.onnx_steps import set_metadata  # noqa: E402
from bsrn_edge.export.pipeline import build_engine_step, tensorrt_unavailable_reason  # noqa: E402
from bsrn_edge.export.pixel_io import pixel_io_from_onnx  # noqa: E402
from bsrn_edge.export.tensorrt_build import engine_from_onnx, gpu_identity  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402

PROFILE = EngineProfile(min_tile=16, opt_tile=32, max_tile=64, max_batch=2)
STRONGLY_TYPED_BIT = 1 << 1  # NetworkDefinitionCreationFlag.STRONGLY_TYPED == 1 in TensorRT 10.x


def _tiny(tmp_path: Path, name: str = "tiny.onnx", u8: bool = False, factor: float = 1.0) -> Path:
    """A ×4 nearest-neighbour network (Resize) with bsrn-export metadata; ``factor`` changes its bytes."""
    scales = numpy_helper.from_array(np.array([1, 1, 4, 4], np.float32), "scales")
    k = numpy_helper.from_array(np.array(factor, np.float32), "k")
    g = helper.make_graph(
        [helper.make_node("Mul", ["input", "k"], ["xk"]),
         helper.make_node("Resize", ["xk", "", "scales"], ["output"], mode="nearest")],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "out_height", "out_width"])],
        initializer=[scales, k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    set_metadata(m, ModelMeta("tiny", "bsrn", 4, 3, 15, 32, 8, "0" * 64, "test"))
    if u8:
        m = pixel_io_from_onnx(m)
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return path


def _index(names: list[str], api: str) -> int:
    assert api in names, f"{api} was never called; calls: {names}"
    return names.index(api)


def test_build_makes_the_documented_calls_in_order(fake_gpu, tmp_path):
    notes: list[str] = []
    onnx_path = _tiny(tmp_path)
    res = engine_from_onnx(onnx_path, tmp_path / "tiny.fp32.engine", PROFILE, precision="fp32",
                           workspace_bytes=123_456_789, cache_dir=tmp_path / "cache", report=notes.append)
    trt = fake_gpu.tensorrt
    assert fake_gpu.calls_to("Builder.create_network")[0].args == (STRONGLY_TYPED_BIT,)
    assert fake_gpu.calls_to("IBuilderConfig.set_memory_pool_limit")[0].args == (trt.MemoryPoolType.WORKSPACE, 123_456_789)
    assert fake_gpu.calls_to("IOptimizationProfile.set_shape")[0].args == (
        "input", (1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64))
    assert fake_gpu.calls_to("IBuilderConfig.set_timing_cache")[0].args == (b"", False)  # a new cache, strict
    names = fake_gpu.names()
    order = ["Builder.create_network", "OnnxParser.parse", "IOptimizationProfile.set_shape",
             "IBuilderConfig.add_optimization_profile", "IBuilderConfig.create_timing_cache",
             "IBuilderConfig.set_timing_cache", "IBuilderConfig.progress_monitor", "Builder.build_serialized_network",
             "ITimingCache.serialize"]
    assert [_index(names, a) for a in order] == sorted(_index(names, a) for a in order)
    # the monitor got phase_start(name, parent, steps), step_complete(name, step), phase_finish(name), positionally
    assert notes == ["Building engine (0/2)", "Building engine step 1", "Building engine step 2", "Building engine done"]
    engine = (tmp_path / "tiny.fp32.engine").read_bytes()
    assert engine.startswith(b"FAKETRT") and not res.reused
    assert sidecar_matches(tmp_path / "tiny.fp32.engine.json", res.key)
    assert res.key.gpu_name == "NVIDIA H100 80GB HBM3" and res.key.compute_capability == "9.0"
    timing = list((tmp_path / "cache").glob("timing-*.cache"))
    assert len(timing) == 1 and timing[0].read_bytes() == b"[timing entries of one build]"
    assert len(list((tmp_path / "cache").glob("tiny.fp32.*.engine"))) == 1


def test_timing_cache_is_fed_back_into_the_next_build(fake_gpu, tmp_path):
    cache = tmp_path / "cache"
    engine_from_onnx(_tiny(tmp_path, "a.onnx"), tmp_path / "a.fp32.engine", PROFILE, precision="fp32", cache_dir=cache)
    engine_from_onnx(_tiny(tmp_path, "b.onnx", factor=2.0), tmp_path / "b.fp32.engine", PROFILE, precision="fp32",
                     cache_dir=cache)
    given = [c.args[0] for c in fake_gpu.calls_to("IBuilderConfig.create_timing_cache")]
    assert given == [b"", b"[timing entries of one build]"]
    assert next(cache.glob("timing-*.cache")).read_bytes() == b"[timing entries of one build]" * 2


def test_engines_are_reused_by_key(fake_gpu, tmp_path):
    onnx_path, out, cache = _tiny(tmp_path), tmp_path / "tiny.fp32.engine", tmp_path / "cache"
    first = engine_from_onnx(onnx_path, out, PROFILE, precision="fp32", cache_dir=cache)
    builds = lambda: len(fake_gpu.calls_to("Builder.build_serialized_network"))  # noqa: E731
    again = engine_from_onnx(onnx_path, out, PROFILE, precision="fp32", cache_dir=cache)
    assert again.reused and again.key.digest == first.key.digest and builds() == 1
    out.unlink()
    notes: list[str] = []
    copied = engine_from_onnx(onnx_path, out, PROFILE, precision="fp32", cache_dir=cache, report=notes.append)
    assert copied.reused and builds() == 1 and out.is_file() and notes[0].startswith("reusing cached engine")
    assert out.read_bytes() == next(cache.rglob("*.engine")).read_bytes()  # the cached engine, copied whole
    assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name]  # through a temporary, renamed away
    other = engine_from_onnx(onnx_path, out, EngineProfile(16, 32, 128, max_batch=2), precision="fp32", cache_dir=cache)
    assert not other.reused and builds() == 2 and other.key.digest != first.key.digest


def test_unparsable_onnx_is_a_clear_error(fake_gpu, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf")
    with pytest.raises(BsrnEdgeError, match=r"broken\.onnx: TensorRT could not parse the ONNX: .*Failed to parse"):
        engine_from_onnx(bad, tmp_path / "broken.fp32.engine", PROFILE, precision="fp32", cache_dir=tmp_path / "c")
    fake_gpu.parse_errors = ["Unsupported operator FancyOp"]
    with pytest.raises(BsrnEdgeError, match="Unsupported operator FancyOp"):
        engine_from_onnx(_tiny(tmp_path), tmp_path / "t.fp32.engine", PROFILE, precision="fp32", cache_dir=tmp_path / "c")
    assert not (tmp_path / "t.fp32.engine").exists()


def test_failed_build_writes_nothing(fake_gpu, tmp_path):
    fake_gpu.build_fails = True
    with pytest.raises(BsrnEdgeError, match="failed to build"):
        engine_from_onnx(_tiny(tmp_path), tmp_path / "t.fp32.engine", PROFILE, precision="fp32", cache_dir=tmp_path / "c")
    assert not (tmp_path / "t.fp32.engine").exists() and not list((tmp_path / "c").glob("*.engine"))


def test_uint8_graph_gets_an_nhwc_profile(fake_gpu, tmp_path):
    u8 = _tiny(tmp_path, "tiny.u8.onnx", u8=True)
    engine_from_onnx(u8, tmp_path / "tiny.fp32.u8.engine", PROFILE, precision="fp32", pixels="uint8",
                     cache_dir=tmp_path / "cache")
    assert fake_gpu.calls_to("IOptimizationProfile.set_shape")[0].args == (
        "input", (1, 16, 16, 3), (1, 32, 32, 3), (2, 64, 64, 3))
    assert len(list((tmp_path / "cache").glob("tiny.u8.fp32.*.engine"))) == 1
    # the NCHW profile contradicts the graph's N×H×W×3 input: the build fails, as TensorRT's would
    with pytest.raises(BsrnEdgeError, match="failed to build"):
        engine_from_onnx(u8, tmp_path / "x.fp32.u8.engine", PROFILE, precision="fp32", pixels="float",
                         cache_dir=tmp_path / "cache2")
    assert "contradicts" in fake_gpu.errors[-1]


@pytest.mark.parametrize("env", [None, "1"])
def test_gpu_identity_names_the_device_in_use(monkeypatch, tmp_path, env):
    """pycuda.autoprimaryctx takes CUDA_DEVICE (pycuda.tools.make_default_context), so the cache key must name
    that device, not device 0; a context already current on the thread wins."""
    import sys

    from fake_trt import install

    if env is None:
        monkeypatch.delenv("CUDA_DEVICE", raising=False)
    else:
        monkeypatch.setenv("CUDA_DEVICE", env)
    install(monkeypatch, devices=2, device_names=["NVIDIA A10", "NVIDIA L4"])
    try:
        want, other = ("NVIDIA L4", 0) if env == "1" else ("NVIDIA A10", 1)
        assert gpu_identity() == (want, (9, 0))
        res = engine_from_onnx(_tiny(tmp_path), tmp_path / "t.fp32.engine", PROFILE, precision="fp32",
                               cache_dir=tmp_path / "c")
        assert res.key.gpu_name == want
        import pycuda.driver as cuda

        cuda.Device(other).retain_primary_context().push()
        assert gpu_identity()[0] == ["NVIDIA A10", "NVIDIA L4"][other]
        cuda.Context.pop()
    finally:
        sys.modules.pop("pycuda.autoprimaryctx", None)


def test_engine_step_builds_from_the_uint8_graph_and_writes_its_metadata(fake_gpu, tmp_path, monkeypatch):
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    assert tensorrt_unavailable_reason() is None
    notes: list[str] = []
    u8 = _tiny(tmp_path, "tiny.fp16.u8.onnx", u8=True)
    note = build_engine_step(u8, PROFILE, "fp16", "require", notes.append)
    engine = tmp_path / "tiny.fp16.u8.engine"
    assert note.startswith(f"built {engine}") and engine.is_file()
    props = json.loads((tmp_path / "tiny.fp16.u8.engine.meta.json").read_text())
    assert props["bsrn_edge.pixels"] == "uint8" and props["bsrn_edge.scale"] == "4"
    assert {k: props[f"bsrn_edge.profile_{k}"] for k in ("min_tile", "opt_tile", "max_tile", "max_batch", "opt_batch")} == {
        "min_tile": "16", "opt_tile": "32", "max_tile": "64", "max_batch": "2", "opt_batch": "1"}
    assert fake_gpu.calls_to("IOptimizationProfile.set_shape")[0].args[1] == (1, 16, 16, 3)
    assert build_engine_step(u8, PROFILE, "fp16", "auto", notes.append).startswith("reused")


@needs_ort
def test_engine_step_on_the_exported_uint8_graph(fake_gpu, tmp_path, monkeypatch, bsrn_s_u8_export):
    import shutil

    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / bsrn_s_u8_export.files["fp16_u8_onnx"].name
    shutil.copy(bsrn_s_u8_export.files["fp16_u8_onnx"], src)
    build_engine_step(src, EngineProfile(32, 64, 96), "fp16", "require", lambda m: None)
    props = json.loads((tmp_path / "bsrn-s-x4.fp16.u8.engine.meta.json").read_text())
    assert (props["bsrn_edge.pixels"], props["bsrn_edge.precision"], props["bsrn_edge.profile_max_tile"]) == ("uint8", "fp16", "96")
    assert fake_gpu.calls_to("IOptimizationProfile.set_shape")[0].args == (
        "input", (1, 32, 32, 3), (1, 64, 64, 3), (4, 96, 96, 3))


def test_fake_runtime_runs_the_built_engine_like_the_onnx(fake_gpu, tmp_path, lr_images):
    """The fake's data path, end to end: the lead's backend tests rely on it computing the ONNX's ×4 nearest upsample."""
    u8 = _tiny(tmp_path, "tiny.u8.onnx", u8=True)
    engine_from_onnx(u8, tmp_path / "e.engine", PROFILE, precision="fp32", pixels="uint8", cache_dir=tmp_path / "c")
    import pycuda.autoprimaryctx  # noqa: F401 - pushes the primary context on this thread
    import pycuda.driver as cuda
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine((tmp_path / "e.engine").read_bytes())
    ctx = engine.create_execution_context()
    img = np.ascontiguousarray(lr_images[1][:20, :24])[None]
    assert not ctx.set_input_shape("input", (1, 80, 80, 3))  # beyond the profile's 64
    assert ctx.set_input_shape("input", img.shape) and ctx.get_tensor_shape("output") == (1, 80, 96, 3)
    d_in, d_out, d_flag = cuda.mem_alloc(img.nbytes), cuda.mem_alloc(img.nbytes * 16), cuda.mem_alloc(4)
    host = cuda.pagelocked_empty((1, 80, 96, 3), np.uint8)
    host[...] = 7
    stream = cuda.Stream()
    for name, buf in (("input", d_in), ("output", d_out), ("nonfinite", d_flag)):
        ctx.set_tensor_address(name, int(buf))
    cuda.memcpy_htod_async(d_in, img, stream)
    assert ctx.execute_async_v3(stream.handle)
    cuda.memcpy_dtoh_async(host, d_out, stream)
    assert (host == 7).all()  # nothing lands before the stream is synchronised
    stream.synchronize()
    assert engine.get_tensor_dtype("output") == trt.uint8
    sess = pytest.importorskip("onnxruntime").InferenceSession(str(u8), providers=["CPUExecutionProvider"])
    assert np.array_equal(host, sess.run(None, {"input": img})[0]) and np.array_equal(host, nearest_upsample(img, 4, True))
    with pytest.raises(TypeError, match="int device address"):
        ctx.set_tensor_address("input", d_in)  # the allocation itself, not int(allocation)
