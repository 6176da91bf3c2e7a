"""RFDN, the NTIRE 2022 Efficient SR baseline (Liu et al., AIM 2020 winner), and its plain-conv ESA.

Written from the layer names of the challenge checkpoint ``rfdn_baseline.pth``.

Structure: 3×3 ``fea_conv`` → 4 RFDBs in a chain → concat of the 4 block outputs → ``c`` (1×1 conv +
LeakyReLU) → ``LR_conv`` 3×3 + ``fea_conv`` output → ``upsampler`` (3×3 conv → PixelShuffle).
An RFDB has three stages, each a 1×1 "distilled" conv and a 3×3 "refined" conv with a shortcut, a last
3×3 conv, a 1×1 fusion ``c5`` and ESA; it has no block-level residual. LeakyReLU slope 0.05 throughout.

The challenge checkpoint was trained on RGB in [0, 255]. :class:`RFDN` takes RGB in [0, 1] like every
model in this package: ``forward`` multiplies the input by ``input_range`` and divides the output by it
(plain arithmetic, no extra submodule, so the state-dict keys are the checkpoint's).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .family import Family, KeyTest

__all__ = ["ESA", "RFDB", "RFDN", "read_config", "FAMILY", "pixelshuffle_scale"]


class ESA(nn.Module):
    """Enhanced spatial attention with plain convolutions (RFDN, RLFN).

    ``conv1`` (1×1, C→f) → ``conv2`` (3×3, stride 2, no padding) → max-pool 7/3 → the low-resolution
    branch → bilinear resize to the input size → + ``conv_f`` (1×1) of the ``conv1`` output →
    ``conv4`` (1×1, f→C) → sigmoid → multiply with the input. The low-resolution branch is
    ``conv_max`` → ReLU → ``conv3`` → ReLU → ``conv3_`` in RFDN (``light=False``) and ``conv3`` alone
    in RLFN (``light=True``). Needs an input of at least 15×15.
    """

    def __init__(self, channels: int, f: int, *, light: bool = False):
        super().__init__()
        self.light = light
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        if not light:
            self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        if not light:
            self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
            self.relu = nn.ReLU()
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv1(x)
        v = F.max_pool2d(self.conv2(u), kernel_size=7, stride=3)
        if self.light:
            v = self.conv3(v)
        else:
            v = self.relu(self.conv_max(v))
            v = self.relu(self.conv3(v))
            v = self.conv3_(v)
        v = F.interpolate(v, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(v + self.conv_f(u)))


class RFDB(nn.Module):
    """Residual feature distillation block (no block-level residual, as in the original)."""

    def __init__(self, channels: int, esa_channels: int, negative_slope: float = 0.05):
        super().__init__()
        d = channels // 2
        for i in (1, 2, 3):
            setattr(self, f"c{i}_d", nn.Conv2d(channels, d, 1))
            setattr(self, f"c{i}_r", nn.Conv2d(channels, channels, 3, padding=1))
        self.c4 = nn.Conv2d(channels, d, 3, padding=1)
        self.act = nn.LeakyReLU(negative_slope)
        self.c5 = nn.Conv2d(4 * d, channels, 1)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        r = x
        for i in (1, 2, 3):
            parts.append(self.act(getattr(self, f"c{i}_d")(r)))
            r = self.act(getattr(self, f"c{i}_r")(r) + r)
        parts.append(self.act(self.c4(r)))
        return self.esa(self.c5(torch.cat(parts, dim=1)))


class RFDN(nn.Module):
    """RFDN: N×3×H×W RGB in [0, 1] → N×3×sH×sW RGB in [0, 1] (the [0, 255] scaling is internal)."""

    def __init__(
        self,
        channels: int = 50,
        blocks: int = 4,
        esa_channels: int = 12,
        scale: int = 4,
        input_range: float = 255.0,
        negative_slope: float = 0.05,
    ):
        super().__init__()
        self.scale = scale
        self.blocks = blocks
        self.input_range = float(input_range)
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        for i in range(1, blocks + 1):
            setattr(self, f"B{i}", RFDB(channels, esa_channels, negative_slope))
        self.c = nn.Sequential(nn.Conv2d(channels * blocks, channels, 1), nn.LeakyReLU(negative_slope))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x * self.input_range)
        outs = []
        h = fea
        for i in range(1, self.blocks + 1):
            h = getattr(self, f"B{i}")(h)
            outs.append(h)
        lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(lr) / self.input_range


def pixelshuffle_scale(up_weight: torch.Tensor) -> int | None:
    """The scale ``s`` of a conv feeding PixelShuffle from its 3·s² output rows; None if not of that form."""
    rows = up_weight.shape[0]
    scale = round((rows / 3) ** 0.5)
    return scale if scale >= 1 and 3 * scale * scale == rows else None


def read_config(sd: Mapping[str, torch.Tensor]) -> dict[str, object] | None:
    """RFDN hyper-parameters from the shapes of a state dict with RFDN's names; None when they do not fit."""
    fea = sd["fea_conv.weight"]
    if fea.dim() != 4 or fea.shape[1] != 3:
        return None
    channels = int(fea.shape[0])
    blocks = 0
    while f"B{blocks + 1}.c5.weight" in sd:
        blocks += 1
    scale = pixelshuffle_scale(sd["upsampler.0.weight"])
    if blocks == 0 or scale is None or sd["c.0.weight"].shape[1] != channels * blocks:
        return None
    return {
        "channels": channels,
        "blocks": blocks,
        "esa_channels": int(sd["B1.esa.conv1.weight"].shape[0]),
        "scale": scale,
    }


# Plain convs (no ".pw"), distilled "c*_d" convs, the ESA max-pool branch and the trunk fusion "c.0"; ESA
# needs 15 px, as BSRN's.
FAMILY = Family(
    "RFDN", "rfdn", "RFDN",
    KeyTest(("fea_conv.weight", "B1.c1_d.weight", "B1.c1_r.weight", "B1.c4.weight", "B1.c5.weight",
             "B1.esa.conv1.weight", "B1.esa.conv_max.weight", "B1.esa.conv3_.weight", "c.0.weight",
             "LR_conv.weight", "upsampler.0.weight")),
    read_config, RFDN, min_size=15, probe=("fea_conv.weight", "c.0.weight", "upsampler.0.weight"))
