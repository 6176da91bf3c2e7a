"""Atomic writes that never follow a symbolic link, and runs that share a folder without deleting each other's
temporary files.

A file appears under its name only once complete, with the mode a plain ``open`` gives it: it is written to
a hidden temporary beside it (created with ``O_EXCL | O_NOFOLLOW``, so a link planted under that name is
never followed) and renamed into place (a rename replaces a link at the final name, it never writes through it).

Temporary names are ``.<final name>.<run>-<tag>.part<suffix>``: ``run`` is the token of the run that wrote it
(:func:`run_token`; a Ray worker takes its driver's). A command that writes into a folder holds a lock file
there for as long as it runs (:class:`RunLock`: ``.bsrn-run.<run>.lock``, ``flock``-ed, with its pid and host
inside). :func:`remove_partials` removes only the temporaries of this run and of runs that are gone (their lock
is no longer held: the kernel drops an ``flock`` when its process dies, even by SIGKILL), so two commands on one
output folder both finish. Temporaries of older versions (``.<name>.<8 characters>.part``) count as gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import socket
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

__all__ = ["write_atomic", "atomic_file", "atomic_path", "is_partial", "partial_path", "remove_partials", "run_token",
           "set_run_token", "RunLock", "open_nofollow"]

# ".<final name>.<run token>-<tag>.part<suffix>"; without "-<tag>": a temporary of an older version (no run)
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<run>[a-z0-9_]{8})(?P<tagged>-[a-z0-9_]{1,16})?\.part", re.IGNORECASE)
_LOCK = ".bsrn-run.{}.lock"
log = logging.getLogger(__name__)
_token = secrets.token_hex(4)


def run_token() -> str:
    """This process's run token: 8 characters of [0-9a-f] that name its temporary files and its lock."""
    return _token


def set_run_token(token: str) -> None:
    """Write temporaries under ``token`` (a Ray worker writing for its driver, whose lock says it is alive)."""
    global _token
    if not re.fullmatch(r"[a-z0-9]{8}", token):
        raise ValueError(f"set_run_token: expected 8 characters of [a-z0-9], got {token!r}")
    _token = token


def open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = 0o666) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` with an OSError that says so (ELOOP)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link is in its place; bsrn-edge never writes through links, "
                                       "remove it", str(path)) from exc
        raise


def is_partial(path: str | os.PathLike[str]) -> bool:
    """True for the hidden temporary file of an unfinished atomic write (never a finished output)."""
    return _PARTIAL.match(Path(path).name) is not None


class RunLock:
    """Says "run ``token`` is alive" in ``folder`` while held: ``.bsrn-run.<token>.lock``, ``flock``-ed, holding
    ``pid@host``. Creates ``folder`` when missing and removes it again on release if it is still empty. Where
    the folder cannot be made or written, the run goes on without a lock (its writes fail and say why)."""

    def __init__(self, folder: str | os.PathLike[str], token: str | None = None):
        self.folder = Path(folder)
        self.token = token or run_token()
        self.path = self.folder / _LOCK.format(self.token)
        self._fd: int | None = None
        self._made: list[Path] = []

    def __enter__(self) -> RunLock:
        missing = [p for p in [self.folder, *self.folder.parents] if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made = missing  # innermost first
            self._fd = self._lock()
            os.write(self._fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())
        except OSError as exc:
            log.warning("%s: running without a run lock (%s): another run writing here at the same time could "
                        "remove this run's temporary files", self.folder, exc.strerror or exc)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        for stale in self.folder.glob(_LOCK.format("*")):  # left by killed runs
            if stale != self.path:
                _alive(stale.name.split(".")[2], self.folder, here_only=True)
        return self

    def _lock(self) -> int:
        """Create and ``flock`` the lock file; again if another run removed it as stale in between (it was
        not held yet), so that the file under the name is the one held."""
        for _ in range(10):
            try:
                self.folder.mkdir(parents=True, exist_ok=True)  # again, if another run removed it as empty
                fd = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT)
            except FileNotFoundError:
                continue
            try:
                # blocking: only other runs' liveness probes take this token's lock, for an instant (LOCK_SH)
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            except OSError:
                os.close(fd)
                raise
            os.close(fd)
        raise OSError(errno.EAGAIN, "the run lock kept being removed", str(self.path))

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
        for folder in self._made:  # made by this run and left empty: as if the run never happened
            try:
                folder.rmdir()
            except OSError:
                break


def _alive(token: str, folder: Path, here_only: bool = False) -> bool:
    """Whether run ``token`` holds its lock in ``folder`` or a folder above it; a lock left unheld (its run
    died) is removed on the way."""
    for place in (folder,) if here_only else (folder, *folder.parents):
        lock = place / _LOCK.format(token)
        try:
            fd = open_nofollow(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # held: the run is alive
        finally:
            os.close(fd)
        lock.unlink(missing_ok=True)
        return False
    return False


def _stale(name: str, folder: Path, names: set[str]) -> bool:
    m = _PARTIAL.match(name)
    if m is None:
        return False
    if m.group("name") not in names:  # a temporary of a temporary (a video segment written atomically) counts too
        inner = _PARTIAL.match(m.group("name"))
        if inner is None or inner.group("name") not in names:
            return False
    if m.group("tagged") is None or m.group("run") == _token:
        return True
    return not _alive(m.group("run"), folder)


def remove_partials(dests: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Delete the temporary files beside each of ``dests`` that this run left, or that runs which are gone left
    (a killed process); returns what was removed. A live run's temporaries, and files of other names, stay."""
    by_folder: dict[Path, set[str]] = {}
    for d in map(Path, dests):
        by_folder.setdefault(d.parent, set()).add(d.name)
    removed = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet, or not readable: nothing of ours there
            continue
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or not _stale(entry.name, folder, names):
                continue
            try:
                os.unlink(entry.path)
            except OSError:  # gone already, or a read-only folder: the run reports that itself
                continue
            removed.append(Path(entry.path))
    return removed


def partial_path(dest: str | os.PathLike[str], tag: str, suffix: str | None = None) -> Path:
    """The hidden temporary name beside ``dest`` for this run and ``tag`` (1 to 16 characters of [a-z0-9_]):
    what :func:`is_partial` and :func:`remove_partials` recognise, so it is never an input and is cleaned up."""
    dest = Path(dest)
    if not re.fullmatch(r"[a-z0-9_]{1,16}", tag, re.IGNORECASE):
        raise ValueError(f"partial_path: tag must be 1 to 16 characters of [a-z0-9_], got {tag!r}")
    return dest.parent / f".{dest.name}.{_token}-{tag}.part{dest.suffix if suffix is None else suffix}"


def _create_partial(dest: Path, suffix: str) -> tuple[Path, int]:
    """Create an empty temporary file beside ``dest``, mode 0o666 less the umask (as ``open`` would); returns
    it with its open descriptor. ``O_EXCL`` never follows a link, and a name taken is skipped."""
    for _ in range(100):
        tmp = partial_path(dest, secrets.token_hex(3), suffix)
        try:
            return tmp, open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            continue
    raise FileExistsError(f"{dest.parent}: could not find a free temporary name for {dest.name}")


class atomic_path:
    """Context manager yielding a temporary path beside ``dest``; renamed onto ``dest`` on success.

    On an exception (``KeyboardInterrupt`` included) the temporary file is removed and ``dest`` is left
    untouched. The file gets the mode a plain ``open`` would give it (0o666 less the umask): it is
    created by ``os.open`` with that mode, so the kernel applies the umask (and default ACLs); nothing
    reads or changes the process umask. Before the rename the temporary must still be the regular file
    created here: one swapped for a link (or anything else) is an OSError and nothing is renamed.
    """

    def __init__(self, dest: str | os.PathLike[str], suffix: str | None = None):
        self.dest = Path(dest)
        self.suffix = suffix if suffix is not None else self.dest.suffix
        self.tmp: Path | None = None
        self.fd: int | None = None  # open for writing until the rename (write_atomic writes through it)
        self._ino: tuple[int, int] | None = None

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp, self.fd = _create_partial(self.dest, self.suffix)
        st = os.fstat(self.fd)
        self._ino = (st.st_dev, st.st_ino)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if self.tmp is None:
            return
        try:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if exc_type is None:
                st = os.lstat(self.tmp)
                if (st.st_dev, st.st_ino) != self._ino:
                    raise OSError(errno.ELOOP, "the temporary file was replaced while being written; nothing renamed",
                                  str(self.tmp))
                os.replace(self.tmp, self.dest)
        finally:
            self.tmp.unlink(missing_ok=True)  # after a failed rename too: never leave a .part behind


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike[str], suffix: str | None = None) -> Iterator[BinaryIO]:
    """:class:`atomic_path` as a binary file object on the descriptor that created the temporary: the file is never
    opened again by name, so a link swapped in under the temporary's name is not written through either."""
    target = atomic_path(dest, suffix)
    with target as tmp:
        assert target.fd is not None  # open from __enter__ until __exit__
        with open(target.fd, "wb", closefd=False) as fh:
            fh.raw.name = str(tmp)  # type: ignore[attr-defined]  # for writers that read it (tifffile, PyAV)
            yield fh


def write_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to ``dest`` through a temporary file (written through the descriptor that created it) and a rename."""
    with atomic_file(dest) as fh:
        fh.write(data)
