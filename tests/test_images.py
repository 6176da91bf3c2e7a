"""bsrn_edge.imageio: every format, bit depth and channel layout read and written on real images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from bsrn_edge._lazy import available
from bsrn_edge.errors import InputError, MissingDependencyError
from bsrn_edge.imageio import Picture, holds_alpha, output_format, png16, read_image, write_image

MAKE, DATETIME, DATETIME_ORIGINAL, ORIENTATION = 0x010F, 0x0132, 0x9003, 0x0112


# -- real test content -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb8(lr_images) -> np.ndarray:
    """A real 8-bit RGB photograph, not square (so a rotation shows): 60 high, 88 wide."""
    return np.ascontiguousarray(lr_images[0][10:70, 20:108])


@pytest.fixture(scope="module")
def rgb16(set5_dir) -> np.ndarray:
    """Real 16-bit RGB: a Set5 HR image shrunk in float32 (bicubic) and scaled to 0..65535, 60×88."""
    hr = np.asarray(Image.open(sorted(set5_dir.glob("*_HR.png"))[2]).convert("RGB"))
    planes = [np.asarray(Image.fromarray(hr[:, :, k].astype(np.float32)).resize((88, 60), Image.BICUBIC))
              for k in range(3)]
    out = np.clip(np.rint(np.stack(planes, axis=2) * (65535 / 255)), 0, 65535).astype(np.uint16)
    assert np.count_nonzero(out % 257) > out.size // 2  # genuinely 16-bit, not 8-bit values scaled up
    return out


def _alpha(rgb: np.ndarray) -> np.ndarray:
    """An alpha plane from the image's own green channel, with some fully transparent pixels."""
    a = rgb[:, :, 1].copy()
    a[:8, :8] = 0
    return a


def _layout(rgb: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return np.ascontiguousarray(rgb[:, :, 0])
    return rgb if channels == 3 else np.dstack([rgb, _alpha(rgb)])


@pytest.fixture(scope="module")
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "TestCam"
    exif[DATETIME] = "2024:05:06 07:08:09"
    exif.get_ifd(0x8769)[DATETIME_ORIGINAL] = "2024:05:06 07:08:00"
    return exif.tobytes()


def _tags(exif: bytes | None) -> Image.Exif:
    out = Image.Exif()
    if exif:
        out.load(exif)
    return out


# -- names -----------------------------------------------------------------------------------
def test_output_format_names_and_alpha():
    assert [output_format(e) for e in ("png", "jpg", "jpeg", "webp", "tif", "tiff", ".TIF")] == [
        "PNG", "JPEG", "JPEG", "WEBP", "TIFF", "TIFF", "TIFF"]
    with pytest.raises(InputError, match="png, tif, webp"):
        output_format("bmp")
    assert not holds_alpha("JPEG") and all(holds_alpha(f) for f in ("PNG", "WEBP", "TIFF"))


# -- TIFF ------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiff_round_trip(tmp_path, rgb8, rgb16, depth, channels, srgb_icc):
    tifffile = pytest.importorskip("tifffile")
    src = _layout(rgb8 if depth == 8 else rgb16, channels)
    write_image(src, tmp_path / "a.tif", "TIFF", icc=srgb_icc)
    pic = read_image(tmp_path / "a.tif")
    assert pic.format == "TIFF" and pic.pixels.dtype == src.dtype
    np.testing.assert_array_equal(pic.pixels, src)
    assert pic.icc == srgb_icc
    with tifffile.TiffFile(tmp_path / "a.tif") as tf:
        page = tf.pages[0]
        assert page.bitspersample == depth
        assert int(page.compression) == 8  # deflate: no extra codec needed to read it back
        assert [int(e) for e in page.extrasamples] == ([2] if channels == 4 else [])  # 2 = unassociated alpha


def test_tiff_applies_orientation_reads_first_page_and_keeps_exif_tags(tmp_path, rgb8, rgb16):
    tifffile = pytest.importorskip("tifffile")
    tags = [(274, "H", 1, 6, True), (MAKE, "s", 0, "TestCam", True)]  # 6: rotate 90° clockwise to display
    tifffile.imwrite(tmp_path / "pages.tif", rgb16, photometric="rgb", extratags=tags)
    with tifffile.TiffWriter(tmp_path / "pages.tif", append=True) as tw:
        tw.write(rgb16[::-1], photometric="rgb")  # a second page, which is not read
    pic = read_image(tmp_path / "pages.tif")
    np.testing.assert_array_equal(pic.pixels, np.rot90(rgb16, -1))
    assert _tags(pic.exif).get(ORIENTATION) == 1 and _tags(pic.exif).get(MAKE) == "TestCam"
    write_image(rgb8, tmp_path / "out.tif", "TIFF", exif=_exif(8))
    with tifffile.TiffFile(tmp_path / "out.tif") as tf:
        page = tf.pages[0]
        assert page.tags[MAKE].value == "TestCam" and page.tags[DATETIME].value == "2024:05:06 07:08:09"
        assert 274 not in page.tags  # no orientation written: the pixels are stored as shown
    np.testing.assert_array_equal(read_image(tmp_path / "out.tif").pixels, rgb8)


def test_tiff_from_other_writers(tmp_path, rgb8):
    """LZW and PackBits (Pillow's encoder), planar RGB, min-is-white and premultiplied alpha."""
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("imagecodecs")
    Image.fromarray(rgb8).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    Image.fromarray(rgb8).save(tmp_path / "packbits.tif", compression="packbits")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb8, 2, 0), photometric="rgb", planarconfig="separate")
    for name in ("lzw.tif", "packbits.tif", "planar.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / name).pixels, rgb8, err_msg=name)
    grey = rgb8[:, :, 0]
    tifffile.imwrite(tmp_path / "white.tif", 255 - grey, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "white.tif").pixels, grey)
    alpha = np.full(grey.shape, 51, np.uint8)  # 20 % opaque
    premultiplied = np.rint(rgb8 * (51 / 255)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "assoc.tif", np.dstack([premultiplied, alpha]), photometric="rgb",
                     extrasamples=["assocalpha"])
    got = read_image(tmp_path / "assoc.tif").pixels
    assert got.shape == (60, 88, 4) and np.all(got[:, :, 3] == 51)
    assert np.abs(got[:, :, :3].astype(int) - rgb8).max() <= 3  # straight colour back, to the rounding of 51 levels


def test_lzw_tiff_without_imagecodecs_names_the_extra(tmp_path, rgb8):
    pytest.importorskip("tifffile")
    Image.fromarray(rgb8).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    code = ("import sys; sys.modules['imagecodecs'] = None\n"  # as if imagecodecs were not installed
            "from pathlib import Path\n"
            "from bsrn_edge.errors import InputError\n"
            "from bsrn_edge.imageio import read_image\n"
            "try:\n"
            f"    read_image(Path({str(tmp_path / 'lzw.tif')!r}))\n"
            "except InputError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lzw.tif" in out.stdout and "LZW" in out.stdout and "bsrn-edge[formats]" in out.stdout


def test_corrupt_tiff_is_an_input_error_naming_the_file(tmp_path, rgb16):
    pytest.importorskip("tifffile")
    write_image(rgb16, tmp_path / "good.tif", "TIFF")
    data = (tmp_path / "good.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    for name in ("cut.tif", "junk.tif"):
        with pytest.raises(InputError, match=name):
            read_image(tmp_path / name)


def test_tiff_without_tifffile(tmp_path, rgb8, monkeypatch):
    """Without the extra, 8-bit TIFFs are still read (Pillow), and writing one names the extra."""
    Image.fromarray(rgb8).save(tmp_path / "plain.tif")
    monkeypatch.setitem(sys.modules, "tifffile", None)
    pic = read_image(tmp_path / "plain.tif")
    assert pic.format == "TIFF"
    np.testing.assert_array_equal(pic.pixels, rgb8)
    with pytest.raises(MissingDependencyError, match="tifffile"):
        write_image(rgb8, tmp_path / "out.tif", "TIFF")
    assert list(tmp_path.iterdir()) == [tmp_path / "plain.tif"]


# -- 16-bit PNG ------------------------------------------------------------------------------
@pytest.fixture(params=["imagecodecs", "pypng"])
def codec(request, monkeypatch) -> str:
    """Run the test with each 16-bit PNG codec: imagecodecs (skipped if absent) and the pypng/zlib fallback."""
    if request.param == "imagecodecs":
        pytest.importorskip("imagecodecs")
    else:
        monkeypatch.setattr(png16, "_imagecodecs", lambda: None)
    assert png16.png16_codec() == request.param
    return request.param


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png16_round_trip_keeps_icc_and_exif(tmp_path, rgb16, channels, codec, srgb_icc):
    src = _layout(rgb16, channels)
    write_image(src, tmp_path / "deep.png", "PNG", icc=srgb_icc, exif=_exif(3))
    pic = read_image(tmp_path / "deep.png")
    assert pic.format == "PNG" and pic.pixels.dtype == np.uint16
    np.testing.assert_array_equal(pic.pixels, src)  # stored upright: orientation 3 was reset to 1
    assert pic.icc == srgb_icc
    tags = _tags(pic.exif)
    assert tags[ORIENTATION] == 1 and tags[MAKE] == "TestCam" and tags.get_ifd(0x8769)[DATETIME_ORIGINAL]
    with Image.open(tmp_path / "deep.png") as im:  # another reader sees the same chunks
        assert im.info["icc_profile"] == srgb_icc and im.getexif()[MAKE] == "TestCam"


def test_png16_files_cross_between_codecs(tmp_path, rgb16, monkeypatch):
    pytest.importorskip("imagecodecs")
    rgba = _layout(rgb16, 4)
    write_image(rgba, tmp_path / "libpng.png", "PNG")
    monkeypatch.setattr(png16, "_imagecodecs", lambda: None)
    write_image(rgba, tmp_path / "fallback.png", "PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "libpng.png").pixels, rgba)  # pypng reads libpng's file
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(tmp_path / "fallback.png").pixels, rgba)  # and the other way round


def test_png16_orientation_and_grey_alpha(tmp_path, rgb16, codec):
    """A 16-bit PNG's eXIf orientation is applied; 16-bit grey + alpha comes back as RGBA."""
    (tmp_path / "turned.png").write_bytes(png16.encode_png16(rgb16, None, _exif(6)))
    np.testing.assert_array_equal(read_image(tmp_path / "turned.png").pixels, np.rot90(rgb16, -1))
    ga = np.dstack([rgb16[:, :, 1], _alpha(rgb16)])
    (tmp_path / "ga.png").write_bytes(png16.encode_png16(ga))
    got = read_image(tmp_path / "ga.png").pixels
    np.testing.assert_array_equal(got, np.dstack([np.repeat(ga[:, :, :1], 3, axis=2), ga[:, :, 1:]]))


def test_corrupt_png16_names_the_file(tmp_path, rgb16, codec):
    data = png16.encode_png16(rgb16)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


# -- 8-bit formats ---------------------------------------------------------------------------
def test_webp_lossless_is_exact_and_lossy_is_not(tmp_path, rgb8):
    rgba = _layout(rgb8, 4)
    write_image(rgba, tmp_path / "exact.webp", "WEBP", lossless=True)
    pic = read_image(tmp_path / "exact.webp")
    assert pic.format == "WEBP" and pic.exif is None and pic.icc is None
    np.testing.assert_array_equal(pic.pixels, rgba)  # colour under transparent pixels included
    write_image(rgba, tmp_path / "lossy.webp", "WEBP", quality=80)
    assert not np.array_equal(read_image(tmp_path / "lossy.webp").pixels, rgba)


def test_16_bit_to_8_bit_format_keeps_the_high_byte(tmp_path, rgb16):
    write_image(rgb16, tmp_path / "high.webp", "WEBP", lossless=True)
    np.testing.assert_array_equal(read_image(tmp_path / "high.webp").pixels, (rgb16 >> 8).astype(np.uint8))


def test_jpeg_orientation_applied_and_reset_other_exif_kept(tmp_path, rgb8, srgb_icc):
    Image.fromarray(rgb8).save(tmp_path / "cam.jpg", exif=_exif(6), icc_profile=srgb_icc, quality=95)
    pic = read_image(tmp_path / "cam.jpg")
    with Image.open(tmp_path / "cam.jpg") as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert pic.pixels.shape == (88, 60, 3)  # turned: 88 high, 60 wide
    np.testing.assert_array_equal(pic.pixels, want)
    assert pic.icc == srgb_icc and pic.format == "JPEG"
    assert _tags(pic.exif)[ORIENTATION] == 1 and _tags(pic.exif)[MAKE] == "TestCam"  # applied, so reset
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
        write_image(pic.pixels, tmp_path / f"out.{ext}", fmt, icc=pic.icc, exif=pic.exif)
        with Image.open(tmp_path / f"out.{ext}") as im:
            tags = im.getexif()
            assert im.size == (60, 88), fmt
            assert tags[ORIENTATION] == 1 and tags[MAKE] == "TestCam" and tags[DATETIME] == "2024:05:06 07:08:09", fmt
            assert tags.get_ifd(0x8769)[DATETIME_ORIGINAL] == "2024:05:06 07:08:00", fmt
            assert im.info.get("icc_profile") == srgb_icc, fmt
        assert read_image(tmp_path / f"out.{ext}").pixels.shape == (88, 60, 3), fmt  # not turned a second time


def test_exif_orientation_is_reset_on_write(tmp_path, rgb8):
    """Pixels are written as shown, so an EXIF still saying "rotate" is corrected, not copied."""
    write_image(rgb8, tmp_path / "o.jpg", "JPEG", exif=_exif(6))
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.getexif()[ORIENTATION] == 1 and im.getexif()[MAKE] == "TestCam"


def test_palette_transparency_and_grey(tmp_path, rgb8):
    pal = Image.fromarray(rgb8).quantize(16)
    pal.save(tmp_path / "pal.png", transparency=0)
    got = read_image(tmp_path / "pal.png").pixels
    assert got.shape == (60, 88, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[:, :, 3] == 0, np.asarray(pal) == 0)
    np.testing.assert_array_equal(got[:, :, :3], np.asarray(pal.convert("RGB")))
    write_image(rgb8[:, :, 0], tmp_path / "grey.png", "PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png").pixels, rgb8[:, :, 0])


# -- refusals --------------------------------------------------------------------------------
def test_bomb_limit_names_the_flag(tmp_path, rgb8, rgb16):
    Image.fromarray(rgb8).save(tmp_path / "big.png")
    (tmp_path / "big16.png").write_bytes(png16.encode_png16(rgb16))
    files = ["big.png", "big16.png"]
    if available("tifffile"):
        write_image(rgb16, tmp_path / "big.tif", "TIFF")
        files.append("big.tif")
    for name in files:
        with pytest.raises(InputError, match=r"--max-pixels N") as err:
            read_image(tmp_path / name, max_pixels=60 * 88 - 1)
        assert name in str(err.value) and "88×60" in str(err.value)
        assert read_image(tmp_path / name, max_pixels=60 * 88).pixels.shape[:2] == (60, 88)


def test_a_raised_limit_beats_pillows_own(tmp_path, rgb8, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 5,280 px
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", max_pixels=10_000).pixels, rgb8)


def test_empty_and_corrupt_files(tmp_path, rgb8):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty.png: the file is empty"):
        read_image(tmp_path / "empty.png")
    Image.fromarray(rgb8).save(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:200])
    with pytest.raises(InputError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_write_refusals(tmp_path, rgb8):
    with pytest.raises(InputError, match="no lossless mode"):
        write_image(rgb8, tmp_path / "a.jpg", "JPEG", lossless=True)
    with pytest.raises(InputError, match="16383"):
        write_image(np.tile(rgb8[:2], (1, 187, 1)), tmp_path / "wide.webp", "WEBP")  # 16,456 px wide
    with pytest.raises(InputError, match="uint8 or uint16"):
        write_image(rgb8.astype(np.float32), tmp_path / "f.png", "PNG")
    with pytest.raises(InputError, match="BMP"):
        write_image(rgb8, tmp_path / "a.bmp", "BMP")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, rgb8, monkeypatch):
    """An encoder failing half-way (disk full) leaves the old file and removes its temporary."""
    dest = tmp_path / "keep.png"
    dest.write_bytes(b"old")

    def half_then_full(fh):  # the writers get a file object on the temporary
        fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **kw: half_then_full(fp))
    with pytest.raises(OSError, match="No space"):
        write_image(rgb8, dest, "PNG")
    if available("tifffile"):
        import tifffile

        monkeypatch.setattr(tifffile, "imwrite", lambda file, data, **kw: half_then_full(file))
        with pytest.raises(OSError, match="No space"):
            write_image(rgb8, dest, "TIFF")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_picture_is_frozen(rgb8):
    pic = Picture(rgb8, None, None, "PNG")
    with pytest.raises(AttributeError):
        pic.format = "JPEG"  # type: ignore[misc]
