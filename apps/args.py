"""What the command lines share: one exit-code table, argparse types, and how a usage error is printed.

``bsrn-upscale`` and ``bsrn-export`` both use these, so a flag that takes a whole number says the same
thing in both, and both exit with the same codes for the same kind of failure.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from bsrn_edge.errors import MissingDependencyError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_MISSING", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated",
           "terminate_raises", "restore_sigterm", "interrupt_word", "interrupted_exit", "whole_number", "usage_error"]

#: 0 success; 1 validation failed, a file could not be written or some inputs failed; 2 bad input found
#: before any work; 3 a missing optional dependency; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM),
#: as a shell reports a process killed by that signal (128 + its number)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C (every cleanup that handles KeyboardInterrupt runs), but
    ending with exit code 143 instead of 130."""


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread, so a run finalises what it did
    (summary, manifest, temporary files) and exits 143. Re-enter after anything that installs its own handler
    (``ray.init`` does); the previous handler comes back on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):  # type: ignore[no-untyped-def]
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def restore_sigterm(handler: Any) -> None:
    """Put ``handler`` back for SIGTERM after something replaced it (``ray.init`` installs one that exits 15 with no
    summary); only the main thread can, and ``None`` (a handler not set from Python) is left alone."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def interrupt_word(exc: KeyboardInterrupt) -> str:
    """How a summary names the interrupt: "terminated (SIGTERM)" or "interrupted" (Ctrl-C)."""
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"


def interrupted_exit(exc: KeyboardInterrupt) -> int:
    """The exit code for an interrupt: 143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


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
