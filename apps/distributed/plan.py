"""What a distributed run will do, decided on the driver before Ray is touched: inputs, outputs, actors.

Inputs (:func:`discover_inputs`) are a folder (searched recursively), a glob (``photos/**/*.jpg``) or a
text file of paths, one a line; images and videos (by suffix) alike. Outputs (:func:`plan_outputs`)
keep each input's path relative to the input root; inside each folder image names follow the
single-machine rule of ``bsrn-upscale`` (:func:`bsrn_edge.apps.jobs.folder_jobs`) and a video keeps
its name (:func:`bsrn_edge.apps.video.output_for`). Every path is absolute, because Ray workers do
not share the driver's working folder.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bsrn_edge.errors import InputError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, is_partial

from ..jobs import Job, folder_jobs, refuse_inputs
from ..video import VIDEO_EXTENSIONS, output_for

__all__ = ["VIDEO", "Inputs", "ActorShape", "discover_inputs", "plan_outputs", "actor_shape"]

#: the ``Job.fmt`` of a video: one task runs the whole file through ``upscale_video``
VIDEO = "video"
_KNOWN = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Inputs:
    """The input files (absolute, sorted, no repeats) and the folder their output paths are relative to."""

    root: Path
    files: tuple[Path, ...]


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))  # keeps symbolic links, drops ``..``


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def _is_input(path: Path) -> bool:
    return path.suffix.lower() in _KNOWN and not is_partial(path) and path.is_file()


def _from_folder(root: Path, exclude: Path | None) -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(root):  # symbolic links to folders are not followed: no loops
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not _inside(here / d, exclude))
        files += [here / n for n in names if _is_input(here / n)]
    return files


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (``a/b/**/*.png`` → ``a/b``)."""
    parts = Path(pattern).parts
    fixed = parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]
    return _absolute(Path(*fixed) if fixed else ".")


def _from_list(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_file}: cannot read it as a UTF-8 list of image paths ({exc})") from exc
    entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    files = [_absolute(list_file.parent / e) for e in entries]  # an absolute entry stays itself
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"{list_file}: {len(missing)} listed file(s) do not exist: {', '.join(missing[:3])}{more}. "
                         f"Fix or remove those lines; nothing was written")
    return files


def discover_inputs(spec: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None) -> Inputs:
    """The inputs named by ``spec``: an image or video file, a folder, a glob, or a text file of paths
    (blank lines and ``#`` comments ignored; relative paths are relative to the list file's folder).

    Files under ``exclude`` (the output folder) are never inputs, so a re-run does not upscale its own
    outputs. Raises :class:`InputError` when nothing matches or a listed file is missing.
    """
    text = str(spec)
    path = Path(text)
    skip = _absolute(exclude) if exclude is not None else None
    if not path.exists() and _GLOB_CHARS & set(text):
        root = _glob_root(text)
        found = [_absolute(m) for m in glob.glob(text, recursive=True)]
        files = [f for f in found if _is_input(f) and not _inside(f, skip)]
        what = f"{text}: the pattern matches no images or videos ({', '.join(_KNOWN)})"
    elif path.is_dir():
        root = _absolute(path)
        files = _from_folder(root, skip)
        what = f"{path}: no images or videos in this folder or below it ({', '.join(_KNOWN)})"
    elif path.is_file() and path.suffix.lower() in _KNOWN:
        root, files, what = _absolute(path.parent), [_absolute(path)], ""
    elif path.is_file():
        files = _from_list(path)
        root = Path(os.path.commonpath([f.parent for f in files])) if files else _absolute(path.parent)
        what = f"{path}: the list names no files (expected one image path a line)"
    else:
        raise InputError(f"{path}: no such file or folder (expected a folder, a glob or a text file of paths)")
    if not files:
        raise InputError(what)
    return Inputs(root, tuple(sorted(set(files))))


def plan_outputs(inputs: Inputs, out_dir: str | os.PathLike[str], fmt: str | None, suffix: str = "") -> list[Job]:
    """One :class:`Job` per input, written under ``out_dir`` at the input's path relative to the root.

    Image names in each folder follow ``bsrn-upscale`` (a clash that cannot be resolved is an
    :class:`InputError` naming the folder); a video keeps its name and gets ``fmt`` :data:`VIDEO`.
    An output that is an input carries a refusal.
    """
    out = _absolute(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out_dir}: is a file; with --ray, -o must be a folder (or a new name)")
    by_folder: dict[Path, list[Path]] = {}
    for f in inputs.files:
        by_folder.setdefault(f.parent.relative_to(inputs.root), []).append(f)
    jobs: list[Job] = []
    for rel, files in by_folder.items():
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        try:
            jobs += folder_jobs(images, out / rel, fmt, suffix) if images else []
        except InputError as exc:
            raise InputError(f"{inputs.root / rel}: {exc}") from exc
        jobs += [Job(f, output_for(f, out / rel / (f.stem + f.suffix.lower())), VIDEO)
                 for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
    return refuse_inputs(jobs, list(inputs.files))


@dataclass(frozen=True)
class ActorShape:
    """How many model copies run, and what each one reserves from Ray."""

    actors: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int | None:
        """ONNX Runtime threads of a CPU actor (its CPUs); None on a GPU actor."""
        return None if self.gpus else int(self.cpus)


def actor_shape(cluster: Mapping[str, float], device: str, actors: int | None = None,
                cpus_per_actor: int | None = None) -> ActorShape:
    """Actors for a cluster with ``cluster`` resources (``ray.cluster_resources()``).

    Where the cluster has GPUs and ``device`` is not ``"cpu"``: one GPU per actor, one actor per GPU by
    default. Otherwise CPU actors of ``cpus_per_actor`` CPUs (default 1), as many as the CPUs allow.
    ``device="cuda"`` on a cluster without GPUs is an :class:`InputError`.
    """
    gpus = int(cluster.get("GPU", 0))
    if device == "cuda" and gpus < 1:
        raise InputError("--device cuda: the Ray cluster has no GPUs; start GPU nodes, or use --device cpu")
    if device != "cpu" and gpus >= 1:
        return ActorShape(actors or gpus, float(cpus_per_actor or 1), 1.0)
    per = cpus_per_actor or 1
    return ActorShape(actors or max(1, int(cluster.get("CPU", 1)) // per), float(per), 0.0)
