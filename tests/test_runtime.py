"""The torch-free runtime on ONNX Runtime (CPU): layouts, padding, tiling, frames, threads and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_ort, needs_torch, threaded

pytestmark = [needs_ort, needs_torch]  # torch only builds the ONNX fixture; the runtime never imports it

from bsrn_edge.errors import InputError  # noqa: E402
from bsrn_edge.metrics import psnr  # noqa: E402
from bsrn_edge.runtime import Upscaler  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


@pytest.fixture(scope="module")
def up(onnx_path):
    return Upscaler(onnx_path)


_BLOCKED = ("torch", "av", "ray", "tqdm", "PIL", "tifffile", "imagecodecs", "png")


def test_import_and_run_without_torch_or_application_dependencies(tmp_path, onnx_path, lr_images):
    """The runtime imports and runs (whole images, tiles with a progress callback, frames, a stream) with torch,
    PyAV, Ray, tqdm and every image-file library made unimportable; it loads no application code either."""
    for name in _BLOCKED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    np.save(tmp_path / "img.npy", lr_images[1][:48, :64])
    code = (
        "import sys, numpy as np\n"
        "from bsrn_edge.runtime import Upscaler\n"
        f"img = np.load({str(tmp_path / 'img.npy')!r})\n"
        f"u = Upscaler({str(onnx_path)!r})\n"
        "out = u.upscale(img)\n"
        "assert out.shape == (img.shape[0]*4, img.shape[1]*4, 3) and out.dtype == np.uint8\n"
        "seen = []\n"
        f"tiled = Upscaler({str(onnx_path)!r}, tile=21, overlap=4).upscale(img, progress=lambda d, t: seen.append((d, t)))\n"
        "assert seen and seen[-1][0] == seen[-1][1] > 1 and tiled.shape == out.shape\n"
        "frame = np.ascontiguousarray(img)\n"
        "into = u.upscale_into(frame, np.empty_like(out))\n"
        "assert (next(iter(u.stream([frame]))) == into).all()\n"
        f"blocked = [m for m in {_BLOCKED!r} if m in sys.modules]\n"
        "apps = [m for m in sys.modules if m.startswith(('bsrn_edge.apps', 'bsrn_edge.imageio', 'bsrn_edge.export'))]\n"
        "assert not blocked and not apps, (blocked, apps)\n"
        "print('ok', u.backend_name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok onnxruntime-cpu" in proc.stdout


def test_auto_backend_reports_onnxruntime(up):
    assert up.backend_name == "onnxruntime-cpu" and up.scale == 4


def _session_reference(onnx_path, rgb: np.ndarray) -> np.ndarray:
    """A second implementation of the whole-image path: a plain ONNX Runtime session (no Upscaler),
    float32 H×W×3 in [0, 1] in, float32 H×sW×3 out."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0][0].transpose(1, 2, 0)


def test_layouts_and_dtypes(up, onnx_path, lr_images):
    """Every layout and dtype against values computed here from a plain ONNX Runtime session."""
    img = lr_images[1][:40, :36]
    ref = _session_reference(onnx_path, img / 255.0)
    rgb = up.upscale(img)
    assert rgb.shape == (160, 144, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - np.clip(np.rint(ref * 255), 0, 255)).max() <= 1
    grey_in = img[..., 0]
    grey_ref = _session_reference(onnx_path, np.repeat(grey_in[..., None], 3, axis=2) / 255.0).mean(axis=2)
    grey = up.upscale(grey_in)
    assert grey.shape == (160, 144) and grey.dtype == np.uint8
    assert np.abs(grey.astype(int) - np.clip(np.rint(grey_ref * 255), 0, 255)).max() <= 1
    np.testing.assert_array_equal(up.upscale(grey_in[..., None])[..., 0], grey)
    u16 = up.upscale(img.astype(np.uint16) * 257)
    assert u16.dtype == np.uint16
    assert np.abs(u16.astype(np.int64) - np.clip(np.rint(ref * 65535), 0, 65535)).max() <= 2
    f32 = up.upscale(img.astype(np.float32) / 255)
    assert f32.dtype == np.float32 and np.abs(f32 - np.clip(ref, 0, 1)).max() <= 1e-4


def test_alpha_is_upscaled_separately(up, lr_images):
    img = lr_images[1][:40, :40]
    alpha = np.zeros((40, 40), np.uint8)
    alpha[:, 20:] = 255
    rgba = np.dstack([img, alpha])
    out = up.upscale(rgba)
    assert out.shape == (160, 160, 4)
    np.testing.assert_array_equal(out[..., :3], up.upscale(img))  # colour unaffected by alpha: no dark fringe
    assert out[:, :70, 3].max() <= 10 and out[:, 90:, 3].min() >= 245


def test_small_inputs_are_padded_and_cropped(up, onnx_path, lr_images):
    """A 9×5 image: mirror-padded to the 15-pixel minimum by hand here, run whole, cropped back."""
    tiny = lr_images[0][:9, :5]
    out = up.upscale(tiny)
    assert out.shape == (36, 20, 3)
    padded = np.pad(tiny, ((0, 6), (0, 5), (0, 0)), mode="symmetric")  # 15×10: one mirror for rows
    padded = np.pad(padded, ((0, 0), (0, 5), (0, 0)), mode="symmetric")  # 15×15: a second for columns
    ref = _session_reference(onnx_path, padded / 255.0)[:36, :20]
    assert np.abs(out.astype(int) - np.clip(np.rint(ref * 255), 0, 255)).max() <= 1


def test_bad_input_is_rejected(up):
    with pytest.raises(InputError, match="uint8, uint16 or float32"):
        up.upscale(np.zeros((20, 20, 3), np.int32))
    with pytest.raises(InputError, match="H×W"):
        up.upscale(np.zeros((20, 20, 2), np.uint8))


def test_tiling_matches_whole_image_on_a_real_image(onnx_path, lr_images):
    img = lr_images[0]  # 128×128 LR
    whole = Upscaler(onnx_path, tile=None).upscale(img)
    tiled = Upscaler(onnx_path, tile=60, overlap=16, batch=2).upscale(img)
    assert psnr(tiled, whole) >= 45.0


def test_upscale_into_and_stream_reuse_buffers(up, lr_images):
    frame = np.ascontiguousarray(lr_images[0][:32, :48])
    out = np.empty((128, 192, 3), np.uint8)
    up.upscale_into(frame, out)
    np.testing.assert_array_equal(out, up.upscale(frame))
    outs = list(up.stream([frame, frame]))
    assert outs[0] is outs[1]  # one reused buffer
    with pytest.raises(InputError, match="out must be"):
        up.upscale_into(frame, np.empty((10, 10, 3), np.uint8))


def test_shape_sessions_agree_with_the_dynamic_session_and_stay_bounded(onnx_path, lr_images):
    from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    dynamic = OnnxRuntimeBackend(onnx_path, shape_sessions=0)
    shaped = OnnxRuntimeBackend(onnx_path, shape_sessions=2)
    crops = [lr_images[0][:40, :56], lr_images[1][:33, :21], lr_images[2][:40, :56], lr_images[3][:17, :64]]
    for img in crops:
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255
        want = dynamic.infer(x)
        got = shaped.infer(x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5
        out = np.empty_like(want)
        shaped.infer_into(x, out)
        np.testing.assert_array_equal(out, got)
    assert dynamic._shaped is None  # shape_sessions=0: the one dynamic session only
    assert shaped._shaped.shapes() == [(1, 3, 40, 56), (1, 3, 17, 64)]  # least recently used dropped first
    assert Upscaler(shaped).backend is shaped  # an open backend can be handed to Upscaler


def test_threads_share_one_upscaler(up, lr_images):
    frames = [np.ascontiguousarray(lr_images[i % 5][:24, :32]) for i in range(20)]
    expected = [up.upscale(f) for f in frames]

    def worker(k: int) -> list[np.ndarray]:
        buf = np.empty((96, 128, 3), np.uint8)
        return [up.upscale_into(f, buf).copy() for f in frames]

    for results in threaded(worker):
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


# -- bsrn-upscale ----------------------------------------------------------------------------
def _cli(*args: str):
    from bsrn_edge.apps.upscale import main

    return main(list(args))


def test_cli_folder_with_a_corrupt_file(tmp_path, onnx_path, lr_images, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(lr_images[1][:30, :30]).save(src / "a.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # truncated/corrupt
    (src / "c.jpg").write_bytes(b"")  # empty
    dst = tmp_path / "out"
    rc = _cli("-i", str(src), "-o", str(dst), "--model", str(onnx_path))
    err = capsys.readouterr().err
    assert rc == 1
    assert "b.png" in err and "c.jpg" in err and "1 written, 2 failed" in err
    assert sorted(p.name for p in dst.iterdir()) == ["a.png"]  # no partial or temporary files
    assert Image.open(dst / "a.png").size == (120, 120)


def test_cli_never_overwrites_inputs(tmp_path, onnx_path, lr_images, capsys):
    from PIL import Image

    f = tmp_path / "x.png"
    Image.fromarray(lr_images[1][:20, :20]).save(f)
    before = f.read_bytes()
    assert _cli("-i", str(f), "-o", str(f), "--model", str(onnx_path), "--force") == 2  # found before any work
    assert f.read_bytes() == before
    assert "refusing to overwrite" in capsys.readouterr().err


def test_cli_exif_orientation_icc_and_16_bit(tmp_path, onnx_path, lr_images):
    from PIL import Image

    img = Image.fromarray(lr_images[1][:20, :30])  # 30 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    icc = b"fake-icc-profile-bytes"
    img.save(tmp_path / "r.jpg", exif=exif, icc_profile=icc, quality=95)
    assert _cli("-i", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "r_out.png"), "--model", str(onnx_path)) == 0
    out = Image.open(tmp_path / "r_out.png")
    assert out.size == (80, 120)  # rotated: 20 wide, 30 high, ×4
    assert out.info.get("icc_profile") == icc
    g16 = Image.fromarray((lr_images[1][:20, :20, 1].astype(np.uint16) * 257))
    g16.save(tmp_path / "g16.png")
    assert _cli("-i", str(tmp_path / "g16.png"), "-o", str(tmp_path / "g16_out.png"), "--model", str(onnx_path)) == 0
    assert np.asarray(Image.open(tmp_path / "g16_out.png")).dtype in (np.uint16, np.int32)
    assert Image.open(tmp_path / "g16_out.png").mode.startswith("I")


def test_cli_keeps_16_bit_colour_png_and_its_icc(tmp_path, onnx_path, lr_images):
    from bsrn_edge.imageio.png16 import encode_png16, read_png16

    src = (lr_images[1][:20, :24].astype(np.uint16) * 257) + 3  # values an 8-bit round trip would lose
    icc = b"icc-profile-for-16-bit"
    (tmp_path / "c16.png").write_bytes(encode_png16(src, icc))
    np.testing.assert_array_equal(read_png16(tmp_path / "c16.png"), src)
    assert _cli("-i", str(tmp_path / "c16.png"), "-o", str(tmp_path / "c16_out.png"), "--model", str(onnx_path)) == 0
    out = read_png16(tmp_path / "c16_out.png")
    assert out.dtype == np.uint16 and out.shape == (80, 96, 3)
    assert np.any(out % 257 != 0)  # genuinely 16-bit values, not an 8-bit image scaled up
    from PIL import Image

    assert Image.open(tmp_path / "c16_out.png").info.get("icc_profile") == icc


def test_exif_orientations_match_pillow():
    from PIL import Image, ImageOps

    from bsrn_edge.imageio.png16 import apply_orientation

    a = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    for tag in range(1, 9):
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = tag
        im.info["exif"] = exif.tobytes()
        want = np.asarray(ImageOps.exif_transpose(im))
        np.testing.assert_array_equal(apply_orientation(a, tag), want, err_msg=f"orientation {tag}")


def test_cli_refuses_a_decompression_bomb(tmp_path, onnx_path, lr_images, monkeypatch, capsys):
    from PIL import Image

    import bsrn_edge.apps.upscale.parser as cli_mod

    Image.fromarray(lr_images[0][:40, :40]).save(tmp_path / "bomb.png")
    monkeypatch.setattr(cli_mod, "MAX_PIXELS", 100)  # 1,600 px is then more than twice the limit
    assert _cli("-i", str(tmp_path / "bomb.png"), "-o", str(tmp_path / "out.png"), "--model", str(onnx_path)) == 1
    assert "decompression bomb" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
