"""The batch-job model of ``bsrn-upscale`` (single machine and Ray): what each input becomes, planned
for the whole batch before any work.

Output names are planned for the whole batch first (see :func:`plan_jobs`); an existing output is taken
as done, because outputs are only ever renamed into place once complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, MAX_PIXELS, holds_alpha, output_ext, read_image
from bsrn_edge.imageio import OUTPUT_FORMATS as FORMATS

from .inputs import Inputs, absolute, discover_inputs, inside, link_problem
from .video.probe import output_for

__all__ = ["VIDEO", "Job", "ImageOptions", "has_transparency", "folder_jobs", "refuse_inputs", "plan_tree", "plan_jobs"]

#: the ``Job.fmt`` of a video: one task runs the whole file through ``upscale_video``
VIDEO = "video"


@dataclass(frozen=True)
class Job:
    """One input and the output planned for it; ``refusal`` set when the plan already forbids it.

    ``alpha_dst``: where the output goes instead when the image has alpha and ``fmt`` cannot hold it
    (JPEG → PNG), chosen with the whole batch in view so it never takes an input's or another output's name.
    """

    src: Path
    dst: Path
    fmt: str
    refusal: str | None = None
    alpha_dst: Path | None = None

    @property
    def outputs(self) -> list[Path]:
        """Every name this job may write (for cleaning up a killed run's temporary files)."""
        return [self.dst] if self.alpha_dst is None else [self.dst, self.alpha_dst]

    def done(self, max_pixels: int = MAX_PIXELS) -> bool:
        """True when this job's output exists: a re-run skips it. The PNG beside a JPEG output counts only
        when the input (read within ``max_pixels``) really has transparency (else that PNG is another file)."""
        if self.dst.is_file():
            return True
        if self.alpha_dst is None or not self.alpha_dst.is_file():
            return False
        try:
            return has_transparency(read_image(self.src, max_pixels=max_pixels).pixels)
        except (BsrnEdgeError, OSError):  # unreadable now: let the run report it, naming the input
            return False


def has_transparency(pixels: np.ndarray) -> bool:
    """True for an H×W×4 uint8/uint16 image whose alpha is not opaque everywhere."""
    return pixels.ndim == 3 and pixels.shape[2] == 4 and bool((pixels[..., 3] < np.iinfo(pixels.dtype).max).any())


@dataclass(frozen=True)
class ImageOptions:
    """How each image is read, resampled and written (the image flags of ``bsrn-upscale``)."""

    outscale: float | None = None  # final scale against the input; None: the model's
    max_pixels: int = MAX_PIXELS
    lossless: bool = False  # WebP


def _out_ext(f: Path, ext: str | None) -> str:
    """The output extension for input ``f``: ``ext``, else the input's own where bsrn-edge writes it (TIFF only
    with tifffile installed: without the formats extra a TIFF input comes out as PNG), else png."""
    own = output_ext(f.suffix)
    return ext or (own if own != "tif" or available("tifffile") else None) or "png"


def _folder_names(files: list[Path], ext: str | None, suffix: str = "") -> dict[Path, str]:
    """Output names in one folder: ``<stem><suffix>.<ext>``, unless two inputs would share it (compared
    without regard to case, as on macOS and Windows). Then the input whose extension is the output's keeps
    the plain name and every other one keeps its own extension too: ``pic.png`` → ``pic.png``,
    ``pic.bmp`` → ``pic.bmp.png``; ``shot.jpg`` → ``shot.jpg``, ``shot.jpeg`` → ``shot.jpeg.jpg``.
    A clash that remains (``Pic.png`` beside ``pic.png``) is refused before anything runs."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(f"{f.stem}{suffix}.{_out_ext(f, ext)}".casefold(), []).append(f)
    names = {}
    for members in groups.values():
        for f in members:
            e = _out_ext(f, ext)
            plain = len(members) == 1 or f.suffix.lower() == f".{e}"
            names[f] = f"{f.stem}{suffix}.{e}" if plain else f"{f.stem}{suffix}{f.suffix}.{e}"
    taken: dict[str, Path] = {}
    clashes = []
    for f in files:
        other = taken.setdefault(names[f].casefold(), f)
        if other != f:
            clashes.append(f"{other.name} and {f.name} → {names[f]}")
    if clashes:
        raise InputError(f"two inputs would be written to one output name: {'; '.join(clashes)}. "
                         f"Rename one of them, or move it to another folder; nothing was written")
    return names


def _taken_names(outputs: list[str], inputs: list[Path], folder: Path) -> set[str]:
    """Names (case-folded) a fallback PNG in ``folder`` must not take: the planned outputs, and the inputs
    that live in that folder."""
    here = folder.resolve()
    return {n.casefold() for n in outputs} | {f.name.casefold() for f in inputs if f.parent.resolve() == here}


def _alpha_name(name: str, taken: set[str]) -> str:
    """The PNG name an output called ``name`` takes when its image has alpha and its format has none:
    ``<stem>.png``, or ``<name>.png`` when that is an input's or another output's name."""
    plain = f"{Path(name).stem}.png"
    return plain if plain.casefold() not in taken else f"{name}.png"


def folder_jobs(files: list[Path], dst: Path, ext: str | None, suffix: str = "") -> list[Job]:
    """Jobs writing ``files`` (inputs of one folder) into the folder ``dst``, named by :func:`_folder_names`."""
    names = _folder_names(files, ext, suffix)
    taken = _taken_names(list(names.values()), files, dst)
    jobs = []
    for f, name in names.items():
        fmt = FORMATS[_out_ext(f, ext)]
        alpha = dst / _alpha_name(name, taken) if not holds_alpha(fmt) else None
        jobs.append(Job(f, dst / name, fmt, alpha_dst=alpha))
    return _writable(jobs)


def _writable(jobs: list[Job]) -> list[Job]:
    """``jobs``, after checking that their formats can be written here: TIFF needs tifffile (the formats
    extra); without it a MissingDependencyError (exit 3) comes before any work."""
    if any(j.fmt == FORMATS["tif"] for j in jobs):
        require("tifffile")
    return jobs


def _real(path: Path) -> str:
    return os.path.realpath(path)  # never raises, not even for a link that loops


def refuse_inputs(jobs: list[Job], files: Iterable[Path]) -> list[Job]:
    """``jobs``, each whose output is one of the input ``files`` carrying a refusal (an input is never overwritten)."""
    inputs = {_real(f) for f in files}
    return [replace(j, refusal=f"{j.dst}: is an input file; refusing to overwrite it (choose another -o)")
            if j.refusal is None and _real(j.dst) in inputs else j for j in jobs]


def _linked_folder(dst: Path, out: Path) -> Path | None:
    """The first folder below ``out``, from ``dst``'s folder up, that is a symbolic link (None: there is none)."""
    folder = dst.parent
    while folder != out and inside(folder, out):
        if folder.is_symlink():
            return folder
        folder = folder.parent
    return None


def _checked(job: Job, out: Path) -> Job:
    """``job`` with a refusal when its input is a link that leads nowhere, or its output would go through a
    linked folder below ``out`` (nothing is written through a link)."""
    problem = link_problem(job.src)
    linked = _linked_folder(job.dst, out)
    if problem is None and linked is not None:
        problem = f"{linked}: a symbolic link below -o; bsrn-upscale does not write through links (remove it)"
    return replace(job, refusal=problem) if problem and job.refusal is None else job


def _plan_folders(inputs: Inputs, out: Path, fmt: str | None, suffix: str) -> list[Job]:
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
    return jobs


def plan_tree(inputs: Inputs, out_dir: str | os.PathLike[str], fmt: str | None, suffix: str = "") -> list[Job]:
    """One :class:`Job` per input, written under ``out_dir`` at the input's path relative to the root: the
    plan of ``bsrn-upscale`` for a folder, on one machine and with ``--ray``.

    Image names in each folder follow :func:`_folder_names` (a clash that cannot be resolved is an
    :class:`InputError` naming the folder); a video keeps its name and gets ``fmt`` :data:`VIDEO`. A run's
    outputs are never its inputs: a file that is the planned output of another input (``-i`` and ``-o`` the
    same folder: ``p0_x4.png`` beside ``p0.png`` with ``--suffix x4``) is left out, as is whatever an earlier
    run made from it. An output that is an input, an input link that leads nowhere and an output below a
    linked folder carry refusals.
    """
    out = absolute(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out_dir}: is a file; for a folder of inputs, -o must be a folder (or a new name)")
    files = list(inputs.files)
    while True:
        jobs = _plan_folders(Inputs(inputs.root, tuple(files)), out, fmt, suffix)
        made = {str(p) for j in jobs if j.dst != j.src for p in j.outputs}
        kept = [f for f in files if str(f) not in made]
        if len(kept) == len(files) or not kept:
            break
        files = kept
    planned = refuse_inputs([_checked(j, out) for j in jobs], files)
    if planned and all(j.dst.resolve() == j.src.resolve() for j in planned):
        raise InputError(f"-o {out_dir}: every output would be written over its own input (-o is -i and the names are "
                         f"the same); add --suffix (e.g. --suffix x4) or choose another -o. Nothing was written")
    return planned


def plan_jobs(src: Path, dst: Path, ext: str | None, suffix: str = "") -> list[Job]:
    """Every input with its output, planned before any work: a folder through :func:`plan_tree` (recursive,
    the layout kept), one file into ``dst`` (a file name, or a folder). ``ext``: the output extension (None:
    each input's own where it can be written, else png)."""
    src = absolute(src)
    if src.is_dir():
        return plan_tree(discover_inputs(src, exclude=dst), dst, ext, suffix)
    problem = link_problem(src)
    if problem is not None:
        raise InputError(problem)
    if not src.is_file():
        raise InputError(f"{src}: no such file or folder")
    dst = absolute(dst)
    if dst.is_dir() or not dst.suffix:
        jobs = folder_jobs([src], dst, ext, suffix)
    else:
        e = ext or output_ext(dst.suffix)
        if e is None:
            raise InputError(f"{dst}: unsupported output extension; use .png, .jpg, .webp or .tif")
        fmt = FORMATS[e]
        alpha = None if holds_alpha(fmt) else dst.parent / _alpha_name(dst.name, _taken_names([], [src], dst.parent))
        jobs = _writable([Job(src, dst, fmt, alpha_dst=alpha)])
    jobs = refuse_inputs(jobs, [src])
    if jobs[0].refusal:  # -o names the input itself: nothing to run, said before the model is opened
        raise InputError(jobs[0].refusal)
    return jobs
