"""What a read-through of the whole change found, each pinned by a test: the Ray manifest records the inputs it
settled without Ray, the run lock waits out a liveness probe, an ``-o`` that holds ``-i`` hides none of the
inputs, a video segment's own temporaries are cleaned up, a list of paths names what it cannot take, an input
that cannot be read never breaks the resume check, ``-o`` equal to ``-i`` without a suffix is refused up front,
and a fixed input shape is refused whatever engine runs the model."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_ort, needs_torch
from conftest import run_upscale as upscale
from conftest import save_image as save

from bsrn_edge._lazy import available
from bsrn_edge.errors import InputError


@pytest.fixture
def photos(tmp_path, lr_images) -> Path:
    src = tmp_path / "in"
    save(lr_images[0][:24, :28], src / "a.png")
    save(lr_images[1][:20, :26], src / "sub" / "b.png")
    return src


def test_an_output_folder_that_holds_the_inputs_hides_none_of_them(photos):
    from bsrn_edge.apps.inputs import discover_inputs

    everything = discover_inputs(photos, exclude=photos.parent)  # -o is the folder above -i
    assert [f.relative_to(photos).as_posix() for f in everything.files] == ["a.png", "sub/b.png"]
    inner = discover_inputs(photos, exclude=photos / "sub")  # -o inside -i: that folder is left out
    assert [f.relative_to(photos).as_posix() for f in inner.files] == ["a.png"]
    pattern = discover_inputs(str(photos / "**" / "*.png"), exclude=photos.parent)
    assert len(pattern.files) == 2


def test_a_list_of_paths_names_the_entries_that_are_no_images_or_videos(photos, tmp_path):
    from bsrn_edge.apps.inputs import discover_inputs

    (photos / "notes.txt").write_text("not a picture")
    listing = tmp_path / "list.txt"
    listing.write_text("in/a.png\nin/notes.txt\n")
    with pytest.raises(InputError, match=r"1 listed file\(s\) are neither images nor videos \(.*\): \S*notes\.txt"):
        discover_inputs(listing)


def test_a_segments_own_temporaries_are_removed_with_it(tmp_path):
    from bsrn_edge.imageio import partial_path, remove_partials

    dst = tmp_path / "clip.mkv"
    segment = partial_path(dst, "seg00003")  # a segment of the output, itself written through a temporary
    nested = partial_path(segment, "abc123")
    other = partial_path(tmp_path / "other.mkv", "seg00001")
    for p in (segment, nested, other):
        p.write_bytes(b"video")
    removed = remove_partials([dst])
    assert sorted(removed) == sorted([segment, nested]) and other.exists()


def test_the_run_lock_waits_for_a_liveness_probe_instead_of_running_without_a_lock(tmp_path):
    from bsrn_edge.imageio import RunLock
    from bsrn_edge.imageio.atomic import _LOCK, _alive

    token = "rv1234"
    path = tmp_path / _LOCK.format(token)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # another run's probe, holding the lock file for a moment

    def release() -> None:
        time.sleep(0.2)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    threading.Thread(target=release).start()
    with RunLock(tmp_path, token) as lock:
        assert lock._fd is not None and _alive(token, tmp_path)
    assert not _alive(token, tmp_path) and not path.exists()


def test_an_input_that_cannot_be_read_never_breaks_the_resume_check(tmp_path):
    from bsrn_edge.apps.jobs import Job

    (tmp_path / "a.png").write_bytes(b"an older output of another input")
    folder_as_input = tmp_path / "photo"  # reading it raises IsADirectoryError, an OSError
    folder_as_input.mkdir()
    job = Job(folder_as_input, tmp_path / "a.jpg", "JPEG", alpha_dst=tmp_path / "a.png")
    assert job.done() is False  # the run reports the input itself


@needs_ort
@needs_torch
def test_o_equal_to_i_without_a_suffix_is_refused_before_the_model_opens(photos, capsys):
    assert upscale("-i", photos, "-o", photos, "--model", "no-such-model.onnx") == 2
    err = capsys.readouterr().err
    assert "every output would be written over its own input" in err and "--suffix" in err


@needs_ort
@needs_torch
@pytest.mark.skipif(not available("ray.data"), reason="ray[data] not installed (extra 'ray')")
def test_ray_records_the_inputs_it_settled_without_ray(photos, bsrn_s_export, tmp_path, capsys):
    """Every output already there: nothing goes to Ray, and the manifest still has one line per input."""
    out = tmp_path / "out"
    save(__import__("numpy").zeros((8, 8, 3), "uint8"), out / "a.png")
    save(__import__("numpy").zeros((8, 8, 3), "uint8"), out / "sub" / "b.png")
    (out / "bsrn-manifest.jsonl").write_text(json.dumps({"input": str(photos / "a.png"), "output": str(out / "a.png"),
                                                         "status": "failed", "reason": "an old run"}) + "\n")
    assert upscale("-i", photos, "-o", out, "--model", bsrn_s_export.files["onnx"], "--ray") == 0
    lines = [json.loads(x) for x in (out / "bsrn-manifest.jsonl").read_text().splitlines()]
    assert sorted((Path(e["input"]).name, e["status"]) for e in lines) == [("a.png", "skipped"), ("b.png", "skipped")]
    assert "0 written, 0 failed, 2 skipped" in capsys.readouterr().err


@needs_ort
@needs_torch
@pytest.mark.skipif(not available("openvino"), reason="openvino not installed (extra 'openvino')")
def test_a_fixed_input_shape_is_refused_on_openvino_too(photos, bsrn_s_export, tmp_path, capsys):
    import onnx

    m = onnx.load(str(bsrn_s_export.files["onnx"]))
    for dim, size in zip(m.graph.input[0].type.tensor_type.shape.dim[2:], (64, 64)):
        dim.dim_value = size
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    assert upscale("-i", photos, "-o", tmp_path / "out", "--model", fixed, "--backend", "openvino") == 2
    assert "input size is fixed at 64×64" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_engine_asked_for_in_another_precision_is_refused_before_tensorrt_loads(tmp_path):
    """An engine's precision is fixed when it is built: --fp32 on an FP16 engine is an error, not FP16 in silence."""
    from bsrn_edge.runtime.open import open_backend

    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"serialized engine")
    (tmp_path / "m.fp16.engine.meta.json").write_text(json.dumps({"bsrn_edge.precision": "fp16"}))
    with pytest.raises(InputError, match=r"a fp16 engine, but fp32 was asked for; build a fp32 engine"):
        open_backend(engine, "tensorrt", "cuda", "fp32")


def test_no_cores_named_is_not_half_the_cores(tmp_path, monkeypatch):
    from bsrn_edge import hostinfo

    monkeypatch.setattr(hostinfo, "_CPUINFO", str(tmp_path / "absent"))
    monkeypatch.setattr(hostinfo, "usable_cores", lambda: 6)
    assert hostinfo.physical_cores() == 6


def test_a_cache_record_json_cannot_hold_leaves_no_temporary(tmp_path, monkeypatch):
    from bsrn_edge.cache import read_record, write_record

    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path))
    write_record("kind", "key", {"bad": object()})  # logged, never raised
    assert read_record("kind", "key") is None and not list(tmp_path.rglob("*.part"))
    monkeypatch.delenv("BSRN_EDGE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty: as if unset, never the working folder
    from bsrn_edge.cache import cache_root

    assert cache_root().is_absolute()


@needs_torch
def test_the_device_tiler_reports_tile_progress(lr_images):
    from bsrn_edge.meta import ModelMeta
    from bsrn_edge.runtime.backends.torch import TorchBackend
    from bsrn_edge.runtime.device_tiling import DeviceTiler
    from bsrn_edge.runtime.tile_policy import TilePolicy

    net = TorchBackend("bsrn-s-x4", device="cpu")
    assert isinstance(net.meta, ModelMeta)
    img = lr_images[0][:60, :60]
    out = __import__("numpy").empty((240, 240, 3), "uint8")
    seen: list[tuple[int, int]] = []
    policy = TilePolicy(net.meta, net.tile_limits, tile=27, overlap=6)
    DeviceTiler(net).run_planned(img, "rgb", out, "rgb", (240, 240), 27, policy, lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == len(policy.plan(60, 60, 27)) > 1


@needs_ort
@needs_torch
def test_a_non_finite_tile_on_the_device_falls_back_through_the_host_path(bsrn_s_export, lr_images, caplog):
    """The device tiler can only report a non-finite tile; an FP16 model with its FP32 sibling then runs that
    plane on the host path, which falls back, instead of failing the image."""
    import logging

    import numpy as np

    from bsrn_edge.errors import NonFiniteOutputError
    from bsrn_edge.runtime import Upscaler

    up = Upscaler(bsrn_s_export.files["fp16_onnx"], "onnxruntime", tile=27)

    class NanTiler:
        def run_planned(self, *args, **kw):  # type: ignore[no-untyped-def]
            raise NonFiniteOutputError("a tile was NaN")

    up._tiler = NanTiler()
    img = np.ascontiguousarray(lr_images[2][:40, :44])
    with caplog.at_level(logging.WARNING):
        got = up.upscale(img)
    assert "this plane again on the host path" in caplog.text
    np.testing.assert_array_equal(got, Upscaler(bsrn_s_export.files["fp16_onnx"], "onnxruntime", tile=27).upscale(img))


@needs_ort
@needs_torch
def test_stream_refuses_a_later_frame_too_large_to_run_whole(bsrn_s_u8_export, lr_images):
    import numpy as np

    from bsrn_edge.runtime import Upscaler

    up = Upscaler(bsrn_s_u8_export.files["u8_onnx"], "onnxruntime", device="cpu", memory_mb=1)
    small = np.ascontiguousarray(lr_images[0][:16, :16])  # 256 px: whole even within 1 MB of budget
    large = np.ascontiguousarray(lr_images[0][:64, :64])
    assert up._frames is not None and up.policy.whole(16, 16) and not up.policy.whole(64, 64)
    with pytest.raises(InputError, match=r"a 64×64 frame is too large to run whole here"):
        list(up.stream([small, large]))  # (the pipeline reads ahead: the error may come with an earlier frame)
    assert len(list(up.stream([small, small]))) == 2


def test_the_export_table_goes_to_the_standard_output_of_the_moment(monkeypatch):
    """print_table once bound sys.stdout at import: a stream captured then (and closed since) got the table."""
    import io
    import sys

    from bsrn_edge.apps.export_cli import print_table

    now = io.StringIO()
    monkeypatch.setattr(sys, "stdout", now)
    print_table([])
    assert now.getvalue().startswith("| artifact | precision |")
