"""A spandrel plugin: lets spandrel's ``ModelLoader`` load BSRN, BSRN-S, IMDN, RFDN and RLFN checkpoints.

spandrel is the model-detection library behind chaiNNer, ComfyUI and A1111. It knows none of our
architectures, so it refuses our checkpoints with ``UnsupportedModelError``. One call fixes that::

    import spandrel
    from bsrn_edge.integrations.spandrel import install

    install()  # adds BSRN, IMDN, RFDN and RLFN to spandrel.MAIN_REGISTRY
    sr = spandrel.ModelLoader().load_from_file("net_g_BSRN-S.pth")  # an ImageModelDescriptor, ×4

Why an explicit call: spandrel 0.4.2 has no plugin mechanism. Its source never looks up entry points
(no ``importlib.metadata`` / ``entry_points`` anywhere in the package), so a plugin cannot register
itself when spandrel is imported; the host application (or the user) must call :func:`install`.

How it works: spandrel picks an architecture with a cheap key test (:class:`spandrel.util.KeyCondition`
over tensor names distinctive for each family); our ``load`` then reads the hyper-parameters with
bsrn-edge's own detectors (the family's ``detect`` / ``detect_variant``), builds the module with
``build_model`` and loads it strictly, so a near-miss state dict fails with a message naming the
missing, unexpected or misshapen tensors. Nothing here unpickles code: spandrel reads files with its
restricted unpickler or safetensors, and hands us tensors only.

Every module takes and returns RGB in [0, 1] (RFDN and RLFN rescale to [0, 255] inside), as spandrel
expects. Importing this module needs spandrel (and so torch); without it the import fails with
:class:`~bsrn_edge.errors.MissingDependencyError` and an install hint.
"""

from __future__ import annotations

import warnings
from typing import Mapping

from .._lazy import require

_spandrel = require("spandrel")

from spandrel import (  # noqa: E402 - only after require() has given a clear hint when it is missing
    Architecture,
    ArchRegistry,
    ArchSupport,
    ImageModelDescriptor,
    ModelTiling,
    SizeRequirements,
    StateDict,
)
from spandrel.util import KeyCondition  # noqa: E402
from torch import nn  # noqa: E402 - spandrel depends on torch, so this cannot fail once spandrel imported

from ..checkpoint import detect_variant, frozen_model, unwrap_state_dict  # noqa: E402
from ..errors import CheckpointError  # noqa: E402
from ..models.family import Family, KeyTest  # noqa: E402
from ..models.registry import FAMILIES  # noqa: E402
from ..variants import Variant  # noqa: E402

__all__ = ["ARCHITECTURES", "BsrnEdgeArch", "FAMILIES", "install", "key_condition"]


def key_condition(keys: KeyTest) -> KeyCondition:
    """spandrel's key test for our :class:`~bsrn_edge.models.family.KeyTest` (the names that must all be there,
    and each group of which one must be). KeyCondition cannot express absence: :func:`_detector` adds that."""
    return KeyCondition.has_all(*keys.all_of, *(KeyCondition.has_any(*group) for group in keys.any_of))


def _detector(family: Family):  # type: ignore[no-untyped-def]
    """spandrel's ``detect`` for ``family``: its names, by spandrel's own KeyCondition plus our exclusions
    (shapes are checked later, in ``load``)."""
    condition = key_condition(family.keys)
    return lambda state_dict: condition(state_dict) and not any(k in state_dict for k in family.keys.none_of)


class BsrnEdgeArch(Architecture[nn.Module]):
    """A spandrel ``Architecture`` for one bsrn-edge family; ``load`` uses our detection and loading."""

    def __init__(self, family: Family) -> None:
        super().__init__(id=family.id, name=family.name, detect=_detector(family))
        self.family = family

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[nn.Module]:
        """Build the network the state dict describes and wrap it in spandrel's descriptor.

        Raises :class:`CheckpointError` when the names match but shapes or keys do not (a damaged or
        modified checkpoint): the message says which tensors are wrong.
        """
        source = f"state dict that spandrel detected as {self.id}"
        sd = unwrap_state_dict(state_dict, source=source)
        variant = self._variant(sd, source)
        model = frozen_model(variant, sd, source)  # type: ignore[arg-type]
        return ImageModelDescriptor(
            model, sd, architecture=self, purpose="SR", tags=variant.tags,
            supports_half=variant.supports_half, supports_bfloat16=variant.supports_bfloat16,
            scale=variant.scale, input_channels=3, output_channels=3,
            size_requirements=SizeRequirements(minimum=self.family.min_size),
            tiling=ModelTiling[variant.tiling.upper()],
        )

    def _variant(self, sd: Mapping[str, object], source: str) -> Variant:
        """Hyper-parameters from our detector, which, unlike the key test, also checks shapes."""
        if self.family.detect(sd) is None:
            shapes = ", ".join(f"{k} {tuple(getattr(sd.get(k), 'shape', ()))}" for k in self.family.probe)
            raise CheckpointError(
                f"{source}: the tensor names are {self.name}'s but the shapes do not fit it ({shapes}; "
                f"expected 3 input channels and 3·scale² upsampler rows). Is the file damaged or from a "
                f"modified {self.name}? Re-export the state dict of an unmodified network."
            )
        variant = detect_variant(sd, source=source)  # type: ignore[arg-type]
        if variant.arch != self.family.arch:  # pragma: no cover - the detectors are mutually exclusive
            raise CheckpointError(f"{source}: spandrel chose {self.id} but bsrn-edge detects {variant.arch}")
        return variant


#: What :func:`install` adds, one entry per family, detected after spandrel's built-ins (no ``before``:
#: none of spandrel 0.4.2's built-in detectors accepts our checkpoints, and ours accept none of theirs).
ARCHITECTURES: tuple[ArchSupport, ...] = tuple(ArchSupport.from_architecture(BsrnEdgeArch(f)) for f in FAMILIES)


def install(registry: ArchRegistry | None = None, *, ignore_duplicates: bool = True) -> list[ArchSupport]:
    """Add our architectures to ``registry`` (default: ``spandrel.MAIN_REGISTRY``); returns those added.

    Calling it again adds nothing and returns ``[]``. When the registry already has an architecture
    with one of our ids that is not ours (a later spandrel might ship its own RLFN, say), that one is
    kept and a warning says so; with ``ignore_duplicates=False`` spandrel raises
    ``DuplicateArchitectureError`` instead and the registry is left unchanged.
    """
    target = _spandrel.MAIN_REGISTRY if registry is None else registry
    if not isinstance(target, ArchRegistry):
        raise TypeError(f"install(registry=...) expects a spandrel.ArchRegistry or None, "
                        f"got {type(target).__name__}")
    if ignore_duplicates:
        _warn_foreign(target)
    return target.add(*ARCHITECTURES, ignore_duplicates=ignore_duplicates)


def _is_ours(arch: Architecture[nn.Module]) -> bool:
    """True for a :class:`BsrnEdgeArch`, also one made before an ``importlib.reload`` of this module."""
    cls = type(arch)
    return cls.__module__ == __name__ and cls.__qualname__ == BsrnEdgeArch.__qualname__


def _warn_foreign(registry: ArchRegistry) -> None:
    """Warn about ids that the registry already gives to an architecture that is not ours."""
    for support in ARCHITECTURES:
        existing = registry.get(support.architecture.id)
        if existing is not None and not _is_ours(existing.architecture):
            warnings.warn(
                f"spandrel already has an architecture {support.architecture.id!r} "
                f"({type(existing.architecture).__module__}); it stays in charge of such checkpoints and "
                f"bsrn-edge's loader for them was not added",
                stacklevel=3,
            )
