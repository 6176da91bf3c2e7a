"""Fidelity metrics as the paper and the NTIRE challenge compute them (numpy only).

Inputs are H×W×3 RGB ``uint8`` arrays (the model output already clamped and rounded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pixels import quantize  # the paper's clamp-and-round, kept importable from here

__all__ = ["rgb_to_y", "psnr", "psnr_y", "psnr_rgb", "ssim_y", "quantize", "SeamStats", "seam_stats", "seam_ratio"]


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


Lines = tuple[tuple[int, ...], tuple[int, ...]]  # (rows, cols) in output pixels, e.g. TilePlan.seams


@dataclass(frozen=True)
class SeamStats:
    """Sums of |tiled − whole| in bands along tile lines and in the comparison region; add two to pool images."""

    seam_sum: float
    seam_pixels: int
    other_sum: float
    other_pixels: int

    @property
    def seam_mean(self) -> float:
        return self.seam_sum / self.seam_pixels if self.seam_pixels else float("nan")

    @property
    def other_mean(self) -> float:
        return self.other_sum / self.other_pixels if self.other_pixels else float("nan")

    @property
    def ratio(self) -> float:
        """Seam-band mean ÷ comparison mean: 1.0 means no worse at the seams; nan without seams."""
        if not self.seam_pixels or not self.other_pixels:
            return float("nan")
        if self.other_sum == 0.0:
            return 1.0 if self.seam_sum == 0.0 else float("inf")
        return self.seam_mean / self.other_mean

    def __add__(self, other: "SeamStats") -> "SeamStats":
        return SeamStats(self.seam_sum + other.seam_sum, self.seam_pixels + other.seam_pixels,
                         self.other_sum + other.other_sum, self.other_pixels + other.other_pixels)


def _distance(n: int, lines: tuple[int, ...]) -> np.ndarray:
    """Distance of each pixel centre ``i + 0.5`` to the nearest line (inf without lines)."""
    if not lines:
        return np.full(n, np.inf)
    centres = np.arange(n, dtype=np.float64) + 0.5
    return np.min(np.abs(centres[:, None] - np.asarray(lines, dtype=np.float64)[None, :]), axis=1)


def seam_stats(tiled: np.ndarray, whole: np.ndarray, lines: Lines, *, band: int = 4,
               near: tuple[int, int] | None = None) -> SeamStats:
    """|tiled − whole| (mean over channels) in ``band``-pixel bands along ``lines`` = (rows, cols), against
    the rest of the image, or with ``near=(a, b)`` only the pixels ``a``–``b`` output pixels from a line
    (a local comparison that ignores how far the image borders are).

    Images are H×W×C or H×W, typically uint8 after quantisation; ``lines`` are output-pixel lines such as
    ``TilePlan.seams`` or ``TilePlan.edges``.
    """
    if tiled.shape != whole.shape:
        raise ValueError(f"tiled {tiled.shape} and whole {whole.shape} must have the same shape")
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise ValueError(f"band must be a positive number of output pixels, got {band!r}")
    rows, cols = lines
    dist = np.minimum(_distance(tiled.shape[0], rows)[:, None], _distance(tiled.shape[1], cols)[None, :])
    in_band = dist < band / 2
    if near is None:
        other = ~in_band
    else:
        lo, hi = near
        if not 0 <= lo < hi:
            raise ValueError(f"near must be (a, b) with 0 <= a < b output pixels, got {near!r}")
        other = ~in_band & (dist >= lo) & (dist < hi)
    diff = np.abs(tiled.astype(np.float64) - whole.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    return SeamStats(float(diff[in_band].sum()), int(in_band.sum()), float(diff[other].sum()), int(other.sum()))


def seam_ratio(tiled: np.ndarray, whole: np.ndarray, lines: Lines, *, band: int = 4,
               near: tuple[int, int] | None = None) -> float:
    """Mean |tiled − whole| in ``band``-pixel bands along ``lines`` ÷ the mean elsewhere (nan without lines)."""
    return seam_stats(tiled, whole, lines, band=band, near=near).ratio
