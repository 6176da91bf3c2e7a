"""Which files a run takes as inputs: one rule for ``bsrn-upscale`` on one machine and with ``--ray``.

A folder is searched recursively (symbolic links to folders are not followed, so there are no loops) for
images and videos by suffix; the output folder, when it lies inside the input folder, is left out, and
hidden temporary files of unfinished writes are never inputs. A symbolic link whose target is missing, or
that loops, is still an input: planning gives it a refusal naming it (:func:`link_problem`), so it is
reported as that input's failure instead of vanishing or stopping the run. With ``--ray`` the input may also
be a glob (``photos/**/*.jpg``) or a text file of paths, one a line.

Every path is absolute (``..`` removed, links kept), because Ray workers do not share the driver's working
folder and because the planner compares inputs with outputs.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from bsrn_edge.errors import InputError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, is_partial

from .video.options import VIDEO_EXTENSIONS

__all__ = ["KNOWN", "Inputs", "absolute", "inside", "link_problem", "folder_inputs", "discover_inputs"]

KNOWN = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
_GLOB_CHARS = frozenset("*?[")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """The input files (absolute, sorted, no repeats) and the folder their output paths are relative to."""

    root: Path
    files: tuple[Path, ...]


def absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))  # keeps symbolic links, drops ``..``


def inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def link_problem(path: Path) -> str | None:
    """Why the symbolic link ``path`` leads to no file (a loop, a missing target), else None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: a symbolic link that loops back on itself; fix or remove the link"
        return f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; fix or remove the link"
    return None


def _is_input(path: Path) -> bool:
    """An image or video by suffix, not a temporary file, and a file (or a link that leads nowhere)."""
    if path.suffix.lower() not in KNOWN or is_partial(path):
        return False
    return path.is_file() or link_problem(path) is not None


def folder_inputs(root: Path, exclude: Path | None = None) -> list[Path]:
    """The images and videos in ``root`` and below it, absolute; ``exclude`` (the output folder) and what is
    under it left out unless it is ``root`` itself (then outputs are told apart by name: see ``plan_tree``)."""
    root = absolute(root)
    skip = _inner(exclude, root)
    files = []
    for folder, subfolders, names in os.walk(root, onerror=_unreadable):  # links to folders not followed: no loops
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not inside(here / d, skip))
        files += [here / n for n in names if _is_input(here / n)]
    return sorted(files)


def _inner(exclude: str | os.PathLike[str] | None, root: Path) -> Path | None:
    """The output folder when it lies inside the input folder ``root`` (then it is left out of the inputs); None when
    it is ``root`` itself (outputs are then told apart by name) or outside it (an ``-o`` that holds ``-i`` excludes
    nothing: the inputs are all under it)."""
    skip = absolute(exclude) if exclude is not None else None
    return skip if skip is not None and skip != root and inside(skip, root) else None


def _unreadable(exc: OSError) -> None:
    log.warning("%s: cannot read this folder (%s); its files are not inputs", exc.filename, exc.strerror or exc)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (``a/b/**/*.png`` → ``a/b``)."""
    parts = Path(pattern).parts
    fixed = parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]
    return absolute(Path(*fixed) if fixed else ".")


def _from_list(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_file}: cannot read it as a UTF-8 list of image paths ({exc})") from exc
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    files = [absolute(list_file.parent / e) for e in entries]  # an absolute entry stays itself
    missing = [str(f) for f in files if not f.is_file() and link_problem(f) is None]
    unknown = [str(f) for f in files if f.suffix.lower() not in KNOWN]
    for what, bad in (("do not exist", missing), (f"are neither images nor videos ({', '.join(KNOWN)})", unknown)):
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise InputError(f"{list_file}: {len(bad)} listed file(s) {what}: {', '.join(bad[:3])}{more}. "
                             f"Fix or remove those lines; nothing was written")
    return files


def discover_inputs(spec: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None) -> Inputs:
    """The inputs named by ``spec``: an image or video file, a folder (see the module doc), a glob, or a text
    file of paths (blank lines and ``#`` comments ignored; relative paths are relative to the list file's folder).

    Files under ``exclude`` (the output folder) are never inputs, so a re-run does not upscale its own
    outputs. Raises :class:`InputError` when nothing matches or a listed file is missing.
    """
    text = str(spec)
    path = Path(text)
    if not path.exists() and not path.is_symlink() and _GLOB_CHARS & set(text):
        root = _glob_root(text)
        skip = _inner(exclude, root)
        found = [absolute(m) for m in glob.glob(text, recursive=True)]
        files = [f for f in found if _is_input(f) and not inside(f, skip)]
        what = f"{text}: the pattern matches no images or videos ({', '.join(KNOWN)})"
    elif path.is_dir():
        root, files = absolute(path), folder_inputs(path, exclude)
        what = f"{path}: no images or videos in this folder or below it ({', '.join(KNOWN)})"
    elif path.suffix.lower() in KNOWN and (path.is_file() or path.is_symlink()):
        root, files, what = absolute(path.parent), [absolute(path)], ""
    elif path.is_file():
        files = _from_list(path)
        root = Path(os.path.commonpath([f.parent for f in files])) if files else absolute(path.parent)
        what = f"{path}: the list names no files (expected one image path a line)"
    else:
        raise InputError(f"{path}: no such file or folder (expected a folder, a glob or a text file of paths)")
    if not files:
        raise InputError(what)
    return Inputs(root, tuple(sorted(set(files))))
