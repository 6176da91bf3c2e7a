"""Fidelity metrics as the paper and the NTIRE challenge compute them (numpy only).

Inputs are H×W×3 RGB ``uint8`` arrays (the model output already clamped and rounded).
"""

from __future__ import annotations

import numpy as np

from .pixels import quantize  # the paper's clamp-and-round, kept importable from here

__all__ = ["rgb_to_y", "psnr", "psnr_y", "psnr_rgb", "ssim_y", "quantize"]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0–255 scale: 16 + (65.481 R + 128.553 G + 24.966 B) / 255, float64."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {a.shape}")
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    return a[border:-border, border:-border] if border > 0 else a


def _check_pair(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"image shapes differ: {sr.shape} vs {hr.shape}")


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two arrays on the same scale; inf when identical."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR on the Y channel with ``border`` pixels cropped on each side (paper convention)."""
    _check_pair(sr, hr)
    return psnr(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """PSNR over RGB with a ``border``-pixel crop (NTIRE convention: 4)."""
    _check_pair(sr, hr)
    return psnr(_crop(np.asarray(sr, np.float64), border), _crop(np.asarray(hr, np.float64), border))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D filtering keeping only fully covered positions."""
    k = g.size
    rows = np.lib.stride_tricks.sliding_window_view(a, k, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM on Y (11×11 Gaussian window, σ 1.5, valid region), ``border`` cropped first."""
    _check_pair(sr, hr)
    x = _crop(rgb_to_y(sr), border)
    y = _crop(rgb_to_y(hr), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_window()
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())
