"""bsrn-edge: export, run and benchmark BSRN super-resolution networks at the edge.

Importing this package does not import torch; ``load_model`` does, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BsrnEdgeError, CheckpointError, InputError, MissingDependencyError, ValidationError
from .variants import VARIANTS, Variant, get_variant

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import LoadedModel

__version__ = "0.3.0"

__all__ = [
    "__version__",
    "load_model",
    "Variant",
    "VARIANTS",
    "get_variant",
    "BsrnEdgeError",
    "CheckpointError",
    "InputError",
    "MissingDependencyError",
    "ValidationError",
]


def load_model(path_or_name: str, *, device: str = "cpu") -> "LoadedModel":
    """Load a checkpoint file or bundled model name; see :func:`bsrn_edge.checkpoint.load_model`."""
    from .checkpoint import load_model as _load

    return _load(path_or_name, device=device)
