"""Reading and writing images (Pillow), torch-free."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ._lazy import require
from .errors import InputError

__all__ = ["read_rgb", "write_atomic", "atomic_path"]


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB."""
    Image = require("PIL.Image")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such image file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc


class atomic_path:
    """Context manager yielding a temporary path beside ``dest``; renamed onto ``dest`` on success.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    """

    def __init__(self, dest: str | os.PathLike[str], suffix: str | None = None):
        self.dest = Path(dest)
        self.suffix = suffix if suffix is not None else self.dest.suffix
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=f".part{self.suffix}", dir=self.dest.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        assert self.tmp is not None
        if exc_type is None:
            os.replace(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)


def write_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to ``dest`` through a temporary file and a rename."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
