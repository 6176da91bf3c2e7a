"""IMDN, the NTIRE 2022 Efficient SR baseline (Hui et al., ACM MM 2019; AIM 2019 simplified form).

Written from the layer names of the challenge checkpoint ``imdn_baseline.pth``. The module tree is
nested the way the checkpoint is (``model.0`` head conv, ``model.1.sub.<i>`` blocks then the trunk
conv inside a residual wrapper, ``model.2`` upsampling conv, ``model.3`` pixel shuffle), so the keys
load strictly.

Structure: head 3×3 conv → [8 × IMDB → 3×3 conv] + head output → 3×3 conv (C → 3·s²) → PixelShuffle.
Each IMDB splits off a quarter of the channels after each of three 3×3 conv + LeakyReLU stages, runs a
last 3×3 conv on the remainder, concatenates the four distilled parts and fuses them with a 1×1 conv,
plus the block input. No channel attention, no clamp, input and output RGB in [0, 1].
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .family import Family, KeyTest

__all__ = ["IMDBlock", "IMDN", "read_config", "FAMILY"]


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=True)


class IMDBlock(nn.Module):
    """Information multi-distillation block: three split stages, a last conv, 1×1 fusion, residual."""

    def __init__(self, channels: int, negative_slope: float = 0.05):
        super().__init__()
        self.distilled = channels // 4
        self.remaining = channels - self.distilled
        self.conv1 = nn.Sequential(_conv3(channels, channels), nn.LeakyReLU(negative_slope))
        self.conv2 = nn.Sequential(_conv3(self.remaining, channels), nn.LeakyReLU(negative_slope))
        self.conv3 = nn.Sequential(_conv3(self.remaining, channels), nn.LeakyReLU(negative_slope))
        self.conv4 = _conv3(self.remaining, self.distilled)
        self.conv1x1 = nn.Conv2d(4 * self.distilled, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        r = x
        for stage in (self.conv1, self.conv2, self.conv3):
            d, r = torch.split(stage(r), [self.distilled, self.remaining], dim=1)
            parts.append(d)
        parts.append(self.conv4(r))
        return x + self.conv1x1(torch.cat(parts, dim=1))


class _Residual(nn.Module):
    """``x + sub(x)``; the attribute is named ``sub`` to match the checkpoint's keys."""

    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class IMDN(nn.Module):
    """IMDN: N×3×H×W RGB in [0, 1] → N×3×sH×sW RGB in [0, 1] (not clamped)."""

    def __init__(self, channels: int = 64, blocks: int = 8, scale: int = 4, negative_slope: float = 0.05):
        super().__init__()
        self.scale = scale
        trunk: list[nn.Module] = [IMDBlock(channels, negative_slope) for _ in range(blocks)]
        trunk.append(_conv3(channels, channels))
        self.model = nn.Sequential(
            _conv3(3, channels),
            _Residual(nn.Sequential(*trunk)),
            _conv3(channels, 3 * scale * scale),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def read_config(sd: Mapping[str, torch.Tensor]) -> dict[str, object] | None:
    """IMDN hyper-parameters from the shapes of a state dict with IMDN's names; None when they do not fit."""
    head = sd["model.0.weight"]
    if head.dim() != 4 or head.shape[1] != 3:
        return None
    channels = int(head.shape[0])
    blocks = 0
    while f"model.1.sub.{blocks}.conv1.0.weight" in sd:
        blocks += 1
    if f"model.1.sub.{blocks}.weight" not in sd:  # the trunk's closing conv
        return None
    if sd["model.1.sub.0.conv4.weight"].shape[0] != channels // 4:
        return None
    up_rows = sd["model.2.weight"].shape[0]
    scale = round((up_rows / 3) ** 0.5)
    if scale < 1 or 3 * scale * scale != up_rows:
        return None
    return {"channels": channels, "blocks": blocks, "scale": scale}


# Sequential "model.N" with information multi-distillation blocks under "model.1.sub.N"; 3×3 convs with
# padding only, so any size runs.
FAMILY = Family(
    "IMDN", "imdn", "IMDN",
    KeyTest(("model.0.weight", "model.1.sub.0.conv1.0.weight", "model.1.sub.0.conv2.0.weight",
             "model.1.sub.0.conv3.0.weight", "model.1.sub.0.conv4.weight", "model.1.sub.0.conv1x1.weight",
             "model.2.weight")),
    read_config, IMDN, min_size=1, probe=("model.0.weight", "model.1.sub.0.conv4.weight", "model.2.weight"))
