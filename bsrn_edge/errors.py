"""Exception hierarchy: one root, a few subclasses, messages that say what to do."""

from __future__ import annotations

__all__ = [
    "BsrnEdgeError",
    "CheckpointError",
    "EngineBuildError",
    "InputError",
    "MissingDependencyError",
    "NonFiniteOutputError",
    "ValidationError",
]


class BsrnEdgeError(Exception):
    """Root of every error raised on purpose by bsrn-edge."""


class CheckpointError(BsrnEdgeError):
    """A checkpoint could not be read, or holds no architecture we know."""


class InputError(BsrnEdgeError, ValueError):
    """An argument or an input file is not what the function expects."""


class MissingDependencyError(BsrnEdgeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EngineBuildError(BsrnEdgeError):
    """No TensorRT engine came out of an ONNX: its support table refuses a node, or its parser or builder failed."""


class ValidationError(BsrnEdgeError):
    """An exported artifact failed its numeric validation."""


class NonFiniteOutputError(BsrnEdgeError):
    """A network produced NaN or infinity: the image would be black or garbage, so nothing is returned."""
