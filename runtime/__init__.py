"""bsrn_edge.runtime: the torch-free inference runtime.

``from bsrn_edge.runtime import Upscaler`` imports neither torch nor any backend library until a
model is opened.
"""

from bsrn_edge.errors import NonFiniteOutputError

from .open import open_backend
from .upscaler import Upscaler

__all__ = ["Upscaler", "open_backend", "NonFiniteOutputError"]
