"""BSRN and BSRN-S in the authors' structure (key names match their checkpoints)."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .family import Family, KeyTest
from .layers import CCA, ESA, BSConvU, pointwise, pointwise_on_concat

__all__ = ["ESDB", "BSRN", "read_config", "FAMILY"]


class ESDB(nn.Module):
    """Efficient separable distillation block.

    Three distill/refine stages, a final BSConvU, a 1×1 fusion, ESA, then CCA (BSRN) or the
    learnable channel weight ``cw`` followed by ``conv_out`` (BSRN-S), plus the block residual.
    """

    def __init__(self, channels: int, *, small: bool):
        super().__init__()
        d = channels // 2
        self.small = small
        for i in (1, 2, 3):
            setattr(self, f"c{i}_d", pointwise(channels, d, linear=small))
            setattr(self, f"c{i}_r", BSConvU(channels, channels, linear=small))
        self.c4 = BSConvU(channels, d, linear=small)
        self.c5 = pointwise(2 * channels, channels, linear=small)
        self.esa = ESA(channels, linear=small)
        if small:
            self.cw = nn.Parameter(torch.ones(1, channels))
            self.conv_out = pointwise(channels, channels, linear=True)
        else:
            self.cca = CCA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        r = x
        for i in (1, 2, 3):
            distilled.append(F.gelu(getattr(self, f"c{i}_d")(r)))
            r = F.gelu(getattr(self, f"c{i}_r")(r) + r)
        distilled.append(F.gelu(self.c4(r)))
        out = self.esa(pointwise_on_concat(self.c5, distilled))
        if self.small:
            if hasattr(self, "cw"):  # the deploy form folds cw into conv_out
                out = out * self.cw.view(1, -1, 1, 1)
            out = self.conv_out(out)
        else:
            out = self.cca(out)
        return out + x


class _Upsampler(nn.Module):
    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(channels, 3 * scale * scale, 3, padding=1, bias=True), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRN(nn.Module):
    """The whole network: N×3×H×W RGB in [0, 1] → N×3×sH×sW.

    ``small=True`` gives BSRN-S (Linear 1×1 layers with bias, dense ESA conv2, ``cw`` instead of CCA).
    """

    def __init__(self, channels: int = 64, blocks: int = 8, scale: int = 4, small: bool = False):
        super().__init__()
        self.scale = scale
        self.blocks = blocks
        self.replicate = True  # the deploy form folds the 4× input replication into fea_conv
        self.fea_conv = BSConvU(12, channels, linear=small)
        for i in range(1, blocks + 1):
            setattr(self, f"B{i}", ESDB(channels, small=small))
        self.c1 = pointwise(channels * blocks, channels, linear=small)
        self.c2 = BSConvU(channels, channels, linear=small)
        self.upsampler = _Upsampler(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(torch.cat([x, x, x, x], dim=1) if self.replicate else x)
        outs = []
        h = fea
        for i in range(1, self.blocks + 1):
            h = getattr(self, f"B{i}")(h)
            outs.append(h)
        trunk = F.gelu(pointwise_on_concat(self.c1, outs))
        return self.upsampler(self.c2(trunk) + fea)


def read_config(sd: Mapping[str, torch.Tensor]) -> dict[str, object] | None:
    """BSRN hyper-parameters from the shapes of a state dict with BSRN's names; None when they do not fit."""
    pw = sd["fea_conv.pw.weight"]
    if pw.shape[1] != 12:
        return None
    blocks = 0
    while f"B{blocks + 1}.c5.weight" in sd:
        blocks += 1
    up_rows = sd["upsampler.upsampleOneStep.0.weight"].shape[0]
    scale = round((up_rows / 3) ** 0.5)
    if blocks == 0 or 3 * scale * scale != up_rows:
        return None
    return {"channels": int(pw.shape[0]), "blocks": blocks, "scale": scale, "small": pw.dim() == 2}


# Blueprint-separable convs (".pw"/".dw" pairs) are BSRN's own; CCA (BSRN) or a learnt channel weight "cw"
# (BSRN-S) closes each block. ESA needs 15 px: a 3×3 stride-2 unpadded conv then a 7×7 stride-3 max-pool.
FAMILY = Family(
    "BSRN", "bsrn", "BSRN",
    KeyTest(("fea_conv.pw.weight", "fea_conv.dw.weight", "B1.c1_d.weight", "B1.c1_r.pw.weight", "B1.c5.weight",
             "B1.esa.conv1.weight", "B1.esa.conv_max.pw.weight", "c1.weight", "c2.pw.weight",
             "upsampler.upsampleOneStep.0.weight"), any_of=(("B1.cca.conv_du.0.weight", "B1.cw"),)),
    read_config, BSRN, min_size=15, probe=("fea_conv.pw.weight", "upsampler.upsampleOneStep.0.weight"))
