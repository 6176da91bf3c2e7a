"""Architectures we can detect from a state dict and build (imports torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import bsrn, imdn, rfdn, rlfn

__all__ = ["ArchSpec", "ARCHS"]


@dataclass(frozen=True)
class ArchSpec:
    """How to recognise one architecture in a state dict and how to build it."""

    name: str
    detect: Callable[[dict[str, torch.Tensor]], "dict[str, object] | None"]
    build: Callable[..., nn.Module]


# Detectors are tried in this order; each requires names the others lack, so the order does not
# decide anything (tests check that no detector accepts another architecture's state dict).
ARCHS: dict[str, ArchSpec] = {
    "bsrn": ArchSpec("bsrn", bsrn.detect, bsrn.BSRN),
    "imdn": ArchSpec("imdn", imdn.detect, imdn.IMDN),
    "rfdn": ArchSpec("rfdn", rfdn.detect, rfdn.RFDN),
    "rlfn": ArchSpec("rlfn", rlfn.detect, rlfn.RLFN),
}
