"""The TensorRT runtime backend against fake ``tensorrt`` / ``pycuda`` modules that record every call
(tests/fake_trt.py): buffers once per profile, set_input_shape per shape, a context per thread with
push and pop, the output shape checked, the primary context, and the device path through Upscaler."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from fake_trt import engine_bytes, fake_gpu, nearest_upsample  # noqa: F401 - fake_gpu is a fixture

from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

SCALE = 4


def _write_engine(tmp_path, *, pixels: str = "float", meta_scale: int = SCALE, min_tile: int = 16,
                  max_tile: int = 64, max_batch: int = 2, name: str = "m.fp16.engine"):
    """A fake engine (nearest-neighbour ×4) and the metadata sidecar bsrn-export writes beside a real one."""
    if pixels == "uint8":
        io = [("input", "UINT8", (-1, -1, -1, 3))], [("output", "UINT8", (-1, -1, -1, 3)),
                                                     ("nonfinite", "FLOAT", (1, 1, 1, 1))]
        profile = {"input": ((1, 16, 16, 3), (1, 32, 32, 3), (max_batch, max_tile, max_tile, 3))}
    else:
        io = [("input", "FLOAT", (-1, 3, -1, -1))], [("output", "FLOAT", (-1, 3, -1, -1))]
        profile = {"input": ((1, 3, 16, 16), (1, 3, 32, 32), (max_batch, 3, max_tile, max_tile))}
    path = tmp_path / name
    path.write_bytes(engine_bytes(*io, profile, SCALE))
    props = ModelMeta("bsrn-s-x4", "bsrn", meta_scale, 48, 15, 195, 48, "0" * 64, "test", precision="fp16",
                      pixels=pixels).to_props()
    props.update({"bsrn_edge.profile_min_tile": str(min_tile), "bsrn_edge.profile_max_tile": str(max_tile),
                  "bsrn_edge.profile_max_batch": str(max_batch)})
    (tmp_path / (name + ".meta.json")).write_text(json.dumps(props))
    return path


def _nchw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)


def test_host_path_allocates_once_for_the_profile_and_sets_each_shape(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path))
    assert "import pycuda.autoprimaryctx" in fake_gpu.names()  # the shared primary context, not autoinit
    crops = [lr_images[0][:40, :56], lr_images[1][:17, :64], lr_images[0][:64, :64], lr_images[2][:40, :56]]
    for img in crops:
        x = _nchw(img)
        np.testing.assert_array_equal(be.infer(x), nearest_upsample(x, SCALE, nhwc=False))
    allocs = fake_gpu.calls_to("driver.mem_alloc")
    assert len(allocs) == 2  # one input and one output buffer for the profile's largest shape, never again
    assert allocs[0].args[0] == 2 * 3 * 64 * 64 * 4 and allocs[1].args[0] == 2 * 3 * 256 * 256 * 4
    shapes = [c.args[1] for c in fake_gpu.calls_to("IExecutionContext.set_input_shape")]
    assert shapes == [(1, 3, 40, 56), (1, 3, 17, 64), (1, 3, 64, 64), (1, 3, 40, 56)]  # once per change of shape
    assert len(fake_gpu.calls_to("ICudaEngine.create_execution_context")) == 1
    assert fake_gpu.context_depth() == 1  # autoprimaryctx's own push; every call popped what it pushed
    assert not fake_gpu.errors


def test_each_thread_gets_its_own_context_and_pops_it(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path))
    x = _nchw(lr_images[0][:32, :32])
    want = nearest_upsample(x, SCALE, nhwc=False)
    depths, results = [], []
    together = threading.Barrier(3)  # all alive at once, so their thread idents differ

    def work() -> None:
        together.wait()
        results.append(be.infer(x))
        together.wait()
        depths.append(fake_gpu.context_depth())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(np.array_equal(r, want) for r in results)
    assert depths == [0, 0, 0]  # pushed and popped in each thread
    assert len(fake_gpu.calls_to("ICudaEngine.create_execution_context")) == 3
    pushes = {c.thread for c in fake_gpu.calls_to("Context.push")}
    assert len(pushes) == 4  # the three workers and the constructing thread
    assert not fake_gpu.errors


def test_output_shape_that_disagrees_with_the_metadata_is_an_error(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path, meta_scale=2))  # the sidecar says ×2, the engine makes ×4
    with pytest.raises(InputError, match="does not match its metadata"):
        be.infer(_nchw(lr_images[0][:32, :32]))


def test_a_shape_outside_the_profile_names_the_profile(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path, min_tile=15))  # the sidecar admits 15, the engine 16
    with pytest.raises(InputError, match="optimization profile"):
        be.infer(_nchw(lr_images[0][:15, :32]))
    with pytest.raises(InputError, match="accepted sides"):
        be.infer(_nchw(lr_images[0][:80, :80]))  # over the profile's maximum: caught before TensorRT


def test_uint8_engine_keeps_frames_on_the_device(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime import Upscaler
    from bsrn_edge.runtime.devices.pycuda import PycudaDevice

    up = Upscaler(_write_engine(tmp_path, pixels="uint8", name="m.fp16.u8.engine"), tile=None)
    assert isinstance(up._device, PycudaDevice) and up._frames is not None
    assert up.backend_name == "tensorrt-fp16-u8"
    frames = [np.ascontiguousarray(lr_images[i][:32, :48]) for i in (0, 1, 2, 0)]
    outs = [o.copy() for o in up.stream(frames)]
    for frame, out in zip(frames, outs):
        np.testing.assert_array_equal(out, nearest_upsample(frame[None], SCALE, nhwc=True)[0])
    # the engine ran on the slots' own streams, bound to their device buffers (no host staging in between)
    runs = fake_gpu.calls_to("IExecutionContext.execute_async_v3")
    assert len(runs) == 4 and len({c.args[0] for c in runs}) == 3  # three slots, three streams
    sizes = sorted(c.args[0] for c in fake_gpu.calls_to("driver.mem_alloc"))
    assert sizes == [4] * 3 + [32 * 48 * 3] * 3 + [128 * 192 * 3] * 3  # per slot: flag, input, output; once
    one = up.upscale_into(frames[1], np.empty((128, 192, 3), np.uint8))
    np.testing.assert_array_equal(one, outs[1])
    assert not fake_gpu.errors


def test_a_non_finite_flag_from_the_engine_is_an_error_not_an_image(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.errors import NonFiniteOutputError
    from bsrn_edge.runtime import Upscaler

    up = Upscaler(_write_engine(tmp_path, pixels="uint8", name="m.fp16.u8.engine"), tile=None)
    frame = np.ascontiguousarray(lr_images[0][:32, :48])
    assert up.upscale_into(frame, np.empty((128, 192, 3), np.uint8)) is not None  # the flag reads 0
    fake_gpu.nonfinite = True
    with pytest.raises(NonFiniteOutputError, match="32×48"):
        up.upscale_into(frame, np.empty((128, 192, 3), np.uint8))
    with pytest.raises(NonFiniteOutputError):
        list(up.stream([frame, frame]))
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        up.backend.infer(frame[None])  # the host path reads the flag too


def test_float_engine_runs_frames_on_the_host_path(fake_gpu, tmp_path, lr_images):
    from bsrn_edge.runtime import Upscaler

    up = Upscaler(_write_engine(tmp_path), tile=None)
    assert up._frames is None  # no conversion kernels without PyTorch: host path
    frame = np.ascontiguousarray(lr_images[0][:32, :32])
    out = up.upscale_into(frame, np.empty((128, 128, 3), np.uint8))
    np.testing.assert_array_equal(out, nearest_upsample(frame[None], SCALE, nhwc=True)[0])


def test_a_cpu_request_for_an_engine_is_refused(tmp_path):
    from bsrn_edge.runtime import open_backend

    with pytest.raises(InputError, match="CUDA GPU only"):
        open_backend(tmp_path / "m.fp16.engine", device="cpu")
