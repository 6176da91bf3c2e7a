"""Batch behaviour of the command lines: output names, name shadowing, write errors, resume, file modes, usage errors.

Write errors are simulated without root: :func:`fail_writes` swaps the ``os`` module seen by
``bsrn_edge.imageio`` (the one place every atomic write goes through) for a stand-in whose calls fail
with a chosen errno, and can make the output folder look read-only to ``bsrn-upscale``.
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
from conftest import needs_ort, needs_torch
from conftest import run_upscale as _upscale
from conftest import save_image as _save

pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture (and runs bundled names)


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# -- output names ----------------------------------------------------------------------------
def _same_stem_folder(tmp_path: Path, lr_images) -> Path:
    """pic.png + pic.bmp and shot.jpg + shot.jpeg, each of its own size, so an output's size names its input."""
    src = tmp_path / "in"
    img = lr_images[1]
    _save(img[:20, :24], src / "pic.png")
    _save(img[:24, :28], src / "pic.bmp")
    _save(img[:28, :32], src / "shot.jpg", quality=95)
    _save(img[:32, :36], src / "shot.jpeg", quality=95)
    return src


def test_same_stems_get_their_own_outputs(tmp_path, onnx_path, lr_images, capsys):
    src, dst = _same_stem_folder(tmp_path, lr_images), tmp_path / "out"
    want = {"pic.png": (96, 80), "pic.bmp.png": (112, 96), "shot.jpg": (128, 112), "shot.jpeg.jpg": (144, 128)}
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 0
    assert {p.name: _size(p) for p in dst.iterdir()} == want
    assert "4 written, 0 failed, 0 skipped (already done)" in capsys.readouterr().err
    for p in dst.iterdir():  # mark each output: --force must replace every one of them
        p.write_bytes(b"stale")
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path, "--force") == 0
    assert {p.name: _size(p) for p in dst.iterdir()} == want  # four files for a summary of four
    assert "4 written, 0 failed, 0 skipped (already done)" in capsys.readouterr().err
    (dst / "pic.bmp.png").write_bytes(b"kept")  # without --force an existing output is done: left alone
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 0
    assert "0 written, 0 failed, 4 skipped (already done)" in capsys.readouterr().err
    assert (dst / "pic.bmp.png").read_bytes() == b"kept"


def test_output_plan_rules(tmp_path):
    from bsrn_edge.apps.jobs import plan_jobs
    from bsrn_edge.errors import InputError

    src = tmp_path / "in"
    src.mkdir()
    for name in ("pic.png", "pic.bmp", "solo.tif", ".pic.png.ab12cd34.part.png"):  # the last: a killed run's temp
        (src / name).write_bytes(b"x")
    plan = {j.src.name: (j.dst.name, j.fmt) for j in plan_jobs(src, tmp_path / "out", None)}
    assert plan == {"pic.png": ("pic.png", "PNG"), "pic.bmp": ("pic.bmp.png", "PNG"), "solo.tif": ("solo.tif", "TIFF")}
    plan = {j.src.name: j.dst.name for j in plan_jobs(src, tmp_path / "out", "jpg")}
    assert plan == {"pic.png": "pic.png.jpg", "pic.bmp": "pic.bmp.jpg", "solo.tif": "solo.jpg"}
    plan = {j.src.name: (j.dst.name, j.alpha_dst.name) for j in plan_jobs(src, tmp_path / "out", "jpg", "_x4")}
    assert plan == {"pic.png": ("pic_x4.png.jpg", "pic_x4.png.png"), "pic.bmp": ("pic_x4.bmp.jpg", "pic_x4.bmp.png"),
                    "solo.tif": ("solo_x4.jpg", "solo_x4.png")}
    (src / "Pic.png").write_bytes(b"x")  # one name on macOS and Windows: refused, whatever this file system is
    with pytest.raises(InputError, match="Pic.png and pic.png"):
        plan_jobs(src, tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def test_unresolvable_clash_is_a_usage_error_before_anything(tmp_path, onnx_path, lr_images, capsys):
    src = tmp_path / "in"
    _save(lr_images[1][:20, :20], src / "a.png")
    _save(lr_images[1][:20, :20], src / "A.png")
    assert _upscale("-i", src, "-o", tmp_path / "out", "--model", onnx_path) == 2
    assert "one output name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- name shadowing --------------------------------------------------------------------------
def test_a_folder_never_shadows_a_bundled_name(tmp_path, lr_images, monkeypatch, capsys):
    from bsrn_edge.checkpoint import resolve_checkpoint
    from bsrn_edge.errors import CheckpointError
    from bsrn_edge.variants import bundled_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bsrn-s-x4").mkdir()  # e.g. left by `bsrn-export --ckpt bsrn-s-x4 --out bsrn-s-x4`
    assert resolve_checkpoint("bsrn-s-x4") == bundled_checkpoint("bsrn-s-x4")
    _save(lr_images[1][:20, :20], tmp_path / "a.png")
    assert _upscale("-i", "a.png", "-o", "a_x4.png", "--model", "bsrn-s-x4") == 0
    assert _size(tmp_path / "a_x4.png") == (80, 80)
    (tmp_path / "mine").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        resolve_checkpoint("mine")
    (tmp_path / "bsrn-x2").write_bytes(b"not a checkpoint")  # a file is a checkpoint, whatever its name
    assert resolve_checkpoint("bsrn-x2") == Path("bsrn-x2")


def test_export_into_a_folder_named_like_the_model(tmp_path, monkeypatch, capsys):
    from bsrn_edge.apps.export_cli import main as export

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bsrn-s-x4").mkdir()  # as a first run leaves it: every re-run must still resolve the name
    assert export(["--ckpt", "bsrn-s-x4", "--out", "bsrn-s-x4", "--no-engine", "-q"]) == 0
    assert (tmp_path / "bsrn-s-x4" / "bsrn-s-x4.onnx").is_file()
    capsys.readouterr()
    assert export(["--ckpt", "bsrn-s-x4", "--out", "bsrn-s-x4", "--no-engine", "-q"]) == 2
    assert "already exist" in capsys.readouterr().err  # refused for the outputs, not for the name


def test_a_rejected_export_creates_no_folder(tmp_path, capsys):
    from bsrn_edge.apps.export_cli import main as export

    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    for ckpt in ("no-such-model", str(tmp_path / "missing.pth"), str(tmp_path / "broken.pth")):
        out = tmp_path / "new" / "out"
        assert export(["--ckpt", ckpt, "--out", str(out), "--no-engine", "-q"]) == 2, ckpt
        assert not (tmp_path / "new").exists(), ckpt
    with pytest.raises(SystemExit) as exc:
        export(["--ckpt", "bsrn-s-x4", "--out", str(tmp_path / "new"), "--max-batch", "0"])
    assert exc.value.code == 2 and not (tmp_path / "new").exists()


# -- write errors ----------------------------------------------------------------------------
class _FakeOs:
    """Stands in for the ``os`` module inside one module; everything not overridden is the real one."""

    def __getattr__(self, name: str):
        return getattr(os, name)


class _FailingOs(_FakeOs):
    """``open`` (creating a temporary file) or ``replace`` (moving a written temporary file into place)
    fails with ``code`` for outputs whose name is in ``names`` (all when None)."""

    def __init__(self, code: int, where: str, names: set[str] | None, folder: Path | None = None):
        self.code, self.where, self.names, self.folder = code, where, names, folder

    def _hit(self, where: str, path) -> bool:
        from bsrn_edge.imageio.atomic import _PARTIAL

        m = _PARTIAL.match(Path(path).name)
        return (where == self.where and m is not None and (self.names is None or m.group("name") in self.names)
                and (self.folder is None or Path(path).parent == self.folder))

    def open(self, path, flags, mode=0o777, **kw):
        if self._hit("create", path):
            raise OSError(self.code, os.strerror(self.code), str(path))
        return os.open(path, flags, mode, **kw)

    def replace(self, src, dst, **kw):
        if self._hit("rename", src):
            raise OSError(self.code, os.strerror(self.code), str(src), None, str(dst))
        return os.replace(src, dst, **kw)


class _ReadOnlyFolder(_FakeOs):
    """``access`` says ``folder`` is not writable, as ``chmod a-w`` would for a user other than root."""

    def __init__(self, folder: Path):
        self.folder = folder

    def access(self, path, mode, **kw) -> bool:
        return False if Path(path) == self.folder else os.access(path, mode, **kw)


def fail_writes(monkeypatch, code: int, where: str, names: set[str] | None = None, read_only: Path | None = None,
                folder: Path | None = None):
    """Make atomic writes fail with errno ``code`` (into ``folder`` only, when given); with ``read_only``, that folder
    also reads as not writable."""
    import bsrn_edge.apps.batch as cli
    import bsrn_edge.imageio.atomic as imageio

    monkeypatch.setattr(imageio, "os", _FailingOs(code, where, names, folder))
    if read_only is not None:
        monkeypatch.setattr(cli, "os", _ReadOnlyFolder(read_only))


@pytest.fixture
def batch(tmp_path, lr_images):
    """Four small real images a.png … d.png and an existing, empty output folder."""
    src, dst = tmp_path / "in", tmp_path / "out"
    for k, name in enumerate("abcd"):
        _save(lr_images[k][:20, :20], src / f"{name}.png")
    dst.mkdir()
    return src, dst


@pytest.mark.parametrize("code, where", [(errno.ENOSPC, "rename"), (errno.EROFS, "create")])
def test_full_or_read_only_disk_stops_with_a_summary(batch, onnx_path, monkeypatch, capsys, code, where):
    src, dst = batch
    fail_writes(monkeypatch, code, where)
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert "stopped:" in err and "0 written, 1 failed, 0 skipped (already done), 3 not attempted" in err
    assert os.strerror(code) in err and "Traceback" not in err
    assert list(dst.iterdir()) == []  # the written-then-refused temporary file is gone too


def test_read_only_output_folder_stops(batch, onnx_path, monkeypatch, capsys):
    src, dst = batch
    fail_writes(monkeypatch, errno.EACCES, "create", read_only=dst)
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert "not writable" in err and "0 written, 1 failed, 0 skipped (already done), 3 not attempted" in err
    assert list(dst.iterdir()) == []


def test_a_read_only_subfolder_fails_its_files_only(tmp_path, lr_images, onnx_path, monkeypatch, capsys):
    """In a tree, an output subfolder that is not writable fails its own files (without running them after the
    first) and the other folders' files are written: the batch does not stop."""
    src, dst = tmp_path / "in", tmp_path / "out"
    for k, name in enumerate(["a/1.png", "a/2.png", "b/3.png", "b/4.png", "c/5.png"]):
        _save(lr_images[k][:20, :20], src / name)
    (dst / "b").mkdir(parents=True)
    fail_writes(monkeypatch, errno.EACCES, "create", read_only=dst / "b", folder=dst / "b")
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert "3 written, 2 failed, 0 skipped (already done)" in err and "stopped" not in err
    assert err.count(f"{dst / 'b'}: the output folder is not writable") == 2  # 3.png tried, 4.png refused unrun
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png")) == ["a/1.png", "a/2.png", "c/5.png"]
    assert not _leftovers(dst / "b")


def test_a_read_only_folder_stops_the_batch_only_when_all_that_is_left_goes_there(tmp_path, monkeypatch):
    import bsrn_edge.apps.batch as cli

    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    monkeypatch.setattr(cli, "os", _ReadOnlyFolder(out / "b"))
    msg, stop = cli.write_failure(OSError(errno.EACCES, os.strerror(errno.EACCES)), out / "b" / "3.png")
    folder_stop = cli.folder_stop
    assert stop is not None and "not writable" in stop and str(out / "b") in msg
    assert folder_stop(stop, out / "b" / "3.png", [out / "b" / "4.png"]) == stop
    assert folder_stop(stop, out / "b" / "3.png", []) == stop
    assert folder_stop(stop, out / "b" / "3.png", [out / "b" / "4.png", out / "c" / "5.png"]) is None
    assert folder_stop(stop, out / "b" / "3.png", [out / "b" / "x" / "6.png"]) is None
    full = f"{out}: disk full; no later file could be written"
    assert folder_stop(full, out / "b" / "3.png", [out / "c" / "5.png"]) == full  # a full disk stops everything
    assert folder_stop(None, out / "b" / "3.png", [out / "c" / "5.png"]) is None


def test_a_file_level_error_fails_that_file_only(batch, onnx_path, monkeypatch, capsys):
    src, dst = batch
    fail_writes(monkeypatch, errno.EACCES, "rename", names={"b.png"})  # the folder itself stays writable
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path) == 1
    err = capsys.readouterr().err
    assert "b.png" in err and "3 written, 1 failed, 0 skipped (already done)" in err and "stopped" not in err
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "c.png", "d.png"]


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_taking_an_output_name(batch, onnx_path, capsys, force):
    src, dst = batch
    (dst / "c.png").mkdir()
    assert _upscale("-i", src, "-o", dst, "--model", onnx_path, *(["--force"] if force else [])) == 1
    err = capsys.readouterr().err
    assert "c.png: a folder has the output's name" in err and "3 written, 1 failed, 0 skipped (already done)" in err
    assert (dst / "c.png").is_dir() and not _leftovers(dst)
    assert all(_size(dst / f"{n}.png") == (80, 80) for n in "abd")


# -- resume ----------------------------------------------------------------------------------
def test_resume_after_sigkill(tmp_path, onnx_path, lr_images):
    src, dst, clean = tmp_path / "in", tmp_path / "out", tmp_path / "clean"
    names = [f"{k}.png" for k in range(6)]
    for name, img in zip(names, lr_images + [lr_images[0][:48, :40]]):
        _save(img, src / name)
    cmd = [sys.executable, "-m", "bsrn_edge.apps.upscale", "-i", str(src), "-o", str(dst), "--model", str(onnx_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (dst.is_dir() and any(p.name in names for p in dst.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first output"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = [p.name for p in dst.iterdir() if p.name in names]
    assert proc.returncode == -signal.SIGKILL and 0 < len(done) < 6, done
    (dst / ".5.png.zz99yy88.part.png").write_bytes(b"half an image")  # what a kill inside a write leaves
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{6 - len(done)} written, 0 failed, {len(done)} skipped (already done)" in again.stderr
    assert sorted(p.name for p in dst.iterdir()) == names  # nothing .part left, nothing else
    assert _upscale("-i", src, "-o", clean, "--model", onnx_path) == 0
    from bsrn_edge.imageio import read_rgb

    for name in names:
        np.testing.assert_array_equal(read_rgb(dst / name), read_rgb(clean / name), err_msg=name)


# -- file modes ------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, onnx_path, lr_images, umask, mode):
    from bsrn_edge.imageio import write_atomic

    _save(lr_images[1][:20, :20], tmp_path / "a.png")
    old = os.umask(umask)
    try:
        rc = _upscale("-i", tmp_path / "a.png", "-o", tmp_path / "a_x4.png", "--model", onnx_path)
        write_atomic(tmp_path / "m.manifest.json", b"{}")  # the ONNX, manifest and engine writer
    finally:
        os.umask(old)
    assert rc == 0
    assert (tmp_path / "a_x4.png").stat().st_mode & 0o777 == mode
    assert (tmp_path / "m.manifest.json").stat().st_mode & 0o777 == mode


# -- usage errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [["--overlap", "-5"], ["--batch", "0"], ["--tile", "abc"], ["--tile", "-3"],
                                   ["--format", "bmp"], ["-s", "0"], ["--max-pixels", "0"]])
def test_bad_arguments_exit_2_before_touching_files(tmp_path, onnx_path, lr_images, capsys, extra):
    src = _save(lr_images[1][:20, :20], tmp_path / "in" / "a.png")
    before = src.read_bytes()
    with pytest.raises(SystemExit) as exc:
        _upscale("-i", src.parent, "-o", tmp_path / "out", "--model", onnx_path, *extra)
    assert exc.value.code == 2 and extra[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and src.read_bytes() == before


def test_tile_below_the_model_minimum_is_a_usage_error(tmp_path, onnx_path, lr_images, capsys):
    src = _save(lr_images[1][:20, :20], tmp_path / "in" / "a.png")
    assert _upscale("-i", src.parent, "-o", tmp_path / "out", "--model", onnx_path, "--tile", "7") == 2
    assert "--tile 7" in capsys.readouterr().err  # BSRN-S needs 15 LR pixels a side (ESA)
    assert not (tmp_path / "out").exists()


def test_a_nan_model_writes_nothing_and_exits_1(tmp_path, lr_images, capsys, nan_checkpoint):
    """A checkpoint with a NaN weight: no black image, an error naming the model and the input size."""
    ckpt = nan_checkpoint
    src = _save(lr_images[1][:20, :24], tmp_path / "in" / "a.png")
    rc = _upscale("-i", str(src), "-o", str(tmp_path / "out"), "--model", str(ckpt), "--device", "cpu")
    err = capsys.readouterr().err
    assert rc == 1
    assert "bsrn-s-x4" in err and "20×24" in err and "NaN" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("fmt,magic", [("jpg", b"\xff\xd8\xff"), ("webp", b"RIFF")])
def test_jpeg_and_webp_outputs(tmp_path, onnx_path, lr_images, fmt, magic):
    """--format jpg / webp write real files of that format, 4× the input, close to the PNG output."""
    from PIL import Image

    src = _save(lr_images[1][:20, :24], tmp_path / "in" / "a.png")
    assert _upscale("-i", str(src), "-o", str(tmp_path / "png"), "--model", str(onnx_path)) == 0
    assert _upscale("-i", str(src), "-o", str(tmp_path / fmt), "--model", str(onnx_path), "--format", fmt) == 0
    out = tmp_path / fmt / f"a.{fmt}"
    assert out.read_bytes()[:4].startswith(magic)
    with Image.open(out) as im, Image.open(tmp_path / "png" / "a.png") as ref:
        got, want = np.asarray(im.convert("RGB")), np.asarray(ref.convert("RGB"))
    assert got.shape == want.shape == (80, 96, 3)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4  # lossy, but the same image
