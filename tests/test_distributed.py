"""bsrn_edge.apps.distributed: input discovery, output layout, manifest and resume without a cluster; then one
local Ray (2 CPUs) shared by two end-to-end runs: outputs bit-identical to single-process bsrn-upscale,
the manifest, a re-run that skips everything done, and an actor killed mid-run.

The collection is a dozen small crops of the bundled Set5 images in the formats a photo library holds
(PNG, JPEG with EXIF orientation and an ICC profile, RGBA, 16-bit colour and grey, WebP, BMP, a
sub-folder), plus one truncated PNG, and where PyAV is installed a short clip with audio (one task).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ort, needs_torch
from conftest import run_upscale as _upscale

from bsrn_edge._lazy import available
from bsrn_edge.errors import InputError

needs_ray = pytest.mark.skipif(not available("ray.data"), reason="ray[data] not installed (extra 'ray')")
HAS_AV = available("av")


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def _manifest(out: Path, src: Path) -> dict[str, dict]:
    """The manifest's lines by input path relative to ``src``, checking there is one line per input."""
    rows = [json.loads(ln) for ln in (out / "bsrn-manifest.jsonl").read_text().splitlines()]
    by_input = {Path(r["input"]).relative_to(src).as_posix(): r for r in rows}
    assert len(by_input) == len(rows)
    return by_input


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the collection --------------------------------------------------------------------------
def _collection(src: Path, set5: Path) -> list[Path]:
    """Twelve real images in mixed formats, and the clip where PyAV is installed; returns them."""
    from PIL import Image, ImageCms

    from bsrn_edge.imageio import read_rgb
    from bsrn_edge.imageio.png16 import encode_png16

    lr = [read_rgb(p) for p in sorted(set5.glob("*_LR.png"))]
    hr = read_rgb(next(iter(sorted(set5.glob("*_HR.png")))))
    src.mkdir(parents=True)
    (src / "sub").mkdir()

    def save(arr, name, **kw):
        Image.fromarray(arr).save(src / name, **kw)
        return src / name

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    box = hr[:64, :72].astype(np.uint32)
    rgb16 = ((box[0::2, 0::2] + box[1::2, 0::2] + box[0::2, 1::2] + box[1::2, 1::2]) * 65535 // 1020).astype(np.uint16)
    (src / "deep.png").write_bytes(encode_png16(rgb16, None))  # 2×2 box filter kept at 16 bits
    alpha = np.linspace(0, 255, 30 * 26).reshape(30, 26).astype(np.uint8)
    if HAS_AV:  # a pan across the HR image, 8 frames of 48×32 with an AAC track
        from bsrn_edge.bench.clips import write_pan_clip

        write_pan_clip(src / "sub" / "clip.mp4", hr, 8, size=(48, 32), audio=True)
    return [*([src / "sub" / "clip.mp4"] if HAS_AV else []),
        save(lr[0][:24, :28], "pic.png"),
        save(lr[1][:28, :24], "pic.bmp"),  # same stem: pic.bmp.png
        save(lr[2][:26, :30], "shot.jpg", quality=95),
        save(lr[3][:20, :36], "rotated.jpeg", quality=92, exif=exif, icc_profile=icc),
        save(np.dstack([lr[4][:30, :26], alpha]), "alpha.png"),
        src / "deep.png",
        save(rgb16.mean(axis=2).astype(np.uint16), "grey16.png"),
        save(lr[0][30:52, 10:40].mean(axis=2).astype(np.uint8), "grey.png"),
        save(lr[1][10:34, 20:44], "lossless.webp", lossless=True),
        save(lr[2][5:25, 5:27], "sub/pic.png"),  # alone in its folder: keeps the plain name
        save(lr[3][12:40, 8:30], "sub/night.jpg", quality=90),
        save(lr[4][2:22, 4:34], "sub/wide.tif"),
    ]


@pytest.fixture(scope="module")
def collection(tmp_path_factory, set5_dir):
    """(input folder, its good images, outputs of single-process bsrn-upscale for each folder)."""
    root = tmp_path_factory.mktemp("ray_collection")
    src = root / "in"
    good = _collection(src, set5_dir)
    (src / "broken.png").write_bytes((src / "pic.png").read_bytes()[:300])  # truncated mid-data
    return root, src, good


@pytest.fixture(scope="module")
def reference(collection, bsrn_s_export):
    """What single-process bsrn-upscale writes for the collection: one command on the folder, which it searches
    recursively (sub/ and the clip in it included), the same rule as --ray's."""
    root, src, _ = collection
    ref = root / "reference"
    assert _upscale("-i", src, "-o", ref, "--model", bsrn_s_export.files["onnx"]) == 1  # broken.png fails
    return _files(ref)


# -- planning, without a cluster --------------------------------------------------------------
def test_inputs_from_folder_glob_and_list(tmp_path):
    from bsrn_edge.apps.distributed import discover_inputs

    src = tmp_path / "in"
    _touch(src / "a.png", src / "b" / "c.JPG", src / "b" / "notes.txt", src / "out" / "a.png",
           src / ".a.png.ab12cd34.part.png")  # another run's temporary: never an input
    found = discover_inputs(src, exclude=src / "out")  # the output folder inside the input is skipped
    assert found.root == src and [p.relative_to(src).as_posix() for p in found.files] == ["a.png", "b/c.JPG"]

    found = discover_inputs(f"{src}/**/*.png")
    assert found.root == src and [p.relative_to(src).as_posix() for p in found.files] == ["a.png", "out/a.png"]
    with pytest.raises(InputError, match="matches no images"):
        discover_inputs(f"{src}/*.webp")

    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    listing.write_text(f"# picked by hand\n../in/b/c.JPG\n\n{src / 'a.png'}\n../in/a.png\n")
    found = discover_inputs(listing)  # relative to the list's folder; absolute kept; repeats dropped
    assert found.root == src and [p.relative_to(src).as_posix() for p in found.files] == ["a.png", "b/c.JPG"]
    listing.write_text("../in/a.png\n../in/gone.png\n")
    with pytest.raises(InputError, match=r"todo.txt: 1 listed file\(s\) do not exist: .*gone.png"):
        discover_inputs(listing)
    with pytest.raises(InputError, match="no such file or folder"):
        discover_inputs(tmp_path / "nowhere")


def test_outputs_keep_the_layout_and_the_naming_rule(tmp_path):
    from bsrn_edge.apps.distributed import discover_inputs, plan_outputs

    src, out = tmp_path / "in", tmp_path / "out"
    _touch(src / "pic.png", src / "pic.bmp", src / "x" / "pic.bmp", src / "x" / "y" / "shot.jpeg",
           src / "x" / "y" / "shot.MOV")
    plan = {j.src.relative_to(src).as_posix(): (j.dst.relative_to(out).as_posix(), j.fmt, j.refusal)
            for j in plan_outputs(discover_inputs(src), out, None)}
    assert plan == {"pic.png": ("pic.png", "PNG", None), "pic.bmp": ("pic.bmp.png", "PNG", None),
                    "x/pic.bmp": ("x/pic.png", "PNG", None), "x/y/shot.jpeg": ("x/y/shot.jpg", "JPEG", None),
                    "x/y/shot.MOV": ("x/y/shot.mov", "video", None)}  # a video keeps its name: one task
    refused = {j.src.relative_to(src).as_posix(): j.refusal for j in plan_outputs(discover_inputs(src), src, None)}
    assert "pic.png: is an input file" in refused.pop("pic.png")  # -o is -i: never overwrite an input
    assert set(refused.values()) == {None}
    _touch(src / "x" / "pic.png", src / "x" / "Pic.png")  # one name on macOS and Windows
    with pytest.raises(InputError, match=r"in/x: two inputs would be written to one output name"):
        plan_outputs(discover_inputs(src), out, None)
    with pytest.raises(InputError, match="must be a folder"):
        plan_outputs(discover_inputs(src / "x" / "y"), src / "pic.png", None)


def test_manifest_keeps_the_last_line_of_each_input(tmp_path):
    from bsrn_edge.apps.distributed.manifest import Entry, ManifestLog, read_manifest, write_manifest

    path = tmp_path / "out" / "bsrn-manifest.jsonl"
    assert read_manifest(path) == {}
    path.parent.mkdir()
    write_manifest(path, [Entry("/a.png", "/o/a.png", "failed", "/a.png: corrupt"), Entry("/b.png", "/o/b.png", "done")])
    with open(path, "a") as fh:
        fh.write('{"input": "/c.png", "output": "/o/c.p')  # a driver killed mid-line
    log = ManifestLog(path)
    log.add(Entry("/a.png", "/o/a.png", "done", worker="node1:42"))
    log.close()
    got = read_manifest(path)
    assert got == {"/a.png": Entry("/a.png", "/o/a.png", "done", worker="node1:42"), "/b.png": Entry("/b.png", "/o/b.png", "done")}
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"input": "/a.png", "output": "/o/a.png", "status": "done", "worker": "node1:42"}


def test_resume_sends_only_what_is_not_done(tmp_path):
    from bsrn_edge.apps.distributed.manifest import Entry, resume
    from bsrn_edge.apps.jobs import Job

    def job(name: str) -> Job:
        return Job(tmp_path / "in" / name, tmp_path / "out" / name, "PNG")

    done, foreign, failed, deleted, new = (job(n) for n in ("done.png", "foreign.png", "failed.png", "deleted.png", "new.png"))
    _touch(done.dst, foreign.dst, failed.dst)
    previous = {str(j.src): Entry(str(j.src), str(j.dst), s) for j, s in
                ((done, "done"), (failed, "failed"), (deleted, "done"))}
    jobs = [done, foreign, failed, deleted, new]
    todo, settled = resume(jobs, previous, force=False)
    assert [j.src.name for j in todo] == ["deleted.png", "new.png"]
    assert {Path(e.input).name: e.status for e in settled} == {"done.png": "done", "foreign.png": "skipped",
                                                               "failed.png": "skipped"}
    todo, settled = resume(jobs, previous, force=True)
    assert todo == jobs and settled == []


def test_actor_shape_follows_the_cluster():
    from bsrn_edge.apps.distributed import ActorShape, actor_shape

    assert actor_shape({"CPU": 32.0, "GPU": 4.0}, "auto") == ActorShape(4, 1.0, 1.0)
    assert actor_shape({"CPU": 32.0, "GPU": 4.0}, "cpu", cpus_per_actor=4) == ActorShape(8, 4.0, 0.0)
    assert actor_shape({"CPU": 2.0}, "auto", actors=1) == ActorShape(1, 1.0, 0.0)
    assert actor_shape({"CPU": 7.0}, "auto", cpus_per_actor=2).threads == 2
    with pytest.raises(InputError, match="no GPUs"):
        actor_shape({"CPU": 8.0}, "cuda")


@needs_ort
@needs_torch
def test_worker_records_a_corrupt_image_and_goes_on(tmp_path, collection, reference, bsrn_s_export):
    """The actor's callable, called here without Ray: one result row per job, a failure as a row."""
    from bsrn_edge.apps.distributed import UpscaleActor, WorkerOptions

    _, src, _ = collection
    actor = UpscaleActor(WorkerOptions(str(bsrn_s_export.files["onnx"]), threads=1))
    batch = {"src": np.array([str(src / "broken.png"), str(src / "alpha.png")], dtype=object),
             "dst": np.array([str(tmp_path / "broken.png"), str(tmp_path / "alpha.png")], dtype=object),
             "fmt": np.array(["PNG", "PNG"], dtype=object), "refusal": np.array(["", ""], dtype=object)}
    rows = actor(batch)
    assert rows["status"] == ["failed", "done"]
    assert "broken.png: corrupt, truncated or unsupported image" in rows["reason"][0]
    assert rows["worker"][1].endswith(f":{os.getpid()}")
    assert (tmp_path / "alpha.png").read_bytes() == reference["alpha.png"]


@needs_ray
def test_usage_errors_exit_2_before_ray_starts(tmp_path, capsys):
    assert _upscale("-i", tmp_path, "-o", tmp_path / "out", "--model", "m.onnx", "--actors", "2") == 2
    assert "need --ray" in capsys.readouterr().err
    assert _upscale("-i", tmp_path / "nowhere", "-o", tmp_path / "out", "--model", "m.onnx", "--ray") == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_ray_the_hint_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    assert _upscale("-i", tmp_path, "-o", tmp_path / "out", "--model", "m.onnx", "--ray") == 3
    assert "pip install 'bsrn-edge[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- on a local Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
@needs_ort
@needs_torch
def test_ray_run_matches_bsrn_upscale_and_resumes(collection, reference, bsrn_s_export, local_ray, capsys):
    root, src, good = collection
    out = root / "ray_out"
    model = bsrn_s_export.files["onnx"]
    assert _upscale("-i", src, "-o", out, "--model", model, "--ray") == 1  # broken.png failed, the rest finished
    err = capsys.readouterr().err
    assert "on Ray with 2 actor(s) of 1 CPU" in err and f"{len(good)} written, 1 failed, 0 skipped (already done)" in err
    written = _files(out)
    assert written.pop("bsrn-manifest.jsonl").count(b"\n") == len(good) + 1
    assert written == reference  # same names, same bytes: sub/, the pic.bmp.png rule and the clip included
    rows = _manifest(out, src)
    assert {n: r["status"] for n, r in rows.items()} == {**{p.relative_to(src).as_posix(): "done" for p in good}, "broken.png": "failed"}
    assert "broken.png: corrupt, truncated or unsupported image" in rows["broken.png"]["reason"]
    assert rows["pic.bmp"]["output"] == str(out / "pic.bmp.png") and rows["pic.bmp"]["input"] == str(src / "pic.bmp")
    assert len({r["worker"] for r in rows.values()}) == 2  # both actors took work
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if p.name != "bsrn-manifest.jsonl"}

    assert _upscale("-i", src, "-o", out, "--model", model, "--ray") == 1  # only broken.png is sent again
    assert f"0 written, 1 failed, {len(good)} skipped (already done)" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = _manifest(out, src)
    assert {n: (r["status"], r.get("worker")) for n, r in again.items() if n != "broken.png"} == \
        {n: (r["status"], r["worker"]) for n, r in rows.items() if n != "broken.png"}  # done, as before


@needs_ray
@needs_ort
@needs_torch
def test_killed_actor_has_its_items_retried(collection, reference, bsrn_s_export, local_ray, monkeypatch, capsys):
    """SIGKILL the only actor as its first result arrives: Ray restarts it and retries what it held."""
    from bsrn_edge.apps.upscale import on_ray as command

    root, src, good = collection
    out, listing = root / "killed_out", root / "good.txt"
    listing.write_text("".join(f"{p}\n" for p in good))  # a text file of paths as input
    real, killed = command.run_on_ray, []

    def kill_first_worker(todo, options, shape):
        results = real(todo, options, shape)
        entry, stop = next(results)
        killed.append(int(entry.worker.rsplit(":", 1)[1]))
        os.kill(killed[0], signal.SIGKILL)
        yield entry, stop
        yield from results

    monkeypatch.setattr(command, "run_on_ray", kill_first_worker)
    assert _upscale("-i", listing, "-o", out, "--model", bsrn_s_export.files["onnx"], "--ray", "--actors", "1") == 0
    assert f"{len(good)} written, 0 failed, 0 skipped (already done)" in capsys.readouterr().err
    rows = _manifest(out, src)
    assert sorted(rows) == sorted(p.relative_to(src).as_posix() for p in good) and {r["status"] for r in rows.values()} == {"done"}
    workers = {int(r["worker"].rsplit(":", 1)[1]) for r in rows.values()}
    assert killed[0] in workers and len(workers) >= 2  # the restarted actor did the rest
    written = _files(out)
    del written["bsrn-manifest.jsonl"]
    assert written == reference  # complete files only, bit-identical
    assert not [p for p in out.rglob("*") if ".part" in p.name]


@needs_ray
@needs_ort
@needs_torch
@pytest.mark.skipif(not HAS_AV, reason="PyAV not installed (extra 'video')")
@pytest.mark.parametrize("name", ["long.mp4", "long.mkv"])  # Matroska's segments give their first packets no dts
def test_a_long_video_runs_in_segments_and_joins_like_the_whole_file(tmp_path, set5_dir, bsrn_s_export, local_ray,
                                                                     monkeypatch, capsys, name):
    """--segment-seconds 1 on a 2.4 s clip: two tasks, one manifest line, the single-machine frames and audio."""
    import av

    from bsrn_edge.apps.distributed import ray_job
    from bsrn_edge.bench.clips import write_pan_clip
    from bsrn_edge.imageio import read_rgb
    from bsrn_edge.metrics import psnr

    real, rows_sent = ray_job.split_jobs, []
    monkeypatch.setattr(ray_job, "split_jobs", lambda *a: rows_sent.append(r := real(*a)) or r)
    src, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "ref"
    src.mkdir()
    write_pan_clip(src / name, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 60, size=(48, 32), audio=True)
    model = bsrn_s_export.files["onnx"]
    assert _upscale("-i", src / name, "-o", ref, "--model", model) == 0
    assert _upscale("-i", src, "-o", out, "--model", model, "--ray", "--segment-seconds", "1") == 0
    assert "1 written, 0 failed, 0 skipped" in capsys.readouterr().err
    assert [row["span"] for row in rows_sent[0][0]] == ["0:1", "1:"]  # two tasks
    assert sorted(p.name for p in out.iterdir()) == ["bsrn-manifest.jsonl", name]  # segments removed
    rows = _manifest(out, src)
    assert list(rows) == [name] and rows[name]["status"] == "done"

    def read(path):
        with av.open(str(path)) as c:
            frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            return frames, [(bytes(p), p.pts) for p in c.demux(audio=0) if p.size]

    (got, got_audio), (want, want_audio) = read(out / name), read(ref / name)
    assert [t for t, _ in got] == [t for t, _ in want] and len(got) == 60
    assert got_audio == want_audio
    assert min(psnr(a, b) for (_, a), (_, b) in zip(got, want)) >= 40.0
    assert _upscale("-i", src, "-o", out, "--model", model, "--ray", "--segment-seconds", "1") == 0
    assert "0 written, 0 failed, 1 skipped" in capsys.readouterr().err


@needs_ray
@needs_ort
@needs_torch
def test_a_full_disk_on_the_driver_ends_with_the_summary_not_a_traceback(collection, bsrn_s_export, local_ray,
                                                                         monkeypatch, capsys):
    """The output folder's disk is full: appending to the manifest fails at the first result, and so does the
    final rewrite (ENOSPC as the kernel reports it). Said once each, the summary printed, exit 1."""
    from bsrn_edge.apps.distributed import manifest as manifest_module
    from bsrn_edge.apps.upscale import on_ray

    root, src, good = collection
    out = root / "full_out"

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "bsrn-manifest.jsonl"))

    monkeypatch.setattr(manifest_module.ManifestLog, "add", full)
    monkeypatch.setattr(on_ray, "write_manifest", full)
    assert _upscale("-i", src / "sub", "-o", out, "--model", bsrn_s_export.files["onnx"], "--ray", "--actors", "1") == 1
    err = capsys.readouterr().err
    assert f"{out / 'bsrn-manifest.jsonl'}: cannot write it (No space left on device)" in err
    assert f"stopped: {out}: disk full; no later file could be written. " in err and " written, 0 failed" in err
    assert f"{out / 'bsrn-manifest.jsonl'}: cannot write the manifest (No space left on device)" in err
    assert "Traceback" not in err


@needs_ray
@needs_ort
@needs_torch
def test_sigterm_finalises_the_manifest_prints_the_summary_and_leaves_no_ray_process(collection, bsrn_s_export,
                                                                                    tmp_path):
    """bsrn-upscale --ray starting its own local Ray, in a process of its own, sent SIGTERM once its first
    result is in the manifest: exit 143, the summary, every written output in the manifest, and none of the Ray
    processes it started (all named after their temporary folder) alive afterwards."""
    import subprocess
    import tempfile
    import time

    root, src, good = collection
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    cmd = [sys.executable, "-m", "bsrn_edge.apps.upscale", "-i", str(src), "-o", str(out), "--model",
           str(bsrn_s_export.files["onnx"]), "--ray", "--actors", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": ""})
    manifest, deadline = out / "bsrn-manifest.jsonl", time.monotonic() + 240
    while not (manifest.is_file() and manifest.stat().st_size):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first result"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert "stopped: terminated (SIGTERM); run the same command again to resume." in err and "Traceback" not in err
    rows = _manifest(out, src)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    done = {Path(r["output"]).relative_to(out).as_posix() for r in rows.values() if r["status"] == "done"}
    assert done and done == written - {"bsrn-manifest.jsonl"}
    time.sleep(2)  # Ray's own processes end a moment after the driver
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert [line for line in ps.splitlines() if ray_tmp in line] == []


@needs_ort
@needs_torch
def test_worker_applies_the_image_options_like_bsrn_upscale(tmp_path, collection, bsrn_s_export):
    """-s 2 -f jpg on an image with transparency: the actor (called without Ray) writes what single-process
    bsrn-upscale writes, the PNG fallback included, and the row names the planned output."""
    from bsrn_edge.apps.distributed import UpscaleActor, WorkerOptions
    from bsrn_edge.apps.distributed.segments import split_jobs
    from bsrn_edge.apps.jobs import ImageOptions, plan_jobs

    _, src, _ = collection
    onnx = str(bsrn_s_export.files["onnx"])
    assert _upscale("-i", src / "alpha.png", "-o", tmp_path / "single", "--model", onnx, "-s", "2", "-f", "jpg") == 0
    jobs = plan_jobs(src / "alpha.png", tmp_path / "ray", "jpg")
    items, _ = split_jobs(jobs, 0)
    batch = {k: np.array([row[k] for row in items], dtype=object) for k in items[0]}
    actor = UpscaleActor(WorkerOptions(onnx, threads=1, image=ImageOptions(outscale=2.0)))
    rows = actor(batch)
    assert rows["status"] == ["done"] and rows["output"] == [str(tmp_path / "ray" / "alpha.jpg")]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["alpha.png"]
    assert (tmp_path / "ray" / "alpha.png").read_bytes() == (tmp_path / "single" / "alpha.png").read_bytes()


def test_worker_options_carry_the_image_flags_and_leave_gpus_to_the_workers(tmp_path, monkeypatch):
    """-g 0 names a GPU of the workers: the driver (maybe without one) must not open the model itself;
    -s, --max-pixels, --lossless and --memory-mb reach every actor."""
    import bsrn_edge.apps.upscale.on_ray as command
    from bsrn_edge.apps.jobs import ImageOptions
    from bsrn_edge.apps.upscale.parser import build_parser

    opened: list[str] = []
    monkeypatch.setattr(command, "open_checked", lambda args: opened.append(args.device))
    base = ["-i", str(tmp_path), "-o", str(tmp_path / "out"), "--ray"]
    opts = command._worker_options(build_parser().parse_args([*base, "-g", "0", "-s", "2", "--max-pixels", "900",
                                                              "--lossless", "--memory-mb", "256"]))
    assert opened == [] and opts.device == "cuda:0"
    assert opts.image == ImageOptions(outscale=2.0, max_pixels=900, lossless=True) and opts.memory_mb == 256
    command._worker_options(build_parser().parse_args([*base, "-g", "-1"]))
    assert opened == ["cpu"]  # a CPU model is checked on the driver before Ray starts


def test_driver_goes_on_after_a_read_only_subfolder(tmp_path, monkeypatch, capsys):
    """The driver's side of a worker's stop: an output subfolder that is not writable fails its own files and the
    others go on; a stop for the folder that holds everything left ends the run (results faked, no cluster)."""
    from bsrn_edge.apps.batch import Tally, _not_writable
    from bsrn_edge.apps.distributed.manifest import Entry
    from bsrn_edge.apps.distributed.plan import ActorShape
    from bsrn_edge.apps.distributed.ray_job import WorkerOptions
    from bsrn_edge.apps.jobs import Job
    from bsrn_edge.apps.upscale import on_ray as command

    out = tmp_path / "out"
    jobs = [Job(tmp_path / "in" / n, out / n, "png") for n in ("b/3.png", "b/4.png", "c/5.png")]
    stop = _not_writable(out / "b")
    results = [(Entry.for_job(jobs[0], "failed", f"{jobs[0].dst}: cannot write it"), stop),
               (Entry.for_job(jobs[1], "failed", f"{jobs[1].dst}: cannot write it"), stop),
               (Entry.for_job(jobs[2], "done"), None)]
    monkeypatch.setattr(command, "run_on_ray", lambda todo, options, shape: iter(results))
    tally, entries = Tally(3), {}
    command._send(jobs, WorkerOptions("m.onnx"), ActorShape(1, 1.0, 0.0), tally, entries, out / "manifest.jsonl")
    assert (tally.written, tally.failed, tally.stopped) == (1, 2, None) and len(entries) == 3

    results[:] = [(Entry.for_job(jobs[0], "failed", "x"), stop), (Entry.for_job(jobs[2], "done"), None),
                  (Entry.for_job(jobs[1], "failed", "x"), stop)]  # c/5.png heard first: b/4.png is all that is left
    tally, entries = Tally(3), {}
    command._send(jobs, WorkerOptions("m.onnx"), ActorShape(1, 1.0, 0.0), tally, entries, out / "manifest.jsonl")
    assert (tally.written, tally.failed, tally.stopped) == (1, 2, stop)
