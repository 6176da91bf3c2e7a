import numpy as np
import pytest

from bsrn_edge.metrics import psnr, psnr_rgb, psnr_y, quantize, rgb_to_y, ssim_y


def test_y_formula_on_pure_colours():
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(img)[0]
    np.testing.assert_allclose(y, [16 + 65.481, 16 + 128.553, 16 + 24.966, 16.0])


def test_psnr_of_a_known_error():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a + 2  # mse 4 on every channel
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 4))
    assert psnr_rgb(a, b, border=4) == pytest.approx(10 * np.log10(255**2 / 4))
    assert psnr(a, a) == float("inf")


def test_border_is_cropped(lr_images):
    hr = lr_images[0]
    sr = hr.copy()
    sr[:4] = 0  # damage only the border
    assert psnr_y(sr, hr, border=4) == float("inf")
    assert psnr_y(sr, hr, border=3) < 40


def test_ssim_identity_and_degradation(lr_images):
    img = lr_images[1]
    assert ssim_y(img, img, 4) == pytest.approx(1.0)
    blurred = ((img.astype(np.float32) + np.roll(img, 1, 0) + np.roll(img, 1, 1)) / 3).astype(np.uint8)
    s = ssim_y(blurred, img, 4)
    assert 0.3 < s < 0.99


def test_quantize_clamps_and_rounds():
    assert quantize(np.array([-0.1, 0.5 / 255, 1.49 / 255, 2.0])).tolist() == [0, 0, 1, 255]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_y(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)), 2)
