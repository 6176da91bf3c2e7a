"""What the command lines share: one exit-code table, argparse types, and how a usage error is printed.

``bsrn-upscale`` and ``bsrn-export`` both use these, so a flag that takes a whole number says the same
thing in both, and both exit with the same codes for the same kind of failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from bsrn_edge.errors import MissingDependencyError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_MISSING", "EXIT_INTERRUPTED", "whole_number", "usage_error"]

#: 0 success; 1 validation failed, a file could not be written or some inputs failed; 2 bad input found
#: before any work; 3 a missing optional dependency; 130 interrupted
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ≥ ``minimum``, anything else a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number ≥ {minimum}, got {value}")
        return value

    return parse


def usage_error(prog: str, exc: BaseException) -> int:
    """Print a command-line error found before any work; 3 for a missing optional dependency, else 2."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return EXIT_MISSING if isinstance(exc, MissingDependencyError) else EXIT_USAGE
