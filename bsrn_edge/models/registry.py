"""Architectures we can detect from a state dict and build (imports torch): one :class:`~.family.Family` each."""

from __future__ import annotations

from . import bsrn, imdn, rfdn, rlfn
from .family import Family

__all__ = ["FAMILIES", "ARCHS"]

# Detectors are tried in this order; each requires names the others lack (RLFN: lacks names RFDN has), so
# the order does not decide anything (tests check that no family accepts another family's state dict).
FAMILIES: tuple[Family, ...] = (bsrn.FAMILY, imdn.FAMILY, rfdn.FAMILY, rlfn.FAMILY)
ARCHS: dict[str, Family] = {f.arch: f for f in FAMILIES}
