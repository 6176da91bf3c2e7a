"""Building blocks of BSRN and BSRN-S, named so the authors' checkpoint keys load strictly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLinear", "pointwise", "SplitPointwise", "pointwise_on_concat", "BSConvU", "ESA", "CCA", "contrast"]


class ChannelLinear(nn.Linear):
    """A Linear layer applied over the channel axis of an NCHW tensor (BSRN-S's 1×1 layers).

    Weights are stored 2-D ``[out, in]`` as in the authors' checkpoints.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)


def pointwise(cin: int, cout: int, *, linear: bool, bias: bool = True) -> nn.Module:
    """A 1×1 layer: ``ChannelLinear`` (always with bias) in BSRN-S, ``Conv2d`` in BSRN."""
    if linear:
        return ChannelLinear(cin, cout, bias=True)
    return nn.Conv2d(cin, cout, 1, bias=bias)


class SplitPointwise(nn.Module):
    """A 1×1 conv over a channel concatenation, rewritten as a sum of 1×1 convs over the parts.

    ``conv(cat(parts))`` equals ``Σ conv_k(part_k)`` with ``conv_k`` the matching column block of the
    weights (the bias goes with the first part). The concatenated tensor is never materialised, and
    ONNX Runtime's NCHWc layout accumulates each partial conv into the previous one in place.
    """

    def __init__(self, conv: nn.Conv2d, sizes: list[int]):
        super().__init__()
        if conv.kernel_size != (1, 1) or conv.groups != 1 or sum(sizes) != conv.in_channels:
            raise ValueError(f"cannot split {conv} into input blocks {sizes}")
        self.parts = nn.ModuleList()
        start = 0
        for i, n in enumerate(sizes):
            part = nn.Conv2d(n, conv.out_channels, 1, bias=i == 0 and conv.bias is not None,
                             device=conv.weight.device, dtype=conv.weight.dtype)
            with torch.no_grad():
                part.weight.copy_(conv.weight[:, start:start + n])
                if part.bias is not None and conv.bias is not None:
                    part.bias.copy_(conv.bias)
            self.parts.append(part)
            start += n

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        out = self.parts[0](parts[0])
        for layer, x in zip(self.parts[1:], parts[1:]):
            out = out + layer(x)
        return out


def pointwise_on_concat(layer: nn.Module, parts: list[torch.Tensor]) -> torch.Tensor:
    """``layer(cat(parts, dim=1))``, without the concatenation when the deploy form split ``layer``."""
    if isinstance(layer, SplitPointwise):
        return layer(parts)
    return layer(torch.cat(parts, dim=1))


class BSConvU(nn.Module):
    """Blueprint separable conv: pointwise ``pw`` (C_in→C_out), then depthwise ``dw`` k×k with bias."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1, *, linear: bool = False):
        super().__init__()
        self.pw = pointwise(cin, cout, linear=linear, bias=False)
        self.dw = nn.Conv2d(cout, cout, k, stride=stride, padding=padding, groups=cout, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class ESA(nn.Module):
    """Enhanced spatial attention; ``f`` reduced channels. BSRN-S uses a dense strided ``conv2``."""

    def __init__(self, channels: int, *, linear: bool):
        super().__init__()
        f = channels // 4
        self.conv1 = pointwise(channels, f, linear=linear)
        self.conv_f = pointwise(f, f, linear=linear)
        self.conv_max = BSConvU(f, f, linear=linear)
        if linear:
            self.conv2: nn.Module = nn.Conv2d(f, f, 3, stride=2, padding=0)
        else:
            self.conv2 = BSConvU(f, f, 3, stride=2, padding=0, linear=False)
        self.conv3 = BSConvU(f, f, linear=linear)
        self.conv3_ = BSConvU(f, f, linear=linear)
        self.conv4 = pointwise(f, channels, linear=linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv1(x)
        v = F.max_pool2d(self.conv2(u), kernel_size=7, stride=3)
        v = F.gelu(self.conv_max(v))
        v = F.gelu(self.conv3(v))
        v = self.conv3_(v)
        v = F.interpolate(v, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(v + self.conv_f(u)))


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Per-channel population standard deviation over H×W, shape N×C×1×1."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()


class CCA(nn.Module):
    """Contrast-aware channel attention (BSRN only): contrast + mean → squeeze/excite → scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = contrast(x) + x.mean(dim=(2, 3), keepdim=True)
        return x * self.conv_du(y)
