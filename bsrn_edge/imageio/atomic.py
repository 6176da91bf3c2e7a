"""Atomic writes: a file appears under its name only once complete, with the mode a plain ``open`` gives it."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Iterable

__all__ = ["write_atomic", "atomic_path", "is_partial", "partial_path", "remove_partials"]

# temporary names: ".<final name>.<8 random characters>.part<suffix>" (Python's mkstemp used the same shape)
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.part", re.IGNORECASE)


def is_partial(path: str | os.PathLike[str]) -> bool:
    """True for the hidden temporary file of an unfinished atomic write (never a finished output)."""
    return _PARTIAL.match(Path(path).name) is not None


def remove_partials(dests: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Delete the temporary files left beside each of ``dests`` by atomic writes that never finished
    (a killed process); returns what was removed. Temporary files of other names are left alone."""
    by_folder: dict[Path, set[str]] = {}
    for d in map(Path, dests):
        by_folder.setdefault(d.parent, set()).add(d.name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = list(folder.iterdir())
        except OSError:  # no folder yet, or not readable: nothing of ours there
            continue
        for p in entries:
            m = _PARTIAL.match(p.name)
            if m and m.group("name") in names and p.is_file():
                try:
                    p.unlink()
                except OSError:  # gone already, or a read-only folder: the run reports that itself
                    continue
                removed.append(p)
    return removed


def partial_path(dest: str | os.PathLike[str], tag: str, suffix: str | None = None) -> Path:
    """The hidden temporary name beside ``dest`` for ``tag`` (8 characters of [a-z0-9_]): what
    :func:`is_partial` and :func:`remove_partials` recognise, so it is never an input and is cleaned up."""
    dest = Path(dest)
    if not re.fullmatch(r"[a-z0-9_]{8}", tag, re.IGNORECASE):
        raise ValueError(f"partial_path: tag must be 8 characters of [a-z0-9_], got {tag!r}")
    return dest.parent / f".{dest.name}.{tag}.part{dest.suffix if suffix is None else suffix}"


def _create_partial(dest: Path, suffix: str) -> Path:
    """Create an empty temporary file beside ``dest``, mode 0o666 less the umask (as ``open`` would)."""
    for _ in range(100):
        tmp = partial_path(dest, secrets.token_hex(4), suffix)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{dest.parent}: could not find a free temporary name for {dest.name}")


class atomic_path:
    """Context manager yielding a temporary path beside ``dest``; renamed onto ``dest`` on success.

    On an exception (``KeyboardInterrupt`` included) the temporary file is removed and ``dest`` is left
    untouched. The file gets the mode a plain ``open`` would give it (0o666 less the umask): it is
    created by ``os.open`` with that mode, so the kernel applies the umask (and default ACLs); nothing
    reads or changes the process umask.
    """

    def __init__(self, dest: str | os.PathLike[str], suffix: str | None = None):
        self.dest = Path(dest)
        self.suffix = suffix if suffix is not None else self.dest.suffix
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _create_partial(self.dest, self.suffix)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if self.tmp is None:
            return
        try:
            if exc_type is None:
                os.replace(self.tmp, self.dest)
        finally:
            self.tmp.unlink(missing_ok=True)  # after a failed rename too: never leave a .part behind


def write_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to ``dest`` through a temporary file and a rename."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
