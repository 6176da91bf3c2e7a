"""The GPU path on a real CUDA device (skipped without one): the same checks the CPU tests make through
PyTorch CPU tensors, here with the FP16 network, CUDA streams, pinned slots and the device tiler."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.gpu]
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from bsrn_edge.imageio import read_rgb  # noqa: E402
from bsrn_edge.metrics import psnr_y  # noqa: E402
from bsrn_edge.runtime import Upscaler  # noqa: E402
from bsrn_edge.runtime.backends.torch import TorchBackend  # noqa: E402


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """A real image repeated to at least h×w and cut to it."""
    reps = (-(-h // img.shape[0]), -(-w // img.shape[1]), 1)
    return np.ascontiguousarray(np.tile(img, reps)[:h, :w])


def _levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d > 1).mean())


@pytest.fixture(scope="module")
def cpu_up() -> Upscaler:
    return Upscaler("bsrn-s-x4", device="cpu", tile=None)


@pytest.fixture(scope="module")
def gpu_up() -> Upscaler:
    return Upscaler("bsrn-s-x4", device="cuda", precision="fp16", tile=None)


def test_fp16_gpu_keeps_the_set5_psnr_of_the_cpu(cpu_up, gpu_up, set5_dir):
    """FP16 on the GPU through the uint8 device path: Set5 ×4 PSNR-Y within 0.02 dB of FP32 on the CPU."""
    assert gpu_up._frames is not None and gpu_up.backend.name.startswith("torch")
    gaps = []
    for lr_path in sorted(set5_dir.glob("*_LR.png")):
        lr, hr = read_rgb(lr_path), read_rgb(lr_path.with_name(lr_path.name.replace("_LR", "_HR")))
        a, b = cpu_up.upscale(lr), gpu_up.upscale(lr)
        worst, share = _levels(a, b)
        assert worst <= 8 and share <= 0.01, (lr_path.name, worst, share)
        gaps.append(psnr_y(b, hr, 4) - psnr_y(a, hr, 4))
    assert max(abs(g) for g in gaps) <= 0.02, gaps


def test_gpu_stream_equals_upscale_into(gpu_up, lr_images):
    frames = [_fit(img, 180, 320) for img in lr_images]
    seq = [gpu_up.upscale_into(f, np.empty((720, 1280, 3), np.uint8)).copy() for f in frames]
    got = [o.copy() for o in gpu_up.stream(iter(frames))]
    assert len(got) == len(frames)
    for a, b in zip(got, seq):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(got[0], got[1])


def test_gpu_device_tiler_equals_the_host_stitcher(gpu_up, lr_images):
    """Tiles cut and blended on the GPU give what the numpy stitcher gives from the same network and plan."""
    from bsrn_edge.pixels import row_writer, window_reader
    from bsrn_edge.runtime.bands import banded_apply
    from bsrn_edge.runtime.tiling import plan_tiles

    img = _fit(lr_images[2], 200, 260)
    tiled = Upscaler(gpu_up.backend, tile=63, overlap=12)
    assert tiled._tiler is not None  # the device tiler is the one under test
    on_device = tiled.upscale(img)
    plan = plan_tiles(200, 260, scale=4, tile=63, overlap=12, min_size=15)
    assert len(plan) >= 6
    on_host = np.empty_like(on_device)
    banded_apply(gpu_up.backend.infer, window_reader(img, "rgb"), plan, row_writer(on_host, "rgb", (800, 1040)),
                 batch=tiled.batch)
    worst, share = _levels(on_device, on_host)
    assert worst <= 2 and share <= 0.001, (worst, share)


@pytest.mark.parametrize("mode", ["graph", "compile"])
def test_graph_and_compile_modes_match_eager(mode, lr_images):
    eager = TorchBackend("bsrn-s-x4", device="cuda", precision="fp16")
    other = TorchBackend("bsrn-s-x4", device="cuda", precision="fp16", mode=mode)
    img = _fit(lr_images[0], 96, 120)
    a = Upscaler(eager, tile=None).upscale(img)
    b = Upscaler(other, tile=None).upscale(img)
    worst, share = _levels(a, b)
    assert worst <= 2 and share <= 0.001, (mode, worst, share)
    np.testing.assert_array_equal(Upscaler(other, tile=None).upscale(img), b)  # replay is deterministic


def test_gpu_bgr_frames(gpu_up, lr_images):
    """channel_order='bgr' on the GPU device path: the RGB result reversed, for upscale_into and stream."""
    bgr_up = Upscaler(gpu_up.backend, tile=None, channel_order="bgr")
    frames = [_fit(img, 90, 160) for img in lr_images[:3]]
    want = [gpu_up.upscale_into(f, np.empty((360, 640, 3), np.uint8)).copy() for f in frames]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    np.testing.assert_array_equal(bgr_up.upscale_into(bgr[0], np.empty((360, 640, 3), np.uint8)), want[0][..., ::-1])
    for got, w in zip((o.copy() for o in bgr_up.stream(iter(bgr))), want):
        np.testing.assert_array_equal(got, w[..., ::-1])


def test_loaded_model_descriptor_in_half_precision_on_the_gpu(lr_images):
    from bsrn_edge import load_model

    m = load_model("bsrn-s-x4").cuda().half()
    x = torch.from_numpy(np.ascontiguousarray(lr_images[2][:10, :12].transpose(2, 0, 1)))[None].cuda().half() / 255
    out = m(x)
    assert out.shape == (1, 3, 40, 48) and out.dtype == torch.float16 and out.device.type == "cuda"
    ref = load_model("bsrn-s-x4")(x.float().cpu())
    assert float((out.float().cpu() - ref).abs().max()) < 0.02
