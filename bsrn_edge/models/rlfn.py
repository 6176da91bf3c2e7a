"""RLFN, the NTIRE 2022 Efficient SR runtime-track winner (team04, Kong et al., CVPRW 2022).

Written from the layer names of the challenge checkpoint ``team04_rlfn.pth`` (the "cut" entry:
46 feature channels, 48 inside each block, ESA with 16 channels and a single low-resolution conv).

Structure: 3×3 ``fea_conv`` → 4 RLFBs in a chain → ``LR_conv`` 3×3 + ``fea_conv`` output →
``upsampler`` (3×3 conv → PixelShuffle). An RLFB is three 3×3 conv + LeakyReLU(0.05) layers
(C→M→M→C) with a shortcut over all three, then a 1×1 ``c5`` and the light ESA.

Like RFDN, the challenge checkpoint was trained on RGB in [0, 255] (the challenge's test script feeds
it that range; fed [0, 1] it scores 25.5 dB on Set5 instead of 32.1). :class:`RLFN` takes RGB in
[0, 1]: ``forward`` multiplies by ``input_range`` and divides the output by it, with no extra submodule.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .family import Family, KeyTest
from .rfdn import ESA, pixelshuffle_scale

__all__ = ["RLFB", "RLFN", "read_config", "FAMILY"]


class RLFB(nn.Module):
    """Residual local feature block: three 3×3 convs with one shortcut, a 1×1 conv, light ESA."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int, negative_slope: float = 0.05):
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels, esa_channels, light=True)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.c1_r(x))
        h = self.act(self.c2_r(h))
        h = self.act(self.c3_r(h))
        return self.esa(self.c5(h + x))


class RLFN(nn.Module):
    """RLFN: N×3×H×W RGB in [0, 1] → N×3×sH×sW RGB in [0, 1] (the [0, 255] scaling is internal)."""

    def __init__(
        self,
        channels: int = 46,
        mid_channels: int = 48,
        blocks: int = 4,
        esa_channels: int = 16,
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
            setattr(self, f"B{i}", RLFB(channels, mid_channels, esa_channels, negative_slope))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x * self.input_range)
        h = fea
        for i in range(1, self.blocks + 1):
            h = getattr(self, f"B{i}")(h)
        return self.upsampler(self.LR_conv(h) + fea) / self.input_range


def read_config(sd: Mapping[str, torch.Tensor]) -> dict[str, object] | None:
    """RLFN hyper-parameters from the shapes of a state dict with RLFN's names; None when they do not fit."""
    fea = sd["fea_conv.weight"]
    if fea.dim() != 4 or fea.shape[1] != 3:
        return None
    blocks = 0
    while f"B{blocks + 1}.c1_r.weight" in sd:
        blocks += 1
    scale = pixelshuffle_scale(sd["upsampler.0.weight"])
    if scale is None:
        return None
    return {
        "channels": int(fea.shape[0]),
        "mid_channels": int(sd["B1.c1_r.weight"].shape[0]),
        "blocks": blocks,
        "esa_channels": int(sd["B1.esa.conv1.weight"].shape[0]),
        "scale": scale,
    }


# RFDN's layout without distillation ("B1.c1_d"), the ESA max-pool branch or the trunk fusion "c.0": RLFN's
# names are a subset of RFDN's, so the absence of those tells the two apart.
FAMILY = Family(
    "RLFN", "rlfn", "RLFN",
    KeyTest(("fea_conv.weight", "B1.c1_r.weight", "B1.c2_r.weight", "B1.c3_r.weight", "B1.c5.weight",
             "B1.esa.conv1.weight", "B1.esa.conv_f.weight", "B1.esa.conv2.weight", "B1.esa.conv3.weight",
             "B1.esa.conv4.weight", "LR_conv.weight", "upsampler.0.weight"),
            none_of=("B1.c1_d.weight", "B1.esa.conv_max.weight", "c.0.weight")),
    read_config, RLFN, min_size=15, probe=("fea_conv.weight", "upsampler.0.weight"))
