"""Fidelity evaluation of any upscaling function on LR/HR pairs (torch-free).

An *upscale function* maps float32 N×3×H×W RGB in [0, 1] to N×3×sH×sW; the PyTorch model, an ONNX
Runtime session and the tiling runtime are all wrapped into that shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .datasets import Pair, find_pairs
from .imageio import read_rgb
from .metrics import psnr_rgb, psnr_y, ssim_y
from .pixels import from_nchw, to_nchw

__all__ = ["UpscaleFn", "ImageScore", "Scores", "evaluate", "to_nchw", "from_nchw", "torch_upscale_fn"]

UpscaleFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float


@dataclass
class Scores:
    """Per-image scores and their means (PSNR averaged in dB, as the paper does)."""

    images: list[ImageScore] = field(default_factory=list)

    def mean(self, attr: str) -> float:
        return float(np.mean([getattr(s, attr) for s in self.images])) if self.images else float("nan")

    @property
    def psnr_y(self) -> float:
        return self.mean("psnr_y")

    @property
    def ssim_y(self) -> float:
        return self.mean("ssim_y")

    @property
    def psnr_rgb(self) -> float:
        return self.mean("psnr_rgb")


def evaluate(
    fn: UpscaleFn,
    pairs: Sequence[Pair] | str | Path,
    scale: int,
    *,
    ssim: bool = True,
    progress: Callable[[Iterable[Pair]], Iterable[Pair]] | None = None,
) -> Scores:
    """Upscale each LR image with ``fn`` and score it against HR (Y PSNR/SSIM border=scale, RGB PSNR border 4)."""
    if isinstance(pairs, (str, Path)):
        pairs = find_pairs(pairs, scale)
    scores = Scores()
    it: Iterable[Pair] = progress(pairs) if progress else pairs
    for pair in it:
        lr, hr = read_rgb(pair.lr), read_rgb(pair.hr)
        sr = from_nchw(fn(to_nchw(lr)))
        if sr.shape != hr.shape:
            raise ValueError(f"{pair.lr}: output {sr.shape} does not match HR {hr.shape} at ×{scale}")
        scores.images.append(
            ImageScore(
                pair.name,
                psnr_y(sr, hr, scale),
                ssim_y(sr, hr, scale) if ssim else float("nan"),
                psnr_rgb(sr, hr, 4),
            )
        )
    return scores


def torch_upscale_fn(model, device: str = "cpu", dtype=None) -> UpscaleFn:  # type: ignore[no-untyped-def]
    """Wrap a torch module as an :data:`UpscaleFn` (imports torch)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
            if dtype is not None:
                t = t.to(dtype)
            return model(t).float().cpu().numpy()

    return run
