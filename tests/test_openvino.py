"""The OpenVINO backend against the backend contract: whole frames, tiles, upscale_into, stream() and threads, each
bit-identical to itself, and FP32 within 1e-5 of ONNX Runtime on real images; precision set and read back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_openvino, needs_ort, needs_torch, threaded

pytestmark = [needs_openvino, needs_ort, needs_torch]  # torch only exports the fixtures

from bsrn_edge.errors import InputError, NonFiniteOutputError  # noqa: E402
from bsrn_edge.metrics import psnr, psnr_y  # noqa: E402
from bsrn_edge.runtime import Upscaler  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


@pytest.fixture(scope="module")
def u8_path(bsrn_s_u8_export):
    return bsrn_s_u8_export.files["u8_onnx"]


def _ov(path, **kw):
    from bsrn_edge.runtime.backends.openvino import OpenVINOBackend

    return OpenVINOBackend(path, **kw)


def _nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255


def test_fp32_matches_onnx_runtime_within_1e5_on_real_images(onnx_path, lr_images):
    from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    ov, ort = _ov(onnx_path), OnnxRuntimeBackend(onnx_path)
    for img in lr_images:  # the five Set5 LR images whole, five shapes
        x = _nchw(img)
        assert np.abs(ov.infer(x) - ort.infer(x)).max() <= 1e-5
    assert ov.inference_precision == "f32" and ov.name == "openvino-cpu-fp32"
    assert ov.config["INFERENCE_PRECISION_HINT"] == "f32" and ov.config["PERFORMANCE_HINT"] == "LATENCY"


def test_whole_tiled_and_upscale_into_agree_with_themselves_and_with_onnx_runtime(onnx_path, lr_images):
    img = lr_images[0]  # 128×128
    up = Upscaler(_ov(onnx_path), tile=None)
    whole = up.upscale(img)
    np.testing.assert_array_equal(up.upscale(img), whole)  # bit-identical to itself
    ort_whole = Upscaler(onnx_path, "onnxruntime", tile=None).upscale(img)
    assert np.abs(whole.astype(int) - ort_whole).max() <= 1
    tiled = Upscaler(_ov(onnx_path), tile=60, overlap=16, batch=2).upscale(img)
    np.testing.assert_array_equal(Upscaler(_ov(onnx_path), tile=60, overlap=16, batch=2).upscale(img), tiled)
    assert psnr(tiled, whole) >= 45.0
    frame = np.ascontiguousarray(img[:48, :64])
    out = np.empty((192, 256, 3), np.uint8)
    np.testing.assert_array_equal(up.upscale_into(frame, out), up.upscale(frame))


def test_uint8_graph_streams_frames_on_two_inference_requests(u8_path, onnx_path, lr_images):
    """A uint8-I/O model goes through the frame pipeline: three slots share two asynchronous requests of the
    thread, and the stream equals one upscale_into per frame, bit for bit, and the float graph within 1 level."""
    up = Upscaler(_ov(u8_path), tile=None)
    assert up._frames is not None and up.backend_name == "openvino-cpu-fp32-u8"
    frames = [np.ascontiguousarray(lr_images[i % 5][:48, :56]) for i in range(7)]
    want = [up.upscale_into(f, np.empty((192, 224, 3), np.uint8)).copy() for f in frames]
    got = [o.copy() for o in up.stream(frames)]
    assert len(got) == len(frames)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    lanes = {id(slot.stream) for slot in up._frames._local.ring}
    assert len(up._frames._local.ring) == 3 and len(lanes) == 2
    float_up = Upscaler(_ov(onnx_path), tile=None)
    assert np.abs(float_up.upscale(frames[0]).astype(int) - want[0]).max() <= 1


def test_float_graph_stream_equals_upscale_into(onnx_path, lr_images):
    up = Upscaler(_ov(onnx_path), tile=None)
    assert up._frames is None  # a float graph runs the host path
    frames = [np.ascontiguousarray(lr_images[i % 5][:40, :48]) for i in range(4)]
    for got, frame in zip(up.stream(frames), frames):
        np.testing.assert_array_equal(got, up.upscale(frame))


@pytest.mark.parametrize("which", ["float", "uint8"])
def test_threads_share_one_backend(which, onnx_path, u8_path, lr_images):
    up = Upscaler(_ov(onnx_path if which == "float" else u8_path), tile=None)
    frames = [np.ascontiguousarray(lr_images[i % 5][:24, :32]) for i in range(12)]
    expected = [up.upscale(f) for f in frames]

    def worker(k: int) -> list[np.ndarray]:  # two threads stream, two call upscale_into
        if k % 2:
            return [o.copy() for o in up.stream(frames)]
        buf = np.empty((96, 128, 3), np.uint8)
        return [up.upscale_into(f, buf).copy() for f in frames]

    for results in threaded(worker):
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


def test_one_compiled_model_per_shape_least_recently_used_dropped(onnx_path, lr_images):
    ov = _ov(onnx_path, shape_sessions=2)
    dynamic = _ov(onnx_path, shape_sessions=0)
    for img in (lr_images[0][:40, :56], lr_images[1][:33, :21], lr_images[2][:40, :56], lr_images[3][:17, :64]):
        x = _nchw(img)
        assert np.abs(ov.infer(x) - dynamic.infer(x)).max() <= 1e-5
    assert ov._shapes.shapes() == [(1, 3, 40, 56), (1, 3, 17, 64)]
    assert dynamic._shapes is None and dynamic._dynamic is not None


def test_bf16_is_asked_for_and_read_back(onnx_path, lr_images):
    """BF16 on a CPU with native BF16: compiled in bf16 (read back), a little off FP32 on Set5 and no more; elsewhere
    the request is refused instead of silently running FP32."""
    from bsrn_edge.runtime.backends.openvino import native_bf16

    if not native_bf16():
        with pytest.raises(InputError, match="native BF16"):
            _ov(onnx_path, precision="bf16")
        return
    bf16, fp32 = _ov(onnx_path, precision="bf16"), _ov(onnx_path)
    from bsrn_edge.datasets import bundled_arrays
    from bsrn_edge.pixels import from_nchw

    losses = []
    for _, lr, hr in bundled_arrays(4):
        a, b = fp32.infer(_nchw(lr)), bf16.infer(_nchw(lr))
        assert not np.array_equal(a, b)  # BF16 really ran
        losses.append(psnr_y(from_nchw(a), hr, 4) - psnr_y(from_nchw(b), hr, 4))
    assert bf16.inference_precision == "bf16" and bf16.name == "openvino-cpu-bf16"
    assert abs(np.mean(losses)) <= 0.05  # research and REFERENCE §7: −0.015 to −0.040 dB per image on Set5


def test_non_finite_flag_of_a_uint8_graph_is_an_error(bsrn_s_export, tmp_path, lr_images):
    from test_device_path import _nan_onnx

    from bsrn_edge.export.pixel_io import pixel_io_from_onnx

    u8 = tmp_path / "m.u8.onnx"
    u8.write_bytes(pixel_io_from_onnx(_nan_onnx(bsrn_s_export.files["onnx"])).SerializeToString())
    frame = np.ascontiguousarray(lr_images[2][:40, :48])
    up = Upscaler(_ov(u8), tile=None)
    with pytest.raises(NonFiniteOutputError, match="40×48"):
        up.upscale_into(frame, np.empty((160, 192, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError):
        list(up.stream([frame, frame]))
    with pytest.raises(NonFiniteOutputError):
        Upscaler(_ov(u8), tile=21).upscale(frame)


def test_open_backend_routes_devices_and_precisions(onnx_path, tmp_path):
    from bsrn_edge.runtime.open import open_backend

    assert open_backend(onnx_path, "openvino").name == "openvino-cpu-fp32"
    with pytest.raises(InputError, match="int8.onnx is not beside it"):
        open_backend(onnx_path, "openvino", precision="int8")
    with pytest.raises(InputError, match="not CUDA"):
        open_backend(onnx_path, "openvino", device="cuda")
    with pytest.raises(InputError, match="no device 'GPU.7'"):
        open_backend(onnx_path, "openvino", device="gpu.7")
    with pytest.raises(InputError, match="OpenVINO device"):
        open_backend(onnx_path, "onnxruntime", device="gpu")
    with pytest.raises(InputError, match="openvino backend"):
        open_backend(onnx_path, "onnxruntime", precision="bf16")


def test_bsrn_upscale_backend_openvino_and_its_devices(onnx_path, tmp_path, lr_images, capsys):
    from conftest import run_upscale, save_image

    src = save_image(lr_images[2][:40, :48], tmp_path / "in.png")
    assert run_upscale("-i", src, "-o", tmp_path / "out.png", "-m", onnx_path, "--backend", "openvino", "-g", "cpu") == 0
    assert "on openvino-cpu-fp32" in capsys.readouterr().err and (tmp_path / "out.png").is_file()
    assert run_upscale("-i", src, "-o", tmp_path / "gpu.png", "-m", onnx_path, "--backend", "openvino", "-g", "gpu.7") == 2
    assert "OpenVINO has no device 'GPU.7'" in capsys.readouterr().err and not (tmp_path / "gpu.png").exists()
    assert run_upscale("-i", src, "-o", tmp_path / "x.png", "-m", onnx_path, "-g", "npu", "--backend", "onnxruntime") == 2
    assert "OpenVINO device" in capsys.readouterr().err
