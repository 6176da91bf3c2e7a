"""The TensorRT runtime backend against fake ``tensorrt`` / ``pycuda`` modules that record every call
(tests/fake_trt.py): buffers once per profile, set_input_shape per shape, one context and one compute stream
that threads take turns at (push and pop around every call), callers' streams joined through events, the
output shape checked, the primary context, the device path through Upscaler, and close()."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from fake_trt import ContractError, engine_bytes, fake_gpu, nearest_upsample  # noqa: F401 - fake_gpu is a fixture

from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

SCALE = 4


@pytest.fixture
def gpu(fake_gpu):
    """The fake GPU with its first stream (the backend's compute stream, made in its constructor) eager and every
    later one (the callers') lazy: a missing event join then runs the network on the old input or downloads
    the old output (tests/fake_streams.py)."""
    fake_gpu.eager_streams = 1
    return fake_gpu


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


def test_threads_take_turns_at_one_context_and_pop_it(gpu, tmp_path, lr_images):
    """NvInferRuntime.h: contexts in concurrent use need an optimization profile each, and the engine has one.
    So every thread uses the backend's one context, enqueued on its one stream, under its lock."""
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path))
    crops = [_nchw(lr_images[k][:32, :40]) for k in range(3)]
    depths, results = [], {}
    together = threading.Barrier(3)  # all alive at once, so their thread idents differ

    def work(k: int) -> None:
        together.wait()
        results[k] = [be.infer(crops[(k + j) % 3]) for j in range(3)]
        together.wait()
        depths.append(gpu.context_depth())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        for j in range(3):
            np.testing.assert_array_equal(results[k][j], nearest_upsample(crops[(k + j) % 3], SCALE, nhwc=False))
    assert depths == [0, 0, 0]  # pushed and popped in each thread
    assert len(gpu.calls_to("ICudaEngine.create_execution_context")) == 1
    assert {c.args[0] for c in gpu.calls_to("IExecutionContext.execute_async_v3")} == {be._stream.handle}
    assert len({c.thread for c in gpu.calls_to("Context.push")}) == 4  # the three workers and the constructing thread
    assert not gpu.errors


def test_the_fake_refuses_what_tensorrt_forbids(fake_gpu, tmp_path):
    """The rules the backend's design follows, enforced by the fake: one context enqueued on a second stream
    before its run completed, or two contexts on profile 0 running at once, is an error (undefined on a GPU)."""
    import pycuda.autoprimaryctx  # noqa: F401 - pushes the primary context on this thread
    import pycuda.driver as cuda
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        _write_engine(tmp_path, pixels="uint8").read_bytes())
    bufs = [cuda.mem_alloc(n) for n in (16 * 16 * 3, 64 * 64 * 3, 4)]

    def ready():  # type: ignore[no-untyped-def]
        ctx = engine.create_execution_context()
        assert ctx.set_input_shape("input", (1, 16, 16, 3)) and ctx.active_optimization_profile == 0
        for name, buf in zip(("input", "output", "nonfinite"), bufs):
            ctx.set_tensor_address(name, int(buf))
        return ctx

    one, a, b = ready(), cuda.Stream(), cuda.Stream()
    assert one.execute_async_v3(a.handle) and one.execute_async_v3(a.handle)  # the same stream orders the runs
    with pytest.raises(ContractError, match="previous run .* has not completed"):
        one.execute_async_v3(b.handle)
    two = ready()
    with pytest.raises(ContractError, match="optimization profile 0 in concurrent use"):
        two.execute_async_v3(b.handle)
    a.synchronize()  # both runs of `one` complete: now `two` may run, and then `one` on any stream
    assert two.execute_async_v3(b.handle)
    b.synchronize()
    assert one.execute_async_v3(b.handle)


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


def test_uint8_engine_keeps_frames_on_the_device(gpu, tmp_path, lr_images):
    from bsrn_edge.runtime import Upscaler
    from bsrn_edge.runtime.devices.pycuda import PycudaDevice

    up = Upscaler(_write_engine(tmp_path, pixels="uint8", name="m.fp16.u8.engine"), tile=None)
    assert isinstance(up._device, PycudaDevice) and up._frames is not None
    assert up.backend_name == "tensorrt-fp16-u8" and up.backend._stream.eager
    frames = [np.ascontiguousarray(lr_images[i][:32, :48]) for i in (0, 1, 2, 3, 4, 1)]
    outs = [o.copy() for o in up.stream(frames)]
    for frame, out in zip(frames, outs):
        np.testing.assert_array_equal(out, nearest_upsample(frame[None], SCALE, nhwc=True)[0])
    # every run on the backend's one compute stream, bound to the slots' device buffers (no host staging),
    # joined with the slots' streams through events both ways
    runs = gpu.calls_to("IExecutionContext.execute_async_v3")
    assert len(runs) == 6 and {c.args[0] for c in runs} == {up.backend._stream.handle}
    waits = gpu.calls_to("Stream.wait_for_event")
    assert sum(c.args[0] == up.backend._stream.handle for c in waits) == 6  # the network waited for each upload
    assert len({c.args[0] for c in waits} - {up.backend._stream.handle}) == 3  # each slot waited for its network
    sizes = sorted(c.args[0] for c in gpu.calls_to("driver.mem_alloc"))
    assert sizes == [4] * 3 + [32 * 48 * 3] * 3 + [128 * 192 * 3] * 3  # per slot: flag, input, output; once
    one = up.upscale_into(frames[1], np.empty((128, 192, 3), np.uint8))
    np.testing.assert_array_equal(one, outs[1])
    assert not gpu.errors


def test_close_waits_frees_and_refuses_later_calls(gpu, tmp_path, lr_images):
    from bsrn_edge.runtime import Upscaler
    from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_write_engine(tmp_path, pixels="uint8", name="m.fp16.u8.engine"))
    frame = np.ascontiguousarray(lr_images[2][:32, :48])[None]
    be.infer(frame)  # the host path's buffers and a flag for the compute stream
    dev = be.device
    caller = dev.stream()
    x, out = dev.empty(frame.shape, np.uint8), dev.empty((1, 128, 192, 3), np.uint8)
    host = dev.pinned(out.shape, np.uint8)
    dev.upload(x, frame, caller)
    be.run_device(x, out, caller)  # in flight: the caller's stream has not been waited for
    mine = {a.addr for a in gpu.allocations.values() if not a.freed} - {int(x.alloc), int(out.alloc)}
    assert len(mine) == 4  # host-path input and output, two flags
    be.close()
    assert {c.args[0] for c in gpu.calls_to("DeviceAllocation.free")} == mine and be._context is None
    dev.download(host, out, caller)
    dev.wait(dev.record(caller))
    np.testing.assert_array_equal(host, nearest_upsample(frame, SCALE, nhwc=True))  # the run completed before the frees
    with pytest.raises(InputError, match="closed"):
        be.infer(frame)
    with pytest.raises(InputError, match="closed"):
        be.run_device(x, out, caller)
    be.close()  # twice is harmless
    with Upscaler(_write_engine(tmp_path, pixels="uint8", name="m.fp16.u8.engine"), tile=None) as up:
        up.upscale_into(frame[0], np.empty((128, 192, 3), np.uint8))
    with pytest.raises(InputError, match="closed"):
        up.upscale_into(frame[0], np.empty((128, 192, 3), np.uint8))
    assert not gpu.errors


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
