"""ONNX Runtime's GPU providers on the CPU: the options we ask for against ONNX Runtime's documented option names
and formats, the onnxruntime-gpu floor, and an ORT that drops a provider or an option, imitated by a session
that behaves as ``InferenceSession`` does (research §4.4)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_ort
from fake_streams import AsyncHostDevice

pytestmark = [needs_ort]
ort = pytest.importorskip("onnxruntime")

from bsrn_edge.errors import MissingDependencyError  # noqa: E402
from bsrn_edge.meta import ModelMeta  # noqa: E402
from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend, provider_options  # noqa: E402
from bsrn_edge.runtime.backends.ort_providers import providers_for  # noqa: E402

# Written down from ONNX Runtime's own documentation and releases, not from the code under test
# (onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html and CUDA-ExecutionProvider.html;
# the option strings checked in the onnxruntime-gpu 1.18.0 and 1.31.1 wheels: /work/research/trt_ort.md §4.1-4.3).
TRT_OPTION_NAMES = {"device_id", "user_compute_stream", "trt_fp16_enable", "trt_bf16_enable", "trt_engine_cache_enable",
                    "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_timing_cache_enable", "trt_timing_cache_path",
                    "trt_cuda_graph_enable", "trt_max_workspace_size", "trt_builder_optimization_level",
                    "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes", "trt_op_types_to_exclude"}
CUDA_OPTION_NAMES = {"device_id", "user_compute_stream", "gpu_mem_limit", "arena_extend_strategy", "cudnn_conv_algo_search",
                     "do_copy_in_default_stream", "cudnn_conv_use_max_workspace", "enable_cuda_graph", "prefer_nhwc",
                     "use_tf32", "tunable_op_enable"}
REJECTED = {"has_user_compute_stream"}  # "Invalid TensorRT EP option" in 1.17.1, 1.18.0 and 1.31.1
BOOLEANS = {"True", "False", "true", "false"}  # "1" raises: "should be 'True' or 'False'"
TRT_BOOLEANS = {"trt_fp16_enable", "trt_engine_cache_enable", "trt_timing_cache_enable"}
PROFILE = re.compile(r"^\w+:\d+(x\d+)+$")  # "a string of 'input1:dim1xdimd2...,input2:...'", e.g. "input:1x3x32x32"
USER_STREAM_SINCE = (1, 18)  # 1.18.0: user_compute_stream for the CUDA (PR #19229) and TensorRT EP (PR #20168)
GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
_RealSession = ort.InferenceSession


def _meta(precision: str, pixels: str) -> ModelMeta:
    # BSRN-S: minimum input 15×15 (REFERENCE.md §5: stride-2 conv then 7×7 pool), recommended tile 195
    return ModelMeta("bsrn-s-x4", "bsrn", 4, 48, 15, 195, 48, "0" * 64, "t", precision=precision, pixels=pixels)


def _dims(value: str) -> list[int]:
    return [int(d) for d in value.split(":")[1].split("x")]


@pytest.mark.parametrize("precision,pixels", [("fp16", "uint8"), ("fp32", "float")])
def test_options_are_the_documented_names_and_formats(tmp_path, monkeypatch, precision, pixels):
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path))
    (tmp_path / "m.onnx").write_bytes(b"model bytes")
    trt, cuda, cpu = provider_options(GPU, tmp_path / "m.onnx", _meta(precision, pixels), stream_handle=1234)
    assert set(trt) <= TRT_OPTION_NAMES and set(cuda) <= CUDA_OPTION_NAMES and cpu == {}
    assert not (set(trt) | set(cuda)) & REJECTED
    assert all(trt[k] in BOOLEANS for k in TRT_BOOLEANS)
    assert trt["trt_fp16_enable"].lower() == ("true" if precision == "fp16" else "false")  # FP32 stays FP32
    assert trt["trt_engine_cache_enable"].lower() == trt["trt_timing_cache_enable"].lower() == "true"
    assert Path(trt["trt_engine_cache_path"]).is_dir() and trt["trt_engine_cache_path"].startswith(str(tmp_path))
    assert trt["user_compute_stream"] == cuda["user_compute_stream"] == "1234"  # the pointer, in decimal
    assert trt["device_id"] == cuda["device_id"] == "0"
    shapes = [trt[f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")]
    assert all(PROFILE.match(s) and s.startswith("input:") for s in shapes)
    lo, opt, hi = (_dims(s) for s in shapes)
    side = slice(1, 3) if pixels == "uint8" else slice(2, 4)
    assert lo[side] == [15, 15] and opt[side] == [195, 195]  # the model's minimum, its recommended tile
    assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)) and (hi[3] if pixels == "uint8" else hi[1]) == 3
    assert "user_compute_stream" not in provider_options(GPU, tmp_path / "m.onnx", _meta(precision, pixels))[1]
    (tmp_path / "m.onnx").write_bytes(b"re-exported bytes")  # the same name, another model: never the old engine
    again = provider_options(GPU, tmp_path / "m.onnx", _meta(precision, pixels))[0]
    assert again["trt_engine_cache_path"] != trt["trt_engine_cache_path"]


def test_the_gpu_extra_needs_the_first_release_with_user_compute_stream():
    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'gpu = \["onnxruntime-gpu>=([\d.]+)"\]', text)
    assert floor is not None and tuple(int(x) for x in floor.group(1).split(".")[:2]) >= USER_STREAM_SINCE


def test_provider_choice(monkeypatch):
    """'cpu' never asks for a GPU provider; 'cuda'/'auto' prefer TensorRT, then CUDA, keeping the CPU as the
    fallback ONNX Runtime needs; a provider this build lacks is never requested."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("cuda") == providers_for("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU)
    assert providers_for("cuda:0") == GPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for("auto") == ["CPUExecutionProvider"]


class _Session:
    """ONNX Runtime 1.18-1.32's ``InferenceSession`` with GPU providers, over a real CPU session of the model:
    a provider that fails to start makes it print "EP Error" and rebuild with the fallback providers and no
    options (``onnxruntime_inference_collection.py``, research §4.4). ``get_provider_options`` reports booleans
    as "1"/"0" (ToProviderOptions). ``behaviour`` says what fails."""

    behaviour = "ok"
    created: list["_Session"] = []

    def __init__(self, path, sess_options=None, providers=(), provider_options=()):  # type: ignore[no-untyped-def]
        self._real = _RealSession(path, providers=["CPUExecutionProvider"])
        self.asked = dict(zip(providers, provider_options))
        self._providers, self._options = list(providers), dict(self.asked)
        b, trt = self.behaviour, "TensorrtExecutionProvider"
        if trt in self.asked and b in ("reject_stream", "no_tensorrt", "no_gpu"):
            why = ("Invalid TensorRT EP option: user_compute_stream" if b == "reject_stream"
                   else "Please install TensorRT libraries as mentioned in the GPU requirements page")
            print(f"*************** EP Error ***************\nEP Error {why} when using {list(providers)}\n"
                  "Falling back to ['CUDAExecutionProvider', 'CPUExecutionProvider'] and retrying.")
            self._providers, self._options = ["CUDAExecutionProvider", "CPUExecutionProvider"], {}
        if b == "no_gpu":
            self._providers, self._options = ["CPUExecutionProvider"], {}
        if b == "ignore_cuda_stream" and "CUDAExecutionProvider" in self._options:
            self._options["CUDAExecutionProvider"] = {**self._options["CUDAExecutionProvider"], "user_compute_stream": "0"}
        _Session.created.append(self)

    def get_providers(self):  # type: ignore[no-untyped-def]
        return self._providers

    def get_provider_options(self):  # type: ignore[no-untyped-def]
        norm = {"True": "1", "False": "0"}
        return {p: {k: norm.get(v, v) for k, v in self._options.get(p, {}).items()} for p in self._providers}

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        if name == "_real":
            raise AttributeError(name)
        return getattr(self._real, name)


@pytest.fixture
def fake_ort_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU)
    monkeypatch.setattr(ort, "InferenceSession", _Session)
    monkeypatch.setattr(OnnxRuntimeBackend, "_device_for", staticmethod(lambda provider, gpu=0: AsyncHostDevice()))
    _Session.created, _Session.behaviour = [], "ok"
    return _Session


def test_options_reach_the_providers_and_bound_the_tiles(fake_ort_gpu, bsrn_s_u8_export):
    be = OnnxRuntimeBackend(bsrn_s_u8_export.files["fp16_u8_onnx"], device="cuda")
    asked = fake_ort_gpu.created[-1].asked
    assert be.name == "onnxruntime-tensorrt-fp16-u8" and be._on_gpu
    handle = str(be.device.stream_handle(be._stream))
    assert asked["TensorrtExecutionProvider"]["user_compute_stream"] == handle
    assert asked["CUDAExecutionProvider"]["user_compute_stream"] == handle
    assert _dims(asked["TensorrtExecutionProvider"]["trt_profile_max_shapes"])[1:3] == [be.tile_limits[1]] * 2
    assert be.max_batch == _dims(asked["TensorrtExecutionProvider"]["trt_profile_max_shapes"])[0]
    fp32 = OnnxRuntimeBackend(bsrn_s_u8_export.files["u8_onnx"], device="cuda")
    assert fake_ort_gpu.created[-1].asked["TensorrtExecutionProvider"]["trt_fp16_enable"] == "False"
    assert fp32.name == "onnxruntime-tensorrt-u8"


def test_a_rejected_option_is_an_error_naming_it(fake_ort_gpu, bsrn_s_u8_export):
    """ORT 1.17's TensorRT provider rejects user_compute_stream and ORT falls back to CUDA with no options."""
    fake_ort_gpu.behaviour = "reject_stream"
    with pytest.raises(MissingDependencyError, match=r"TensorrtExecutionProvider with its option user_compute_stream.*>= 1\.18"):
        OnnxRuntimeBackend(bsrn_s_u8_export.files["fp16_u8_onnx"], device="cuda")


def test_an_ignored_option_is_an_error_naming_it(fake_ort_gpu, bsrn_s_u8_export):
    fake_ort_gpu.behaviour = "ignore_cuda_stream"
    with pytest.raises(MissingDependencyError, match=r"CUDAExecutionProvider option user_compute_stream=\d+ \(it reports '0'\)"):
        OnnxRuntimeBackend(bsrn_s_u8_export.files["fp16_u8_onnx"], device="cuda")


def test_without_tensorrt_libraries_cuda_runs_with_its_options(fake_ort_gpu, bsrn_s_u8_export, caplog):
    fake_ort_gpu.behaviour = "no_tensorrt"
    with caplog.at_level(logging.WARNING):
        be = OnnxRuntimeBackend(bsrn_s_u8_export.files["fp16_u8_onnx"], device="cuda")
    assert "TensorRT execution provider unavailable" in caplog.text and "EP Error" in caplog.text
    last = fake_ort_gpu.created[-1]
    assert list(last.asked) == ["CUDAExecutionProvider", "CPUExecutionProvider"] and be.name.startswith("onnxruntime-cuda")
    assert last.get_provider_options()["CUDAExecutionProvider"]["user_compute_stream"] == str(be._stream.handle)
    assert be.tile_limits == (15, 0) and be.max_batch == 0  # no TensorRT profile to stay inside


def test_no_usable_gpu_runs_on_the_cpu_for_auto_only(fake_ort_gpu, bsrn_s_u8_export, lr_images, caplog):
    fake_ort_gpu.behaviour = "no_gpu"
    path = bsrn_s_u8_export.files["u8_onnx"]
    with pytest.raises(MissingDependencyError, match="could not start"):
        OnnxRuntimeBackend(path, device="cuda")
    with caplog.at_level(logging.WARNING):
        be = OnnxRuntimeBackend(path, device="auto")
    assert "running on the CPU" in caplog.text and be.name == "onnxruntime-cpu-u8" and be.device.kind == "cpu"
    frame = np.ascontiguousarray(lr_images[0][:30, :40])[None]
    fake_ort_gpu.behaviour = "ok"
    np.testing.assert_array_equal(be.infer(frame), OnnxRuntimeBackend(path, device="cpu").infer(frame))


def test_a_float_model_on_a_gpu_provider_takes_the_host_path(fake_ort_gpu, bsrn_s_u8_export, lr_images):
    """The device path carries uint8 pixels only: a float graph on the CUDA/TensorRT providers has no device, so
    the Upscaler's frames and images go through its host path (and match the CPU's)."""
    from bsrn_edge.runtime import Upscaler

    be = OnnxRuntimeBackend(bsrn_s_u8_export.files["onnx"], device="cuda")
    assert be._on_gpu and be.device is None and be._stream is not None  # the session still runs on its stream
    frame = np.ascontiguousarray(lr_images[1][:36, :44])
    up = Upscaler(be)
    assert up._frames is None and up._tiler is None
    want = Upscaler(bsrn_s_u8_export.files["onnx"], "onnxruntime", device="cpu").upscale(frame)
    np.testing.assert_array_equal(up.upscale_into(frame, np.empty_like(want)), want)
    np.testing.assert_array_equal(next(iter(up.stream([frame]))), want)
