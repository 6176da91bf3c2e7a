"""One object per architecture family, in spandrel's ``Architecture`` style: the tensor names that tell the
family apart, how its hyper-parameters are read from tensor shapes, its size requirements and its loader.

Our detector (:func:`bsrn_edge.checkpoint.detect_variant`) and the spandrel adapter
(:mod:`bsrn_edge.integrations.spandrel`) are both derived from these objects, so the two cannot drift
apart. This module imports no torch; the families themselves are defined at the end of each
``models/<family>.py`` and collected in :mod:`.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bsrn_edge.sizes import SizeRequirements

__all__ = ["KeyTest", "Family"]


@dataclass(frozen=True)
class KeyTest:
    """Tensor names that identify a family: every name of ``all_of``, at least one name of each group in
    ``any_of``, and none of ``none_of`` (RLFN's names are a subset of RFDN's: only the absence of RFDN's
    extra layers tells them apart)."""

    all_of: tuple[str, ...]
    any_of: tuple[tuple[str, ...], ...] = ()
    none_of: tuple[str, ...] = ()

    def __call__(self, names: Mapping[str, object]) -> bool:
        return (all(k in names for k in self.all_of) and all(any(k in names for k in g) for g in self.any_of)
                and not any(k in names for k in self.none_of))


@dataclass(frozen=True)
class Family:
    """An architecture family.

    ``id``/``name``: spandrel's names (``"BSRN"``); ``arch``: ours (``"bsrn"``, the registry's key).
    ``keys``: the name test. ``read``: hyper-parameters from the tensor shapes of a state dict that passed
    the name test (the constructor's keyword arguments), or None when the shapes do not fit. ``build``:
    the module class. ``min_size``: the smallest input side the network takes. ``probe``: the tensors
    whose shapes ``read`` depends on, named in errors when they do not fit.
    """

    id: str
    arch: str
    name: str
    keys: KeyTest
    read: Callable[[Mapping[str, Any]], dict[str, object] | None]
    build: Callable[..., Any]
    min_size: int
    probe: tuple[str, ...] = ()

    def detect(self, state_dict: Mapping[str, Any]) -> dict[str, object] | None:
        """The hyper-parameters when ``state_dict`` is this family's, by names and then shapes; else None."""
        return self.read(state_dict) if self.keys(state_dict) else None

    @property
    def sizes(self) -> SizeRequirements:
        return SizeRequirements(self.min_size)
