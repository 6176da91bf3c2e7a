"""bsrn-upscale in the vocabulary users bring from Real-ESRGAN and realesrgan-ncnn-vulkan: every flag of
issue 15 (-s, -t 0, -m/-n, --fp32/--fp16, -f/--ext, --suffix, -g, --memory-mb, --max-pixels), existing
outputs skipped with exit 0, and an image with alpha asked for as JPEG written as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ort, needs_torch
from conftest import run_upscale as _upscale
from conftest import save_image as _save

pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture and runs the bundled default model


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _parse(*args: str):  # type: ignore[no-untyped-def]
    from bsrn_edge.apps.upscale.parser import build_parser

    return build_parser().parse_args(["-i", "x.png", "-o", "out", *args])


def test_help_names_every_flag_users_bring(capsys):
    from bsrn_edge.apps.upscale.parser import build_parser

    text = build_parser().format_help()
    for flag in ("-s S, --outscale S", "-t TILE, --tile TILE", "-m MODEL, --model MODEL, -n MODEL", "--fp32", "--fp16",
                 "-f EXT, --ext EXT", "--suffix", "-g DEVICE, --device DEVICE", "--memory-mb MB", "--max-pixels N",
                 "--lossless", "--force"):
        assert flag in text, flag
    assert "Lanczos" in text and "0 for no tiling" in text and "-1: the CPU" in text


def test_outscale_resamples_the_network_output(tmp_path, onnx_path, lr_images):
    """-s 2 with a ×4 model: the ×4 output resampled (Lanczos) to twice the input; -s 3.5 rounds down as
    Real-ESRGAN does; -s 4 is the network's own output."""
    from bsrn_edge.pixels import resize

    src = _save(lr_images[0][:30, :41], tmp_path / "in" / "a.png")
    for s in ("4", "2", "3.5"):
        assert _upscale("-i", src, "-o", tmp_path / f"s{s.replace('.', '_')}", "-m", onnx_path, "-s", s) == 0
    x4 = _read(tmp_path / "s4" / "a.png")
    assert x4.shape == (120, 164, 3)
    np.testing.assert_array_equal(_read(tmp_path / "s2" / "a.png"), resize(x4, 60, 82))
    assert _read(tmp_path / "s3_5" / "a.png").shape == (105, 143, 3)


def test_tile_zero_means_no_tiling(tmp_path, onnx_path, lr_images):
    src = _save(lr_images[0][:60, :70], tmp_path / "in" / "a.png")
    assert _parse("-t", "0").tile is None and _parse("--tile", "none").tile is None and _parse().tile == "auto"
    assert _upscale("-i", src, "-o", tmp_path / "zero", "-m", onnx_path, "-t", "0") == 0
    assert _upscale("-i", src, "-o", tmp_path / "small", "-m", onnx_path, "-t", "21") == 0
    whole = _read(tmp_path / "zero" / "a.png")
    assert not np.array_equal(whole, _read(tmp_path / "small" / "a.png"))  # 21-pixel tiles do change pixels
    from bsrn_edge.runtime import Upscaler

    np.testing.assert_array_equal(whole, Upscaler(onnx_path, tile=None).upscale(lr_images[0][:60, :70]))


def test_default_model_is_the_bundled_bsrn_s(tmp_path, lr_images, capsys):
    src = _save(lr_images[2][:20, :24], tmp_path / "in" / "a.png")
    assert _parse().model == "bsrn-s-x4" and _parse("-n", "bsrn-x2").model == "bsrn-x2"
    assert _upscale("-i", src, "-o", tmp_path / "default", "-g", "cpu") == 0
    assert "bsrn-s-x4 ×4" in capsys.readouterr().err
    assert _upscale("-i", src, "-o", tmp_path / "named", "-n", "bsrn-s-x4", "-g", "cpu") == 0
    np.testing.assert_array_equal(_read(tmp_path / "default" / "a.png"), _read(tmp_path / "named" / "a.png"))


def test_fp32_and_fp16_pick_sibling_artifacts(tmp_path, bsrn_s_export, lr_images, capsys):
    onnx = bsrn_s_export.files["onnx"]
    assert Path(bsrn_s_export.files["fp16_onnx"]).is_file()  # both siblings exist
    src = _save(lr_images[2][:20, :24], tmp_path / "in" / "a.png")
    assert _upscale("-i", src, "-o", tmp_path / "h", "-m", onnx, "--fp16") == 0
    assert "onnxruntime-cpu-fp16" in capsys.readouterr().err
    assert _upscale("-i", src, "-o", tmp_path / "f", "-m", bsrn_s_export.files["fp16_onnx"], "--fp32") == 0
    err = capsys.readouterr().err
    assert "onnxruntime-cpu " in err or "onnxruntime-cpu\n" in err
    with pytest.raises(SystemExit) as exc:
        _parse("--fp32", "--fp16")
    assert exc.value.code == 2


def test_ext_and_suffix_name_outputs_as_real_esrgan_does(tmp_path, onnx_path, lr_images):
    src = tmp_path / "in"
    _save(lr_images[1][:20, :24], src / "photo.png")
    _save(lr_images[2][:20, :24], src / "shot.bmp")
    assert _upscale("-i", src, "-o", tmp_path / "o1", "-m", onnx_path, "--suffix", "out") == 0
    assert sorted(p.name for p in (tmp_path / "o1").iterdir()) == ["photo_out.png", "shot_out.png"]
    assert _upscale("-i", src, "-o", tmp_path / "o2", "-m", onnx_path, "-f", "jpg") == 0
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["photo.jpg", "shot.jpg"]
    assert (tmp_path / "o2" / "photo.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert _upscale("-i", src, "-o", tmp_path / "o3", "-m", onnx_path, "--ext", "webp", "--suffix", "x4") == 0
    assert sorted(p.name for p in (tmp_path / "o3").iterdir()) == ["photo_x4.webp", "shot_x4.webp"]
    assert _parse("--format", "jpeg").ext == "jpg" and _parse("-f", "auto").ext is None
    for bad in (["-f", "bmp"], ["--suffix", "a/b"]):
        with pytest.raises(SystemExit):
            _parse(*bad)


def test_device_takes_real_esrgan_gpu_ids():
    assert _parse("-g", "0").device == "cuda:0" and _parse("-g", "1").device == "cuda:1"
    assert _parse("-g", "-1").device == "cpu" and _parse("--device", "cuda").device == "cuda"
    assert _parse().device == "auto"
    with pytest.raises(SystemExit):
        _parse("-g", "gpu0")


def test_memory_budget_reaches_the_upscaler(onnx_path):
    from bsrn_edge.apps.upscale.run import open_upscaler

    small = open_upscaler(_parse("-m", str(onnx_path), "--memory-mb", "64"))
    large = open_upscaler(_parse("-m", str(onnx_path)))
    assert small.memory_mb == 64 and large.memory_mb == 768
    assert small.tile_for(500, 500) is not None and large.tile_for(500, 500) is None
    with pytest.raises(SystemExit):
        _parse("--memory-mb", "10")


def test_max_pixels_raises_or_lowers_the_bomb_limit(tmp_path, onnx_path, lr_images, capsys):
    src = _save(lr_images[1][:20, :24], tmp_path / "in" / "a.png")  # 480 pixels
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "--max-pixels", "400") == 1
    assert "--max-pixels" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.png").exists()
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "--max-pixels", "480") == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_finished_folder_is_skipped_with_exit_0(tmp_path, onnx_path, lr_images, capsys):
    src = tmp_path / "in"
    for k in range(2):
        _save(lr_images[k][:20, :24], src / f"{k}.png")
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path) == 0
    capsys.readouterr()
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path) == 0
    assert "0 written, 0 failed, 2 skipped (already done)" in capsys.readouterr().err


def test_alpha_asked_for_as_jpeg_is_written_as_png(tmp_path, onnx_path, lr_images, capsys):
    rgba = np.dstack([lr_images[1][:20, :24], np.full((20, 24), 180, np.uint8)])
    src = tmp_path / "in"
    _save(rgba, src / "logo.png")
    _save(lr_images[2][:20, :24], src / "photo.png")
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg") == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["logo.png", "photo.jpg"]
    assert "logo.png has transparency" in err and "logo.png (PNG)" in err and err.count("transparency") == 1
    out = _read(tmp_path / "out" / "logo.png")
    assert out.shape == (80, 96, 4) and int(np.abs(out[..., 3].astype(int) - 180).max()) <= 1
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg") == 0  # resumes: both done
    assert "2 skipped" in capsys.readouterr().err


def test_opaque_alpha_asked_for_as_jpeg_stays_jpeg(tmp_path, onnx_path, lr_images, capsys):
    """A screenshot-style RGBA whose alpha is 255 everywhere hides nothing: -f jpg gives a JPEG, no notice."""
    rgba = np.dstack([lr_images[1][:20, :24], np.full((20, 24), 255, np.uint8)])
    src = _save(rgba, tmp_path / "in" / "shot.png")
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shot.jpg"]
    assert "transparency" not in capsys.readouterr().err
    assert _read(tmp_path / "out" / "shot.jpg").shape == (80, 96, 3)


def test_alpha_fallback_never_takes_an_inputs_name(tmp_path, onnx_path, lr_images):
    """Written into the input folder, logo.png's JPEG output would fall back to logo.png: the input itself."""
    rgba = np.dstack([lr_images[1][:20, :24], np.full((20, 24), 99, np.uint8)])
    src = _save(rgba, tmp_path / "in" / "logo.png")
    before = src.read_bytes()
    assert _upscale("-i", src.parent, "-o", src.parent, "-m", onnx_path, "-f", "jpg", "--suffix", "") == 0
    assert src.read_bytes() == before
    assert sorted(p.name for p in src.parent.iterdir()) == ["logo.jpg.png", "logo.png"]


def test_lossless_webp_keeps_every_pixel(tmp_path, onnx_path, lr_images):
    src = _save(lr_images[3][:20, :24], tmp_path / "in" / "a.png")
    assert _upscale("-i", src, "-o", tmp_path / "png", "-m", onnx_path) == 0
    assert _upscale("-i", src, "-o", tmp_path / "webp", "-m", onnx_path, "-f", "webp", "--lossless") == 0
    assert _upscale("-i", src, "-o", tmp_path / "lossy", "-m", onnx_path, "-f", "webp") == 0
    png = _read(tmp_path / "png" / "a.png")
    np.testing.assert_array_equal(_read(tmp_path / "webp" / "a.webp"), png)
    assert not np.array_equal(_read(tmp_path / "lossy" / "a.webp"), png)


def test_lossless_with_jpeg_is_a_usage_error(tmp_path, onnx_path, lr_images, capsys):
    src = _save(lr_images[3][:20, :24], tmp_path / "in" / "a.png")
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg", "--lossless") == 2
    assert "--lossless applies to WebP" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sixteen_bit_tiff_in_and_out(tmp_path, onnx_path, lr_images):
    """A 16-bit RGBA TIFF comes out a 16-bit RGBA TIFF (the input's own format), 4× the size, its colour
    within rounding of the 8-bit path's and its alpha kept."""
    tifffile = pytest.importorskip("tifffile")
    rgb = lr_images[1][:20, :24].astype(np.uint16) * 257
    rgba = np.dstack([rgb, np.full((20, 24), 40000, np.uint16)])
    src = tmp_path / "in" / "deep.tif"
    src.parent.mkdir()
    tifffile.imwrite(src, rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert _upscale("-i", src, "-o", tmp_path / "out", "-m", onnx_path) == 0
    out = tifffile.imread(tmp_path / "out" / "deep.tif")
    assert out.dtype == np.uint16 and out.shape == (80, 96, 4)
    assert int(np.abs(out[..., 3].astype(int) - 40000).max()) <= 300
    assert _upscale("-i", lr_images and _save(lr_images[1][:20, :24], tmp_path / "in8" / "deep.png"), "-o",
                    tmp_path / "out8", "-m", onnx_path) == 0
    eight = _read(tmp_path / "out8" / "deep.png").astype(int)
    assert np.abs((out[..., :3].astype(int) / 257.0) - eight).max() <= 1.5


def test_an_unrelated_png_beside_a_jpeg_output_is_not_taken_for_it(tmp_path, onnx_path, lr_images):
    """photo.png (RGB) → -f jpg: an old out/photo.png from another run must not make photo.jpg count as done."""
    src = _save(lr_images[2][:20, :24], tmp_path / "in" / "photo.png")
    _save(lr_images[0][:8, :8], tmp_path / "out" / "photo.png")
    assert _upscale("-i", src.parent, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg") == 0
    assert _read(tmp_path / "out" / "photo.jpg").shape == (80, 96, 3)


def test_tiff_without_the_formats_extra(tmp_path, onnx_path, lr_images, monkeypatch, capsys):
    """Without tifffile a .tif input (read by Pillow) comes out as PNG by default; -f tif exits 3 up front."""
    import sys

    src = tmp_path / "in" / "scan.tif"
    _save(lr_images[2][:20, :24], src)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile now fails
    assert _upscale("-i", src.parent, "-o", tmp_path / "out", "-m", onnx_path) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan.png"]
    assert _upscale("-i", src.parent, "-o", tmp_path / "tif", "-m", onnx_path, "-f", "tif") == 3
    assert "bsrn-edge[formats]" in capsys.readouterr().err and not (tmp_path / "tif").exists()


def test_a_killed_runs_temporary_png_is_removed(tmp_path, onnx_path, lr_images):
    from bsrn_edge.imageio import partial_path

    rgba = np.dstack([lr_images[1][:20, :24], np.full((20, 24), 120, np.uint8)])
    src = _save(rgba, tmp_path / "in" / "logo.png")
    left = partial_path(tmp_path / "out" / "logo.png", "ab12cd34")
    left.parent.mkdir()
    left.write_bytes(b"half a png")
    assert _upscale("-i", src.parent, "-o", tmp_path / "out", "-m", onnx_path, "-f", "jpg") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["logo.png"]


def test_outscale_keeps_alpha_grey_and_sixteen_bits(lr_images):
    """-s after the network works on every layout Upscaler returns (the resample is per plane)."""
    from bsrn_edge.pixels import outscale_size, resize

    rgb = lr_images[0][:30, :40]
    for img in (np.dstack([rgb, np.full((30, 40), 77, np.uint8)]), rgb[..., 0], rgb.astype(np.uint16) * 257):
        h, w = outscale_size(30, 40, 1.5)
        out = resize(img, h, w)
        assert out.shape == (45, 60, *img.shape[2:]) and out.dtype == img.dtype
    alpha = resize(np.dstack([rgb, np.full((30, 40), 77, np.uint8)]), 45, 60)[..., 3]
    assert int(np.abs(alpha.astype(int) - 77).max()) == 0  # a flat plane stays flat
    deep = resize(rgb.astype(np.uint16) * 257, 45, 60)
    assert np.abs(deep / 257.0 - resize(rgb, 45, 60)).max() <= 1.0  # 16 bits: the same picture, finer steps
