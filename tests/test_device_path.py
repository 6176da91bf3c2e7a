"""The device path on the CPU, through the same interfaces a GPU uses: PyTorch CPU tensors as device
buffers, ONNX Runtime's IOBinding on a uint8-I/O model, the pipelined stream, the device tiler, the
non-finite guard, the FP32 fallback and the out-of-memory retry.

ONNX Runtime's device path runs on a fake device whose streams are asynchronous (tests/fake_streams.py): the
backend's compute stream starts work as early as its event waits allow and the callers' streams as late as
the host's waits allow, so a missing join or wait computes on the old input or returns the old output."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import needs_ort, needs_torch

pytestmark = [needs_torch, needs_ort]
torch = pytest.importorskip("torch")

from fake_streams import AsyncHostDevice, async_ort  # noqa: E402

from bsrn_edge.errors import InputError  # noqa: E402
from bsrn_edge.pixels import from_nchw, quantize, to_nchw  # noqa: E402
from bsrn_edge.runtime import Upscaler  # noqa: E402
from bsrn_edge.runtime.backends.torch import TorchBackend  # noqa: E402
from bsrn_edge.runtime.frames import FramePipeline, NonFiniteOutputError, device_of  # noqa: E402


def _async_ort(path):  # type: ignore[no-untyped-def]
    """An ONNX Runtime backend of ``path`` whose device path runs on an asynchronous fake device, its compute
    stream (the first one made) eager."""
    from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    be = async_ort(OnnxRuntimeBackend(path), AsyncHostDevice(eager_streams=1))
    assert be._stream.eager
    return be


def _clip(lr_images: list[np.ndarray], h: int = 90, w: int = 160, n: int = 5) -> list[np.ndarray]:
    """A clip of real frames: each Set5 LR image mirrored (tiled) to h×w."""
    frames = []
    for img in (lr_images * 2)[:n]:
        reps = (-(-h // img.shape[0]) + 1, -(-w // img.shape[1]) + 1, 1)
        frames.append(np.ascontiguousarray(np.tile(img, reps)[:h, :w]))
    return frames


@pytest.fixture(scope="module")
def torch_cpu() -> TorchBackend:
    return TorchBackend("bsrn-s-x4", device="cpu")


def _grey_levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d > 0).mean())


def test_torch_cpu_backend_has_a_device_path(torch_cpu):
    dev = device_of(torch_cpu)
    assert dev is not None and dev.kind == "cpu"
    x = dev.empty((1, 20, 24, 3), np.uint8)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8
    with pytest.raises(InputError, match="device output must be"):
        torch_cpu.run_device(x, dev.empty((1, 80, 80, 3), np.uint8), None)


def test_pixel_path_equals_the_float_path_with_host_conversion(torch_cpu, lr_images):
    """uint8 in/out on the device vs float out + bsrn_edge.pixels conversion: ≤ 1 level on ≤ 0.1 % of pixels."""
    frame = _clip(lr_images, 90, 160, 1)[0]
    pipe = FramePipeline(torch_cpu, slots=1)
    got = pipe.run(frame, np.empty((360, 640, 3), np.uint8))
    want = from_nchw(torch_cpu.infer(to_nchw(frame)))
    worst, share = _grey_levels(got, want)
    assert worst <= 1 and share <= 0.001


def test_stream_is_identical_to_sequential_upscale_into(torch_cpu, lr_images):
    """Pipelined stream() on a real clip gives the same bytes as one frame at a time, in order."""
    frames = _clip(lr_images, 90, 160, 5)
    up = Upscaler(torch_cpu, tile=None, slots=3)
    assert up._frames is not None  # the device path is the one under test
    sequential = [up.upscale_into(f, np.empty((360, 640, 3), np.uint8)).copy() for f in frames]
    streamed = [o.copy() for o in up.stream(iter(frames))]
    assert len(streamed) == len(frames)
    for a, b in zip(streamed, sequential):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(streamed[0], streamed[1])  # different frames really came out in order
    # the yielded buffers come from a ring of `slots` page-locked buffers, not one per frame
    ids = {id(o) for o in up.stream(iter(frames))}
    assert len(ids) == 3


def test_device_tiler_equals_the_host_stitcher(torch_cpu, lr_images):
    """Tiles cut and blended with torch ops give what the numpy stitcher gives (same plan, same network)."""
    from bsrn_edge.pixels import row_writer, window_reader
    from bsrn_edge.runtime.bands import banded_apply
    from bsrn_edge.runtime.device_tiling import DeviceTiler
    from bsrn_edge.runtime.tiling import plan_tiles

    img = lr_images[0][:100, :90]
    plan = plan_tiles(100, 90, scale=4, tile=45, overlap=12, min_size=15)
    assert len(plan) >= 4
    on_device = np.empty((400, 360, 3), np.uint8)
    DeviceTiler(torch_cpu).run(img, "rgb", on_device, plan, (400, 360), batch=2)
    on_host = np.empty_like(on_device)
    banded_apply(torch_cpu.infer, window_reader(img, "rgb"), plan, row_writer(on_host, "rgb", (400, 360)), batch=2)
    worst, share = _grey_levels(on_device, on_host)
    assert worst <= 1 and share <= 0.001


def test_nan_weights_never_give_a_black_image(nan_checkpoint, lr_images):
    up = Upscaler(nan_checkpoint, device="cpu", tile=None)
    frame = lr_images[1][:30, :40]
    with pytest.raises(NonFiniteOutputError, match=r"bsrn-s-x4 .*30×40"):
        up.upscale_into(frame, np.empty((120, 160, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError):
        list(up.stream([frame]))
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        Upscaler(up.backend, tile=32).upscale(lr_images[1][:50, :50])  # the tiled host path too


def _nan_onnx(src):
    """The ONNX at ``src`` with its output multiplied by NaN (a stand-in for an FP16 overflow)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    g = model.graph
    out = g.output[0].name
    for n in g.node:  # rename the network's output, then multiply it by NaN
        n.output[:] = [o + "_net" if o == out else o for o in n.output]
    g.initializer.append(helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]))
    g.node.append(helper.make_node("Mul", [out + "_net", "nan"], [out]))
    return model


def test_fp16_artifact_falls_back_to_fp32_beside_it(bsrn_s_export, tmp_path, lr_images, caplog):
    """An FP16 ONNX whose output is NaN: the Upscaler warns and uses the FP32 ONNX beside it."""
    fp32 = tmp_path / "m.onnx"
    fp32.write_bytes(bsrn_s_export.files["onnx"].read_bytes())
    (tmp_path / "m.fp16.onnx").write_bytes(_nan_onnx(bsrn_s_export.files["fp16_onnx"]).SerializeToString())
    frame = lr_images[2][:40, :40]
    want = Upscaler(fp32).upscale(frame)
    with caplog.at_level(logging.WARNING):
        got = Upscaler(tmp_path / "m.fp16.onnx").upscale(frame)
    np.testing.assert_array_equal(got, want)
    assert "falling back" in caplog.text
    (tmp_path / "m.onnx").unlink()
    with pytest.raises(NonFiniteOutputError, match="40×40"):
        Upscaler(tmp_path / "m.fp16.onnx").upscale(frame)


def test_uint8_graph_flags_non_finite_output(bsrn_s_export, tmp_path, lr_images):
    """The uint8-I/O graph reports NaN through its flag output: frames and tiles fall back to the FP32
    float ONNX beside it (identical to running that one), or fail with the input size."""
    from bsrn_edge.export.pixel_io import pixel_io_from_onnx

    u8 = tmp_path / "m.fp16.u8.onnx"
    u8.write_bytes(pixel_io_from_onnx(_nan_onnx(bsrn_s_export.files["fp16_onnx"])).SerializeToString())
    (tmp_path / "m.onnx").write_bytes(bsrn_s_export.files["onnx"].read_bytes())
    frame = np.ascontiguousarray(lr_images[2][:40, :48])
    want = Upscaler(tmp_path / "m.onnx", tile=None).upscale(frame)
    up = Upscaler(u8, tile=None)
    assert up._frames is not None
    np.testing.assert_array_equal(up.upscale_into(frame, np.empty((160, 192, 3), np.uint8)), want)
    np.testing.assert_array_equal(next(iter(up.stream([frame]))), want)
    (tmp_path / "m.onnx").unlink()
    with pytest.raises(NonFiniteOutputError, match="40×48"):
        Upscaler(u8, tile=None).upscale_into(frame, np.empty((160, 192, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError):
        Upscaler(u8, tile=21).upscale(frame)  # the tiled host path reads the flag too
    on_streams = Upscaler(_async_ort(u8), tile=None)  # the flag is read after the frame's work, not before
    with pytest.raises(NonFiniteOutputError, match="40×48"):
        on_streams.upscale_into(frame, np.empty((160, 192, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError):
        list(on_streams.stream([frame, frame]))


def test_out_of_memory_retries_once_with_a_smaller_tile(torch_cpu, lr_images, caplog, monkeypatch):
    from bsrn_edge.runtime.device_tiling import DeviceTiler

    up = Upscaler(torch_cpu, tile=63)
    sides: list[int] = []

    class FlakyTiler(DeviceTiler):
        def run(self, a, plane, out, plan, crop, batch, out_plane=None, progress=None):  # type: ignore[no-untyped-def]
            sides.append(plan.tile)
            if len(sides) == 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            super().run(a, plane, out, plan, crop, batch, out_plane, progress=progress)

    up._tiler = FlakyTiler(torch_cpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)  # nothing to free on the CPU
    img = lr_images[0][:80, :80]
    with caplog.at_level(logging.WARNING):
        out = up.upscale(img)
    assert sides == [63, 27] and "retrying once with 27-pixel tiles" in caplog.text
    assert out.shape == (320, 320, 3)
    assert quantize(np.zeros(1)).dtype == np.uint8


def test_gpu_tile_auto_sizes_from_free_device_memory(torch_cpu):
    from bsrn_edge.runtime.tile_policy import TilePolicy

    free = [0]
    policy = TilePolicy(torch_cpu.meta, torch_cpu.tile_limits, free_memory=lambda: free[0])
    free[0] = 64 << 30  # a large GPU: 960×540 runs whole
    assert policy.tile_for(540, 960) is None
    free[0] = 512 << 20  # little free memory: tiles, snapped to 6k + 3, within the budget
    side = policy.tile_for(540, 960)
    assert side is not None and side % 6 == 3 and side <= torch_cpu.meta.tile
    assert policy.act_bytes(side * side) <= (512 << 20) * 0.5


def test_uint8_onnx_runs_through_iobinding_like_the_float_model(bsrn_s_export, tmp_path, lr_images):
    """ONNX Runtime CPU with the uint8-I/O model: the device path (IOBinding on buffers) and the float
    model + host conversion agree within 1 grey level on at most 0.1 % of pixels."""
    import onnx

    from bsrn_edge.export.pixel_io import pixel_io_from_onnx

    u8 = tmp_path / "bsrn-s-x4.u8.onnx"
    u8.write_bytes(pixel_io_from_onnx(onnx.load(str(bsrn_s_export.files["onnx"]))).SerializeToString())
    up = Upscaler(_async_ort(u8), tile=None)
    assert up.meta.pixels == "uint8" and up._frames is not None and up.backend_name.endswith("-u8")
    frames = _clip(lr_images, 60, 80, 5)  # more frames than the 3 slots: each slot's buffers are reused
    float_up = Upscaler(bsrn_s_export.files["onnx"], tile=None)
    wants = [float_up.upscale(frame) for frame in frames]
    for want, got in zip(wants, up.stream(frames)):
        worst, share = _grey_levels(got, want)
        assert worst <= 1 and share <= 0.001
    worst, share = _grey_levels(up.upscale_into(frames[3], np.empty((240, 320, 3), np.uint8)), wants[3])
    assert worst <= 1 and share <= 0.001
    big = lr_images[0]  # tiled on the host through the uint8 model
    worst, _ = _grey_levels(Upscaler(u8, tile=63).upscale(big), Upscaler(bsrn_s_export.files["onnx"], tile=63).upscale(big))
    assert worst <= 2


def test_to_deploy_builds_new_layers_where_the_model_is():
    """gpu_bench crashed on CUDA: to_deploy made its new convs on the CPU. float64 stands in for 'elsewhere'."""
    from bsrn_edge import load_model
    from bsrn_edge.models.deploy import to_deploy

    model = load_model("bsrn-s-x4").model.to(torch.float64)
    deployed = to_deploy(model)
    assert {p.dtype for p in deployed.parameters()} == {torch.float64}
    x = torch.from_numpy(to_nchw(np.ascontiguousarray(np.zeros((20, 20, 3), np.uint8)))).double()
    with torch.inference_mode():
        assert deployed(x).dtype == torch.float64


def test_gpu_bench_runs_on_the_cpu(capsys):
    """The prepared GPU benchmark's --device cpu --quick mode: one table with every column filled for the
    eager row, network-only rows for the NTIRE baselines beside BSRN-S, and the targets and the Table 7
    ratios computed from the same run's figures."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import gpu_bench

    assert gpu_bench.main(["--device", "cpu", "--quick", "--models", "bsrn-s-x4,imdn,rfdn,rlfn"]) == 0
    out = capsys.readouterr().out
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| model")}
    eager = rows[("bsrn-s-x4", "PyTorch fp32 eager")]
    assert all(c not in ("", "–") for c in eager[2:7]), eager  # network, upscale_into, stream, big image
    assert rows[("bsrn-s-x4", "PyTorch fp32 channels-last")][3] != "–"
    for model in ("imdn", "rfdn", "rlfn"):
        row = rows[(model, "PyTorch fp32 eager")]
        assert row[2] != "–" and row[3] != "–" and row[4] == "–", row  # network-only
    assert "target ≥ 0.8×" in out and "target ≤ 1.5 s" in out
    assert all(f"bsrn-s-x4 / {m} = " in out for m in ("imdn", "rfdn", "rlfn"))
    assert gpu_bench.main(["--device", "cpu", "--quick", "--models", "imdn"]) == 2  # the ratios are about BSRN-S


def test_device_buffers_from_any_library(bsrn_s_u8_export, lr_images):
    """run_device takes what a caller's library hands over: torch tensors, DLPack producers and
    __cuda_array_interface__ objects resolve to the same address."""
    from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from bsrn_edge.runtime.devices.base import device_pointer

    be = OnnxRuntimeBackend(bsrn_s_u8_export.files["u8_onnx"])
    frame = np.ascontiguousarray(lr_images[1][:30, :40])[None]
    out = torch.empty((1, 120, 160, 3), dtype=torch.uint8)

    class DLPackOnly:  # what JAX or CuPy would hand over: the protocol, nothing else
        def __init__(self, t):
            self._t = t
            self.shape = tuple(t.shape)

        def __dlpack__(self, **kw):  # type: ignore[no-untyped-def]
            return self._t.__dlpack__(**kw)

        def __dlpack_device__(self):  # type: ignore[no-untyped-def]
            return self._t.__dlpack_device__()

    class CudaArrayLike:
        def __init__(self, t):
            self.shape = tuple(t.shape)
            self.__cuda_array_interface__ = {"data": (t.data_ptr(), False), "shape": self.shape, "typestr": "|u1",
                                             "version": 3}

    x = torch.from_numpy(frame.copy())
    assert device_pointer(DLPackOnly(x)) == device_pointer(x) == device_pointer(CudaArrayLike(x))
    finite = be.run_device(DLPackOnly(x), CudaArrayLike(out), None)
    assert bool(finite)
    np.testing.assert_array_equal(out.numpy(), be.infer(frame))
    with pytest.raises(InputError, match="cannot take the address"):
        device_pointer(object())


def test_device_tiler_with_a_uint8_model(bsrn_s_u8_export, lr_images):
    """ONNX Runtime / TensorRT tiles go through run_device as uint8 and are blended on the device; on the CPU
    (torch CPU tensors, ORT IOBinding) the result matches the host stitcher over the same uint8 model."""
    from bsrn_edge.pixels import row_writer, window_reader
    from bsrn_edge.runtime.bands import banded_apply
    from bsrn_edge.runtime.device_tiling import DeviceTiler
    from bsrn_edge.runtime.tiling import plan_tiles

    be = _async_ort(bsrn_s_u8_export.files["u8_onnx"])
    img = lr_images[0][:100, :90]
    plan = plan_tiles(100, 90, scale=4, tile=45, overlap=12, min_size=15)
    on_device = np.empty((400, 360, 3), np.uint8)
    DeviceTiler(be).run(img, "rgb", on_device, plan, (400, 360), batch=2)
    up = Upscaler(be, tile=45, overlap=12, batch=2)  # the host path of the same model
    on_host = np.empty_like(on_device)
    banded_apply(up._float_infer, window_reader(img, "rgb"), plan, row_writer(on_host, "rgb", (400, 360)), batch=2)
    worst, share = _grey_levels(on_device, on_host)
    assert worst <= 1 and share <= 0.001


@pytest.mark.parametrize("device_path", [False, True])
def test_bgr_frames_for_opencv_users(torch_cpu, bsrn_s_export, lr_images, device_path):
    """channel_order="bgr": BGR in, BGR out, equal to the RGB result reversed, on every entry point and on
    both the host path (ONNX Runtime) and the device path (PyTorch tensors); RGBA as BGRA."""
    model = torch_cpu if device_path else bsrn_s_export.files["onnx"]
    up_rgb = Upscaler(model, tile=None)
    up_bgr = Upscaler(model, tile=None, channel_order="bgr")
    assert (up_bgr._frames is not None) == device_path
    frames = _clip(lr_images, 30, 40, 3)
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    np.testing.assert_array_equal(up_bgr.upscale(bgr[0]), up_rgb.upscale(frames[0])[..., ::-1])
    out = np.empty((120, 160, 3), np.uint8)
    # the frame entry points (a uint8 device path where there is one) against their own RGB results
    want = [up_rgb.upscale_into(f, np.empty((120, 160, 3), np.uint8)) for f in frames]
    np.testing.assert_array_equal(up_bgr.upscale_into(bgr[1], out), want[1][..., ::-1])
    streamed = [o.copy() for o in up_bgr.stream(iter(bgr))]
    for got, w in zip(streamed, want):
        np.testing.assert_array_equal(got, w[..., ::-1])
    assert all(o.flags.c_contiguous for o in up_bgr.stream(iter(bgr[:1])))  # OpenCV can draw on it
    rgba = np.dstack([frames[0], np.full(frames[0].shape[:2], 200, np.uint8)])
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
    np.testing.assert_array_equal(up_bgr.upscale(bgra), up_rgb.upscale(rgba)[..., [2, 1, 0, 3]])
    with pytest.raises(InputError, match="channel_order"):
        Upscaler(torch_cpu, channel_order="BGRA")


def test_a_gpu_index_picks_the_uint8_sibling_like_cuda(bsrn_s_u8_export):
    from bsrn_edge.runtime.open import _pick_onnx

    onnx = bsrn_s_u8_export.files["onnx"]
    assert _pick_onnx(onnx, "auto", "cuda").name == _pick_onnx(onnx, "auto", "cuda:0").name == "bsrn-s-x4.u8.onnx"
    assert _pick_onnx(onnx, "auto", "cpu").name == "bsrn-s-x4.onnx"
