"""Issue 22's hostile cases against bsrn-upscale, one or more tests each; every one of them failed on 3b047bd.

The promises (numbered as in the issue): 2 any exception is that input's failure, 3 links in the input
folder, 4 never writing through a link, 5 two runs on one -o, 6 damaged containers, 7 outputs never inputs,
10 impossible model metadata; then the six slips, the new-user items and the folder rule. Ray's own cases
(1, 8, 9 and the folder rule through Ray) are in ``test_distributed.py`` and ``test_video_segments.py``,
which hold the local Ray and the segment clips. Failures that need a rare condition (an allocator giving up,
a full disk) are injected where that condition would surface; everything else runs for real.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_ort, needs_torch
from conftest import run_upscale as upscale
from conftest import save_image as save

from bsrn_edge._lazy import available
from bsrn_edge.imageio import read_rgb

pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture
needs_av = pytest.mark.skipif(not available("av"), reason="PyAV not installed (extra 'video')")


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


@pytest.fixture
def photos(tmp_path, lr_images) -> Path:
    """Three real images a.png, b.png, c.png (crops of Set5 LR) in ``in/``."""
    for k, name in enumerate("abc"):
        save(lr_images[k][:24, :20], tmp_path / "in" / f"{name}.png")
    return tmp_path / "in"


def _pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


# -- 2: any exception is that input's failure ---------------------------------------------------
@pytest.mark.parametrize("error", [MemoryError("std::bad_alloc"), RuntimeError("[ONNXRuntimeError] : 6 : "
                                   "RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node")])
def test_any_exception_fails_that_input_and_the_batch_goes_on(photos, onnx_path, monkeypatch, capsys, error):
    """b.png makes the network raise what ONNX Runtime raises when an allocation fails: a, c still written."""
    from bsrn_edge.runtime import Upscaler

    real = Upscaler.upscale
    b = read_rgb(photos / "b.png")

    def upscale_or_fail(self, image, progress=None):
        if image.shape == b.shape and np.array_equal(image, b):
            raise error
        return real(self, image, progress)

    monkeypatch.setattr(Upscaler, "upscale", upscale_or_fail)
    assert upscale("-i", photos, "-o", photos.parent / "out", "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert f"failed {photos / 'b.png'}: {photos / 'b.png'}: {type(error).__name__}: {str(error)[:20]}" in err
    assert "2 written, 1 failed, 0 skipped (already done)" in err and "Traceback" not in err
    assert _pngs(photos.parent / "out") == ["a.png", "c.png"]


def test_a_ray_worker_turns_any_exception_into_that_rows_failure(photos, onnx_path, monkeypatch, tmp_path):
    """The actor (called without Ray, as Ray Data calls it) returns a failed row and goes on to the next."""
    from bsrn_edge.apps.distributed import UpscaleActor, WorkerOptions, discover_inputs, plan_outputs
    from bsrn_edge.apps.distributed.segments import split_jobs

    jobs = plan_outputs(discover_inputs(photos), tmp_path / "out", None)
    items, _ = split_jobs(jobs, 0)
    batch = {k: np.array([row[k] for row in items], dtype=object) for k in items[0]}
    actor = UpscaleActor(WorkerOptions(str(onnx_path), threads=1))
    real, a = actor.up.upscale, read_rgb(photos / "a.png")

    def upscale_or_fail(image, progress=None):
        if image.shape == a.shape and np.array_equal(image, a):
            raise ValueError("negative dimensions are not allowed")  # what numpy said for a model of scale -1
        return real(image, progress)

    monkeypatch.setattr(actor.up, "upscale", upscale_or_fail)
    rows = actor(batch)
    assert rows["status"] == ["failed", "done", "done"]
    assert rows["reason"][0] == f"{photos / 'a.png'}: ValueError: negative dimensions are not allowed"


# -- 3: links in the input folder ------------------------------------------------------------
def _links(photos: Path) -> None:
    (photos / "loop.png").symlink_to("loop.png")
    (photos / "ping.png").symlink_to("pong.png")
    (photos / "pong.png").symlink_to("ping.png")
    (photos / "gone.png").symlink_to("deleted.png")


def test_a_link_loop_or_a_dangling_link_is_that_inputs_failure(photos, onnx_path, capsys):
    _links(photos)
    assert upscale("-i", photos, "-o", photos.parent / "out", "--model", onnx_path) == 1
    err = capsys.readouterr().err
    for name in ("loop.png", "ping.png", "pong.png"):
        assert f"failed {photos / name}: {photos / name}: a symbolic link that loops back on itself" in err
    assert f"{photos / 'gone.png'}: a symbolic link to deleted.png, which does not exist" in err
    assert "cannot write" not in err and "3 written, 4 failed" in err
    assert _pngs(photos.parent / "out") == ["a.png", "b.png", "c.png"]


def test_ray_plans_the_same_link_failures(photos, tmp_path):
    from bsrn_edge.apps.distributed import discover_inputs, plan_outputs

    _links(photos)
    jobs = {j.src.name: j.refusal for j in plan_outputs(discover_inputs(photos), tmp_path / "out", None)}
    assert sorted(jobs) == ["a.png", "b.png", "c.png", "gone.png", "loop.png", "ping.png", "pong.png"]
    assert "loops back on itself" in jobs["loop.png"] and "does not exist" in jobs["gone.png"]
    assert jobs["a.png"] is None


# -- 4: never writing through a link -----------------------------------------------------------
@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(b"not yours")
    return path


def test_an_output_name_that_is_a_link_is_replaced_not_written_through(photos, onnx_path, victim):
    out = photos.parent / "out"
    out.mkdir()
    (out / "a.png").symlink_to(victim)
    assert upscale("-i", photos, "-o", out, "--model", onnx_path, "--force") == 0
    assert victim.read_bytes() == b"not yours"
    assert not (out / "a.png").is_symlink() and read_rgb(out / "a.png").shape == (96, 80, 3)


def test_a_temporary_name_taken_by_a_link_is_never_followed(tmp_path, victim, monkeypatch):
    """The next temporary name is known in advance (the random part fixed here): a link planted under it is
    skipped (O_EXCL | O_NOFOLLOW) and the file still arrives whole under its own name."""
    import secrets

    from bsrn_edge.imageio import partial_path, write_atomic

    names = iter(["aaaaaa", "bbbbbb"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(names))
    dest = tmp_path / "model.onnx"
    partial_path(dest, "aaaaaa").symlink_to(victim)
    write_atomic(dest, b"graph")
    assert victim.read_bytes() == b"not yours" and dest.read_bytes() == b"graph"


def test_a_temporary_swapped_for_a_link_is_not_renamed(tmp_path, victim):
    from bsrn_edge.imageio import atomic_path

    dest = tmp_path / "out.png"
    with pytest.raises(OSError, match="replaced while being written"):
        with atomic_path(dest) as tmp:
            tmp.unlink()
            tmp.symlink_to(victim)
    assert not dest.exists() and victim.read_bytes() == b"not yours"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "PNG16"])
def test_an_image_writer_never_reopens_its_temporary_by_name(tmp_path, victim, monkeypatch, lr_images, fmt):
    """The temporary is swapped for a link to another file right after it is created: the encoder writes through
    the descriptor that created it, so the link's target is untouched, and nothing is renamed into place."""
    if fmt == "TIFF":
        pytest.importorskip("tifffile")
    import bsrn_edge.imageio.atomic as atomic
    from bsrn_edge.imageio import write_image

    real = atomic._create_partial

    def then_swapped(dest, suffix):  # type: ignore[no-untyped-def]
        tmp, fd = real(dest, suffix)
        tmp.unlink()
        tmp.symlink_to(victim)
        return tmp, fd

    monkeypatch.setattr(atomic, "_create_partial", then_swapped)
    dest = tmp_path / f"out.{fmt.lower()}"
    pixels = lr_images[0].astype(np.uint16) * 257 if fmt == "PNG16" else lr_images[0]
    with pytest.raises(OSError, match="replaced while being written"):
        write_image(pixels, dest, fmt.removesuffix("16"))
    assert victim.read_bytes() == b"not yours" and not dest.exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_the_manifest_never_writes_through_a_link(photos, onnx_path, victim, capsys):
    from bsrn_edge.apps.distributed.manifest import Entry, ManifestLog, write_manifest

    out = photos.parent / "out"
    out.mkdir()
    (out / "bsrn-manifest.jsonl").symlink_to(victim)
    if available("ray"):  # refused before Ray starts, nothing written
        assert upscale("-i", photos, "-o", out, "--model", onnx_path, "--ray") == 2
        assert f"{out / 'bsrn-manifest.jsonl'}: is a symbolic link (to {victim})" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == ["bsrn-manifest.jsonl"]
    with pytest.raises(OSError, match="symbolic link"):
        ManifestLog(out / "bsrn-manifest.jsonl")  # the log opened mid-run, after a link was planted
    write_manifest(out / "bsrn-manifest.jsonl", [Entry("/a.png", "/o/a.png", "done")])  # the rewrite: a rename
    assert victim.read_bytes() == b"not yours" and not (out / "bsrn-manifest.jsonl").is_symlink()


def test_an_export_into_a_linked_name_and_the_engine_cache_replace_the_link(tmp_path, victim):
    """bsrn-export's ONNX (the bench's ONNX cache is the same writer) and the engine cache's files."""
    from bsrn_edge.apps.export_cli import main as export
    from bsrn_edge.imageio import write_atomic

    out = tmp_path / "models"
    out.mkdir()
    (out / "bsrn-s-x4.onnx").symlink_to(victim)
    assert export(["--ckpt", "bsrn-s-x4", "--out", str(out), "--force", "-q"]) == 0
    assert victim.read_bytes() == b"not yours" and (out / "bsrn-s-x4.onnx").stat().st_size > 100_000
    cache = tmp_path / "engines"
    cache.mkdir()
    for name in ("bsrn-s-x4-abc.engine", "timing-H100-trt10.cache"):  # what tensorrt_build writes, all by write_atomic
        (cache / name).symlink_to(victim)
        write_atomic(cache / name, b"engine bytes")
        assert (cache / name).read_bytes() == b"engine bytes" and not (cache / name).is_symlink()
    assert victim.read_bytes() == b"not yours"


def test_no_output_goes_through_a_linked_folder_below_o(tmp_path, lr_images, onnx_path, victim, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    save(lr_images[0][:20, :20], src / "sub" / "a.png")
    out.mkdir()
    (out / "sub").symlink_to(victim.parent)
    assert upscale("-i", src, "-o", out, "--model", onnx_path) == 1
    assert f"{out / 'sub'}: a symbolic link below -o" in capsys.readouterr().err
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


# -- 5: two runs on one -o ---------------------------------------------------------------------
def test_a_live_runs_temporaries_are_kept_and_a_dead_runs_removed(tmp_path):
    """A second process holds its lock (it is alive): its temporary stays; once it is killed (SIGKILL: the
    kernel drops the lock) the next clean-up removes it, and the lock file with it."""
    from bsrn_edge.imageio import remove_partials, run_token

    dest = tmp_path / "out" / "clip.mp4"
    dest.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom bsrn_edge.imageio import RunLock, set_run_token\nset_run_token('feedf00d')\n"
        f"with RunLock({str(dest.parent)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline() == "held\n"
        theirs = dest.parent / ".clip.mp4.feedf00d-a1b2c3.part.mp4"
        ours = dest.parent / f".clip.mp4.{run_token()}-d4e5f6.part.mp4"
        old = dest.parent / ".clip.mp4.zz99yy88.part.mp4"  # an older version's: no run, always stale
        for p in (theirs, ours, old):
            p.write_bytes(b"half a clip")
        assert sorted(remove_partials([dest])) == sorted([ours, old])
        assert theirs.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert remove_partials([dest]) == [theirs] and list(dest.parent.iterdir()) == []


@needs_av
def test_two_runs_on_one_output_folder_both_finish(tmp_path, set5_dir, onnx_path):
    """The second run starts while the first is writing its temporary file into the same -o (same clip, same
    output name): both exit 0 and the output is whole."""
    import av

    from bsrn_edge.bench.clips import write_pan_clip

    clip, out = tmp_path / "clip.mp4", tmp_path / "out"
    write_pan_clip(clip, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 120, size=(96, 64))
    cmd = [sys.executable, "-m", "bsrn_edge.apps.upscale", "-i", str(clip), "-o", str(out), "--model", str(onnx_path),
           "--force"]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(".part" in p.name for p in out.iterdir())):
        assert first.poll() is None and time.monotonic() < deadline, "the first run ended before writing"
        time.sleep(0.01)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    first_err = first.communicate(timeout=300)[1]
    assert (first.returncode, second.returncode) == (0, 0), first_err + second.stderr
    with av.open(str(out / "clip.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 120
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]


# -- 6: damaged containers ----------------------------------------------------------------------
@needs_av
@pytest.mark.parametrize("damage", ["garbage.mkv", "cut.mp4"])
def test_a_container_cut_short_says_so_keeps_the_output_and_exits_1(tmp_path, set5_dir, onnx_path, capsys, damage):
    """2 KB of garbage a third into an mkv (FFmpeg reads 5 of 18 frames), or an mp4 with its index first cut at
    70% of its length (12 of 18): the times are said, the output is kept and named, the exit code is 1."""
    import av

    from bsrn_edge.bench.clips import write_pan_clip

    whole = tmp_path / f"whole{Path(damage).suffix}"
    write_pan_clip(whole, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 18, size=(48, 32), audio=True)
    src = tmp_path / damage
    if damage.endswith(".mkv"):
        data = whole.read_bytes()
        src.write_bytes(data[:len(data) // 3] + bytes(range(256)) * 8 + data[len(data) // 3:])
    else:
        front = tmp_path / "front.mp4"
        with av.open(str(whole)) as i, av.open(str(front), "w", options={"movflags": "faststart"}) as o:
            streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
            for p in i.demux():
                if p.size:
                    p.stream = streams[p.stream.index]
                    o.mux(p)
        src.write_bytes(front.read_bytes()[:int(front.stat().st_size * 0.7)])
    out = tmp_path / "out" / f"up{Path(damage).suffix}"
    assert upscale("-i", src, "-o", out, "--model", onnx_path) == 1
    err = capsys.readouterr().err
    with av.open(str(out)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == (5 if damage.endswith(".mkv") else 12)  # what FFmpeg reads of each (issue 22)
    assert f"its frames end at {max(times) + 0.04:.3f} s but its container declares 0.720 s of video ({len(times)} " \
           f"frames decoded): the file is damaged or cut short; {out} is partial" in err


# -- 7: outputs never inputs ---------------------------------------------------------------------
def test_a_rerun_into_its_own_input_folder_leaves_its_outputs_alone(photos, onnx_path, capsys):
    from bsrn_edge.apps.distributed import discover_inputs, plan_outputs

    assert upscale("-i", photos, "-o", photos, "--suffix", "x4", "--model", onnx_path) == 0
    assert upscale("-i", photos, "-o", photos, "--suffix", "x4", "--model", onnx_path) == 0
    assert "0 written, 0 failed, 3 skipped (already done)" in capsys.readouterr().err
    assert _pngs(photos) == ["a.png", "a_x4.png", "b.png", "b_x4.png", "c.png", "c_x4.png"]
    ray_plan = plan_outputs(discover_inputs(photos, exclude=photos), photos, None, "_x4")  # --ray's plan
    assert sorted(j.src.name for j in ray_plan) == ["a.png", "b.png", "c.png"]
    (photos / "a_x4_x4.png").write_bytes((photos / "a_x4.png").read_bytes())  # left by the old version's re-run
    assert sorted(j.src.name for j in plan_outputs(discover_inputs(photos, exclude=photos), photos, None, "_x4")) \
        == ["a.png", "b.png", "c.png"]


def _finished(folder: Path) -> list[str]:
    """The finished outputs in ``folder`` (temporaries are hidden files)."""
    try:
        return [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    except FileNotFoundError:
        return []


# -- 9: SIGTERM and Ctrl-C on one machine (with --ray: test_distributed.py) ------------------------------
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_batch_prints_the_summary_and_exits_with_its_code(tmp_path, lr_images, onnx_path, sig, code, word):
    src, out = tmp_path / "in", tmp_path / "out"
    for k in range(12):
        save(lr_images[k % 5], src / f"{k:02d}.png")
    cmd = [sys.executable, "-m", "bsrn_edge.apps.upscale", "-i", str(src), "-o", str(out), "--model", str(onnx_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _finished(out):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first output"
        time.sleep(0.005)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    done = len(_finished(out))
    assert proc.returncode == code, err
    assert f"stopped: {word}; run the same command again to resume. {done} written, 0 failed" in err
    assert "Traceback" not in err and not [p.name for p in out.iterdir() if p.name.startswith(".")]


# -- 10: impossible model metadata ------------------------------------------------------------------
@pytest.fixture(scope="module")
def odd_models(onnx_path, tmp_path_factory) -> dict[str, Path]:
    """The exported BSRN-S with one thing made impossible: scale 0, -1 or 1000, minimum side 0, or a fixed
    input of 2000×2000."""
    import onnx

    folder = tmp_path_factory.mktemp("odd_models")
    made = {}
    for name, key, value in [("scale0", "scale", "0"), ("scale-1", "scale", "-1"), ("scale1000", "scale", "1000"),
                             ("min0", "min_size", "0"), ("fixed", None, None)]:
        m = onnx.load(str(onnx_path))
        if key is None:
            for dim, size in zip(m.graph.input[0].type.tensor_type.shape.dim[2:], (2000, 2000)):
                dim.dim_value = size
        else:
            next(p for p in m.metadata_props if p.key == f"bsrn_edge.{key}").value = value
        made[name] = folder / f"{name}.onnx"
        onnx.save(m, str(made[name]))
    return made


@pytest.mark.parametrize("name, says", [
    ("scale0", "scale 0"), ("scale-1", "scale -1"), ("scale1000", "scale 1000"),
    ("min0", "min0.onnx: invalid size requirements SizeRequirements(minimum=0"),
    ("fixed", "input size is fixed at 2000×2000")])
def test_impossible_model_metadata_is_a_usage_error_before_any_file(photos, odd_models, capsys, name, says):
    assert upscale("-i", photos, "-o", photos.parent / "out", "--model", odd_models[name]) == 2
    err = capsys.readouterr().err
    assert says in err and "×0" not in err and "Traceback" not in err
    assert not (photos.parent / "out").exists()


# -- the six slips ------------------------------------------------------------------------------------
def test_the_bundled_model_without_torch_is_a_missing_dependency(photos, monkeypatch, capsys):
    """Exit 3 with the install hint, as the README's table says for a missing optional dependency."""
    import bsrn_edge.apps.upscale.run as run
    import bsrn_edge.runtime.open as opener

    def no_torch(name: str) -> bool:
        return name.split(".")[0] != "torch" and available(name)

    monkeypatch.setattr(opener, "available", no_torch)
    monkeypatch.setattr(run, "available", no_torch)
    assert upscale("-i", photos, "-o", photos.parent / "out") == 3  # the default model: the bundled checkpoint
    assert "pip install 'bsrn-edge[export]'" in capsys.readouterr().err
    assert not (photos.parent / "out").exists()


def test_naming_the_input_as_the_output_is_caught_before_the_model_loads(photos, onnx_path, monkeypatch, capsys):
    import bsrn_edge.apps.upscale.run as run

    monkeypatch.setattr(run, "open_upscaler", lambda args: pytest.fail("the model was opened"))
    before = (photos / "a.png").read_bytes()
    assert upscale("-i", photos / "a.png", "-o", photos / "a.png", "--model", onnx_path) == 2
    assert f"{photos / 'a.png'}: is an input file; refusing to overwrite it" in capsys.readouterr().err
    assert (photos / "a.png").read_bytes() == before


@needs_av
def test_an_audio_only_file_is_not_a_video_and_not_an_image(tmp_path, onnx_path, capsys):
    import av

    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="ipod") as c:
        a = c.add_stream("aac", rate=48000, layout="mono")
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, k * 1024
            for p in a.encode(frame):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    assert upscale("-i", path, "-o", tmp_path / "out", "--model", onnx_path) == 2
    err = capsys.readouterr().err
    assert f"{path}: holds only audio (aac), not a video" in err and "image" in err and "unsupported" not in err


def test_the_bomb_message_quotes_max_pixels_not_pillows_limit(tmp_path, onnx_path, capsys):
    """A PNG whose header says 20000×10000 (200 million pixels, over Pillow's own refusal at twice its
    89,478,485-pixel limit): the message gives our limit and the flag that raises it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    assert upscale("-i", path, "-o", tmp_path / "out", "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert "200,000,000 px, more than 64,000,000" in err and "--max-pixels" in err and "178956970" not in err


@needs_av
def test_a_full_disk_during_a_video_says_so_and_not_try_mkv(tmp_path, set5_dir, onnx_path, monkeypatch, capsys):
    """The muxer's write fails with ENOSPC, as PyAV raises it (av.error.OSError)."""
    import av

    from bsrn_edge.apps.video import encode
    from bsrn_edge.bench.clips import write_pan_clip

    clip = tmp_path / "clip.mp4"
    write_pan_clip(clip, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 6, size=(48, 32))

    def full(self):
        raise av.error.OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(encode.Encoder, "_flush", full)
    assert upscale("-i", clip, "-o", tmp_path / "out.mp4", "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out.mp4'}: cannot write it (No space left on device)" in err and "Try .mkv" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@needs_av
@pytest.mark.parametrize("suffix, code", [(".mp4", 2), (".mkv", 1)])  # mp4 declares its frame count, mkv does not
def test_frames_past_the_end_leave_no_folder_behind(tmp_path, set5_dir, onnx_path, capsys, suffix, code):
    from bsrn_edge.bench.clips import write_pan_clip

    clip = tmp_path / f"clip{suffix}"
    write_pan_clip(clip, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 6, size=(48, 32))
    assert upscale("-i", clip, "-o", tmp_path / "new" / "deeper", "--model", onnx_path, "--frames", "500:") == code
    assert "--frames starts at frame 500" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [clip.name]


# -- from the new-user run ---------------------------------------------------------------------------
def test_one_large_image_shows_a_bar_of_its_tiles(tmp_path, onnx_path, set5_dir, capsys):
    """96×96 at -t 32: the tile plan's count (from the policy, a second path) is the bar's total."""
    from bsrn_edge.runtime import Upscaler

    img = read_rgb(set5_dir / "img_001_SRF_4_LR.png")[:96, :96]
    save(img, tmp_path / "big.png")
    up = Upscaler(onnx_path, tile=32)
    tiles = len(up.policy.plan(96, 96, 32).tiles)
    assert tiles > 1
    assert upscale("-i", tmp_path / "big.png", "-o", tmp_path / "out.png", "--model", onnx_path, "-t", "32") == 0
    err = capsys.readouterr().err
    assert "big.png: 100%" in err and f"{tiles}/{tiles} [" in err and "tile/s" in err


def test_upscaler_tile_0_means_no_tiling(onnx_path, lr_images):
    from bsrn_edge.runtime import Upscaler

    img = lr_images[0]
    zero, none = Upscaler(onnx_path, tile=0), Upscaler(onnx_path, tile=None)
    assert zero.tile is None and zero.tile_for(4000, 3000) is None
    assert np.array_equal(zero.upscale(img), none.upscale(img))


def _camera_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("camera_app_cli", ROOT / "examples" / "camera_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, says", [
    (["--camera", "/no/such/camera.avi"], "cannot open camera '/no/such/camera.avi'"),
    (["--camera", "7", "--show"], "--show needs OpenCV with a window system")])
def test_the_camera_app_fails_in_one_line_with_the_fix(onnx_path, capsys, monkeypatch, argv, says):
    cv2 = pytest.importorskip("cv2", reason="OpenCV not installed (extra 'camera')")
    app = _camera_app()
    if "--show" in argv:  # headless OpenCV (the 'camera' extra) has no window system; a full one is made to say so
        def no_gui(*args):
            raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or "
                            "Cocoa support")
        monkeypatch.setattr(cv2, "namedWindow", no_gui)
    assert app.main(["--model", str(onnx_path), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_readme_models_are_the_names_its_export_command_writes(tmp_path):
    """Every .onnx a README command runs is written by a bsrn-export command of the README, as written."""
    import re
    import shlex

    from bsrn_edge.apps.export_cli import main as export

    readme = (ROOT / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)\n```", readme, re.S))
    used = set(re.findall(r"--model (?:/shared/)?([\w.-]+\.onnx)", readme))
    exports = {re.sub(r"--out \S+", "", line.split("bsrn-export", 1)[1].split("#")[0]).strip()
               for line in blocks.splitlines() if "bsrn-export" in line}  # the README's /shared is not here
    assert used and exports
    for k, args in enumerate(sorted(exports)):
        assert export([*shlex.split(args), "--out", str(tmp_path / str(k)), "-q"]) == 0
    assert used <= {p.name for p in tmp_path.rglob("*.onnx")}


def test_the_uint8_table_says_how_many_images_each_psnr_is_over():
    import io

    from bsrn_edge.apps.export_cli import print_table
    from bsrn_edge.export.validate import ValidationRow

    rows = [ValidationRow("m.onnx", "fp32", 3e-6, 32.16, 32.16, True, psnr_images=5),
            ValidationRow("m.u8.onnx", "fp32", 1, 30.1, 30.1, True, compared_with="m.onnx + host uint8",
                          off_fraction=0.0001, psnr_images=9)]
    buf = io.StringIO()
    print_table(rows, buf)
    lines = buf.getvalue().splitlines()
    assert "| images |" in lines[0]
    assert "| 5 |" in lines[2] and "| 9 |" in lines[3]


def test_the_spandrel_install_line_warns_of_the_cuda_build():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Coming from Real-ESRGAN"):readme.index("## Video and camera")]
    assert "pip install 'bsrn-edge[spandrel]'" in section
    assert "CUDA build" in section and "--index-url https://download.pytorch.org/whl/cpu" in section


# -- threads: the same bytes from one thread and from several ----------------------------------------
def test_onnx_runtime_gives_the_same_bytes_on_any_thread_count(onnx_path, lr_images):
    """Why a Ray actor (1 thread) writes the bytes bsrn-upscale writes (all cores) for an .onnx: ONNX Runtime's
    results do not depend on its thread count, whole or tiled, on real images."""
    from bsrn_edge.runtime import Upscaler

    one, two = Upscaler(onnx_path, threads=1), Upscaler(onnx_path, threads=2, tile=48)
    one_tiled = Upscaler(onnx_path, threads=1, tile=48)
    for img in lr_images:
        assert np.array_equal(one.upscale(img), Upscaler(onnx_path, threads=2).upscale(img))
        assert np.array_equal(one_tiled.upscale(img), two.upscale(img))


def test_pytorch_on_one_thread_differs_by_at_most_one_level_on_few_pixels(lr_images):
    """PyTorch's CPU convolutions (oneDNN) sum in another order on one thread than on several, so a checkpoint
    run in a one-CPU Ray actor can differ from bsrn-upscale's: measured at most 1 grey level, on under 0.003% of
    the values of Set5. The README says so; an .onnx gives the same bytes on both paths."""
    torch = pytest.importorskip("torch")
    from bsrn_edge.runtime import Upscaler

    up = Upscaler("bsrn-s-x4")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ones = [up.upscale(img) for img in lr_images]
        torch.set_num_threads(2)
        twos = [up.upscale(img) for img in lr_images]
    finally:
        torch.set_num_threads(before)
    for a, b in zip(ones, twos):
        diff = np.abs(a.astype(np.int16) - b)
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4
