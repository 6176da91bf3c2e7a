"""bsrn-upscale: upscale image files, folders and video files (thin wrapper over ``Upscaler``; ``--ray``
hands a collection to :mod:`bsrn_edge.distributed`).

Exit codes: 0 when every input was written or already done (skipped); 1 when some input failed or the
batch stopped on a write error that makes going on pointless; 2 for a usage error, found before any
file is touched; 3 when an optional dependency is missing; 130 when interrupted (Ctrl-C or SIGTERM). Output names are planned for the whole batch first (see :func:`plan_jobs`); an
existing output is taken as done, because outputs are only ever renamed into place once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import BsrnEdgeError, InputError, MissingDependencyError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, is_partial, remove_partials
from bsrn_edge.pixels import outscale_size, resize

from .images import MAX_PIXELS, OUTPUT_FORMATS as FORMATS, holds_alpha, output_ext, read_image, write_image
from .video import VideoOptions, looks_like_video, parse_frames

DEFAULT_MODEL = "bsrn-s-x4"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# write errors after which no later file can succeed either: the batch stops with its summary
_STOP_ERRNOS = {errno.EROFS: "read-only file system", errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


# -- arguments -------------------------------------------------------------------------------
def whole_number(minimum: int):  # type: ignore[no-untyped-def]
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


def _tile(text: str) -> int | Literal["auto"] | None:
    if text in ("auto", "none", "0"):  # 0: no tiling, as in Real-ESRGAN
        return None if text != "auto" else "auto"
    try:
        return whole_number(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 0 (no tiles) or a side in LR pixels ≥ 1, got {text!r}") from None


def _device(text: str) -> str:
    """-g/--device: auto, cpu, cuda, cuda:N, or a GPU index N as Real-ESRGAN's -g takes it (-1: the CPU)."""
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", t):
        return t
    if re.fullmatch(r"-?\d+", t):
        return "cpu" if int(t) < 0 else f"cuda:{int(t)}"
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or a GPU index (-1 for the CPU), got {text!r}")


def _outscale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 64:
        raise argparse.ArgumentTypeError(f"expected a final scale > 0 (e.g. 2, 3.5), at most 64; got {text!r}")
    return value


def _suffix(text: str) -> str:
    if "/" in text or "\\" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"a suffix is part of a file name; got {text!r}")
    return text


def _ext(text: str) -> str | None:
    if text.strip().lower() == "auto":
        return None
    ext = output_ext(text.strip())
    if ext is None:
        raise argparse.ArgumentTypeError(f"expected auto, {', '.join(FORMATS)} (or jpeg, tiff); got {text!r}")
    return ext


def _frames(text: str) -> tuple[int, int | None]:
    try:
        return parse_frames(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bsrn-upscale", description="Upscale images and videos with a BSRN model.",
        epilog="Flags follow Real-ESRGAN's inference_realesrgan.py (-i -o -n -s -t -g --fp32 --ext --suffix) and "
               "realesrgan-ncnn-vulkan (-m -f); see the README's 'Coming from Real-ESRGAN / chaiNNer'.")
    ap.add_argument("-i", "--input", required=True, type=Path,
                    help="image file, folder or video file (with --ray also a glob or a text file of paths)")
    ap.add_argument("-o", "--output", required=True, type=Path, help="output file (for one input) or folder")
    ap.add_argument("-m", "--model", "-n", "--model-name", dest="model", default=DEFAULT_MODEL,
                    help=f".onnx, .engine, checkpoint file or bundled name (default {DEFAULT_MODEL}, the bundled BSRN-S ×4)")
    ap.add_argument("-s", "--outscale", type=_outscale, metavar="S",
                    help="final scale of images against the input (e.g. 2 with a ×4 model): the network's "
                         "output is resampled with a Lanczos filter (default: the model's own scale; videos keep it)")
    ap.add_argument("-t", "--tile", default="auto", type=_tile,
                    help="LR tile side in pixels, 0 for no tiling, or 'auto' (default: whole images that fit the "
                         "memory budget, tiles for the rest)")
    ap.add_argument("--overlap", type=whole_number(0), default=None, help="LR overlap between tiles (≥ 0)")
    ap.add_argument("--batch", type=whole_number(1), default=1, help="tiles per inference call (≥ 1)")
    ap.add_argument("-g", "--device", type=_device, default="auto", metavar="DEVICE",
                    help="auto (default: a GPU when the backend can use one), cpu, cuda, cuda:N, or a GPU index N "
                         "as in Real-ESRGAN (-1: the CPU)")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt", "torch"])
    prec = ap.add_mutually_exclusive_group()
    prec.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16"],
                      help="fp16 picks the .fp16 sibling of an .onnx, or runs a checkpoint in half precision on a GPU")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                      help="full precision: the FP32 .onnx when both siblings exist (as Real-ESRGAN's --fp32)")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                      help="half precision: the .fp16 sibling of an .onnx / a checkpoint in FP16 on a GPU")
    ap.add_argument("--memory-mb", type=whole_number(64), default=768, metavar="MB",
                    help="host memory for tiling on the CPU: larger images are tiled within it (default 768)")
    ap.add_argument("--max-pixels", type=whole_number(1), default=MAX_PIXELS, metavar="N",
                    help=f"refuse inputs of more than N pixels as possible decompression bombs (default {MAX_PIXELS:,})")
    ap.add_argument("-f", "--ext", "--format", dest="ext", type=_ext, default=None, metavar="EXT",
                    help="output format: auto (default: the input's own when it is png, jpg, webp or tif, else "
                         "png), png, jpg, webp or tif; an image with transparency asked for as jpg is written as png")
    ap.add_argument("--suffix", type=_suffix, default="", help="added to each output's name: "
                                                               "--suffix out writes photo_out.png (default: none)")
    ap.add_argument("--lossless", action="store_true", help="WebP outputs: lossless (default: quality 95)")
    ap.add_argument("--force", action="store_true",
                    help="redo outputs that already exist (default: skip them as done, exit 0); never overwrites inputs")
    vid = ap.add_argument_group("video files: -i a video, -o a video file or folder (pip install 'bsrn-edge[video]')")
    vid.add_argument("--codec", help="video encoder (default libx264, libvpx-vp9 for .webm; also libx265, ffv1, …)")
    vid.add_argument("--crf", type=whole_number(0), help="constant quality, lower is better (default 12 for libx264, "
                                                          "19 for libx265, 24 for VP9)")
    vid.add_argument("--preset", help="x264/x265 speed preset, ultrafast … veryslow (default veryfast for libx264: "
                                      "as sharp as medium at CRF 16 for a third of the CPU, files ~40%% larger)")
    vid.add_argument("--pix-fmt", help="output pixel format (default yuv444p: 8-bit with colour at full resolution, "
                                       "so the colour detail of the upscale is kept; yuv420p plays everywhere but halves it)")
    vid.add_argument("--frames", type=_frames, metavar="A:B", help="only frames A to B-1 (display order, from 0; "
                                                                    "A: or :B), audio cut to match")
    vid.add_argument("--preview", type=_seconds, metavar="N", help="only N seconds (from frame A), to try settings first")
    ray = ap.add_argument_group("on a Ray cluster (pip install 'bsrn-edge[ray]')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run on Ray: ADDRESS, else $RAY_ADDRESS, else a new local Ray; -i may then be a folder "
                          "(searched recursively), a glob or a text file of paths, -o a folder that gets a manifest")
    ray.add_argument("--actors", type=whole_number(1), help="model copies (default: one per GPU, else one per CPU)")
    ray.add_argument("--cpus-per-actor", type=whole_number(1),
                     help="CPUs (and ONNX Runtime threads) per CPU actor (default 1)")
    ray.add_argument("--segment-seconds", type=whole_number(0), metavar="N",
                     help="split a video of 1.5×N seconds or more into N-second segments, one task each, joined "
                          "without re-encoding (audio copied once); default 60, 0 keeps every video whole")
    return ap


# -- planning --------------------------------------------------------------------------------
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
        except BsrnEdgeError:  # unreadable now: let the run report it
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


def list_inputs(src: Path) -> list[Path]:
    """The image files of ``src`` (a file or a folder), sorted; temporary files of unfinished writes are never inputs."""
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if not src.is_dir():
        return [src]
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not is_partial(p) and not p.is_dir())
    if not files:
        raise InputError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


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


def refuse_inputs(jobs: list[Job], files: list[Path]) -> list[Job]:
    """``jobs``, each whose output is one of the input ``files`` carrying a refusal (an input is never overwritten)."""
    inputs = {f.resolve() for f in files}
    return [replace(j, refusal=f"{j.dst}: is an input file; refusing to overwrite it (choose another -o)")
            if j.dst.resolve() in inputs else j for j in jobs]


def plan_jobs(src: Path, dst: Path, ext: str | None, suffix: str = "") -> list[Job]:
    """Every input with its output, planned before any work (see :func:`_folder_names` for name clashes).
    ``ext``: the output extension (None: each input's own where it can be written, else png)."""
    files = list_inputs(src)
    if src.is_dir() or dst.is_dir() or not dst.suffix:
        if dst.exists() and not dst.is_dir():
            raise InputError(f"-o {dst}: is a file; for a folder of inputs, -o must be a folder (or a new name)")
        jobs = folder_jobs(files, dst, ext, suffix)
    else:
        e = ext or output_ext(dst.suffix)
        if e is None:
            raise InputError(f"{dst}: unsupported output extension; use .png, .jpg, .webp or .tif")
        fmt = FORMATS[e]
        alpha = None if holds_alpha(fmt) else dst.parent / _alpha_name(dst.name, _taken_names([], files, dst.parent))
        jobs = _writable([Job(files[0], dst, fmt, alpha_dst=alpha)])
    return refuse_inputs(jobs, files)


# -- running ---------------------------------------------------------------------------------
@dataclass
class Tally:
    """What a run did; ``stopped`` says why the batch ended early (None when it did not)."""

    total: int
    written: int = 0
    skipped: int = 0
    failed: int = 0
    stopped: str | None = None

    def summary(self) -> str:
        left = self.total - self.written - self.skipped - self.failed
        text = f"{self.written} written, {self.failed} failed, {self.skipped} skipped (already done)"
        if left:
            text += f", {left} not attempted"
        return f"stopped: {self.stopped}. {text}" if self.stopped else text


def _write_failure(exc: OSError, dst: Path) -> tuple[str, str | None]:
    """(message for this file, reason to stop the batch or None) for a failed write of ``dst``."""
    what = exc.strerror or str(exc)
    msg = f"{dst}: cannot write it ({what})"
    if exc.errno in _STOP_ERRNOS:
        return msg, f"{dst.parent}: {_STOP_ERRNOS[exc.errno]}; no later file could be written"
    if exc.errno in (errno.EACCES, errno.EPERM) and not os.access(dst.parent, os.W_OK | os.X_OK):
        return msg, f"{dst.parent}: the output folder is not writable; fix its permissions or choose another -o"
    return msg, None


def upscale_picture(pixels: np.ndarray, up, outscale: float | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The network's output, resampled (Lanczos) to ``outscale`` × the input size when that differs."""
    out = up.upscale(pixels)
    if outscale is None or outscale == up.scale:
        return out
    return resize(out, *outscale_size(pixels.shape[0], pixels.shape[1], outscale))


def _run_one(job: Job, up, force: bool, options: ImageOptions = ImageOptions()) -> str:  # type: ignore[no-untyped-def]
    """Upscale one job; returns "written" or "skipped", raises BsrnEdgeError / OSError on failure."""
    if job.refusal:
        raise InputError(job.refusal)
    if job.done(options.max_pixels) and not force:
        return "skipped"
    pic = read_image(job.src, max_pixels=options.max_pixels)
    pixels, dst, fmt = pic.pixels, job.dst, job.fmt
    if job.alpha_dst is not None and pixels.ndim == 3 and pixels.shape[2] == 4:
        if not has_transparency(pixels):  # an alpha that hides nothing: drop it before the network, JPEG loses nothing
            pixels = pixels[..., :3]
        else:
            dst, fmt = job.alpha_dst, FORMATS["png"]
    if dst.is_dir():
        raise InputError(f"{dst}: a folder has the output's name; move it away or choose another -o")
    if dst != job.dst:
        say(f"{job.src.name} has transparency, which {job.fmt} cannot hold: writing {dst.name} (PNG) instead")
    out = upscale_picture(pixels, up, options.outscale)
    try:
        write_image(out, dst, fmt, icc=pic.icc, exif=pic.exif, lossless=options.lossless and fmt == FORMATS["webp"])
    except OSError as exc:
        raise WriteError(dst, exc) from exc
    return "written"


class WriteError(OSError):
    """An OSError while writing ``dest`` (which may differ from the job's planned name)."""

    def __init__(self, dest: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.dest = dest


def attempt(job: Job, up, force: bool, run=None,  # type: ignore[no-untyped-def]
            options: ImageOptions = ImageOptions()) -> tuple[str, str | None, str | None]:
    """Run one job without raising for a per-file error: (``"written"``, ``"skipped"`` or ``"failed"``,
    the failure's message, a reason to stop the batch). Used by this loop and by the Ray workers.
    ``run(job, up, force)`` does the work (default: an image with ``options``) and raises BsrnEdgeError / OSError."""
    try:
        return run(job, up, force) if run else _run_one(job, up, force, options), None, None
    except BsrnEdgeError as exc:
        return "failed", str(exc), None
    except OSError as exc:
        msg, stop = _write_failure(exc, getattr(exc, "dest", job.dst))
        return "failed", msg, stop


def count_outcome(tally: Tally, src: Path | str, outcome: str, msg: str | None, stop: str | None, say) -> bool:  # type: ignore[no-untyped-def]
    """Count one :func:`attempt` result into ``tally`` and report a failure; True when the batch must stop."""
    if outcome == "failed":
        tally.failed += 1
        say(f"failed {src}: {msg}")
        tally.stopped = tally.stopped or stop
        return stop is not None
    if outcome == "skipped":
        tally.skipped += 1
    else:
        tally.written += 1
    return False


def run_jobs(jobs: list[Job], up, force: bool, say, tally: Tally,  # type: ignore[no-untyped-def]
             options: ImageOptions = ImageOptions()) -> None:
    """Run the planned jobs in order, counting into ``tally`` as they end (so an interrupt keeps the counts);
    per-file errors are reported and counted, a stop reason ends the batch."""
    tqdm = require("tqdm").tqdm
    for job in tqdm(jobs, desc="upscaling", unit="img", file=sys.stderr, disable=len(jobs) < 2):
        if count_outcome(tally, job.src, *attempt(job, up, force, options=options), say):
            break


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the batch runs, so temporary files are removed on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def open_upscaler(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The Upscaler the command line asks for (its InputErrors, e.g. a tile outside the model's limits, are
    usage errors)."""
    from . import Upscaler

    try:
        return Upscaler(args.model, args.backend, tile=args.tile, overlap=args.overlap, batch=args.batch,
                        device=args.device, precision=args.precision, memory_mb=args.memory_mb)
    except InputError as exc:
        if str(exc).startswith("tile "):  # the library's parameter is the command line's --tile
            raise InputError(f"--{exc}") from exc
        raise


def name_suffix(args: argparse.Namespace) -> str:
    """What goes between an output's stem and extension: ``_<--suffix>`` (Real-ESRGAN's ``photo_out.png``)."""
    return f"_{args.suffix}" if args.suffix else ""


def image_options(args: argparse.Namespace) -> ImageOptions:
    """The image flags as :class:`ImageOptions`."""
    return ImageOptions(args.outscale, args.max_pixels, args.lossless)


def video_options(args: argparse.Namespace) -> VideoOptions:
    """The video flags as :class:`~bsrn_edge.runtime.video.VideoOptions`."""
    return VideoOptions(args.codec, args.crf, args.pix_fmt, args.frames or (0, None), args.preview, preset=args.preset)


def say(message: str) -> None:
    """One line on stderr that does not break a progress bar."""
    require("tqdm").tqdm.write(f"bsrn-upscale: {message}", file=sys.stderr)


def usage_error(exc: BaseException) -> int:
    """Print a command-line error found before any work; 3 for a missing optional dependency, else 2."""
    print(f"bsrn-upscale: error: {exc}", file=sys.stderr)
    return EXIT_MISSING if isinstance(exc, MissingDependencyError) else EXIT_USAGE


def _run_video(args: argparse.Namespace) -> int:
    """One video file through :func:`~bsrn_edge.runtime.video.upscale_video`, with a progress bar."""
    from .video import encoder_settings, output_for, probe_video, upscale_video

    tqdm = require("tqdm").tqdm
    options = video_options(args)
    try:  # the command line, the input and the encoder settings, before any file is touched
        dst = output_for(args.input, args.output)
        info = probe_video(args.input)
        codec, pix_fmt, _ = encoder_settings(options, dst, info.audio)
        up = open_upscaler(args)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    if dst.exists() and not args.force:
        print(f"bsrn-upscale: {dst}: exists, skipped as done (--force redoes it)", file=sys.stderr)
        return EXIT_OK
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}; {info.width}×{info.height} → "
          f"{info.width * up.scale}×{info.height * up.scale}, {codec} {pix_fmt}", file=sys.stderr)
    remove_partials([dst])
    bar = tqdm(total=info.frames_to_run(options), unit="frame", desc=dst.name, file=sys.stderr)
    try:
        with _terminate_as_interrupt(), bar:
            report = upscale_video(args.input, dst, up, options, on_frame=bar.update, on_damage=say)
    except KeyboardInterrupt:
        print(f"bsrn-upscale: interrupted; nothing was written to {dst}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BsrnEdgeError, OSError) as exc:
        msg = _write_failure(exc, dst)[0] if isinstance(exc, OSError) else str(exc)
        print(f"bsrn-upscale: failed {args.input}: {msg}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        remove_partials([dst])
    damaged = f"; {len(report.damaged)} damaged part(s) skipped, listed above" if report.damaged else ""
    print(f"bsrn-upscale: wrote {dst} ({report.frames} frames, {report.audio_packets} audio packets copied{damaged})",
          file=sys.stderr)
    return EXIT_OK


def _flags_for_the_other_kind(args: argparse.Namespace, video: bool) -> list[str]:
    """The flags given that apply only to images (when the input is a video) or only to videos (when not)."""
    image_flags = (("-s/--outscale", args.outscale), ("-f/--ext", args.ext), ("--suffix", args.suffix or None),
                   ("--lossless", args.lossless or None))
    video_flags = (("--codec", args.codec), ("--crf", args.crf), ("--preset", args.preset), ("--pix-fmt", args.pix_fmt),
                   ("--frames", args.frames), ("--preview", args.preview))
    return [flag for flag, value in (image_flags if video else video_flags) if value is not None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lossless and args.ext == "jpg":
        return usage_error(InputError("--lossless applies to WebP (PNG and TIFF are always lossless); JPEG has no "
                                      "lossless mode: drop --lossless or use -f webp / -f png"))
    if args.ray is not None or args.actors or args.cpus_per_actor or args.segment_seconds is not None:
        from bsrn_edge.distributed.command import run_command

        return run_command(args)
    video = looks_like_video(args.input)
    misused = _flags_for_the_other_kind(args, video)
    if misused:
        kind = "images" if video else "videos"
        what = "a video, which comes out at the model's scale in the container -o names" if video else "not a video"
        return usage_error(InputError(f"{', '.join(misused)} apply to {kind}; {args.input} is {what}"))
    if video:
        return _run_video(args)
    try:  # everything that can be wrong with the command line, before any file is touched
        jobs = plan_jobs(args.input, args.output, args.ext, name_suffix(args))
        up = open_upscaler(args)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}", file=sys.stderr)
    outputs = [p for j in jobs for p in j.outputs]
    remove_partials(outputs)  # left by a killed run
    tally = Tally(len(jobs))
    try:
        with _terminate_as_interrupt():
            run_jobs(jobs, up, args.force, say, tally, image_options(args))
    except KeyboardInterrupt:
        tally.stopped = "interrupted; run the same command again to resume"
        print(f"bsrn-upscale: {tally.summary()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        remove_partials(outputs)
    print(f"bsrn-upscale: {tally.summary()}", file=sys.stderr)
    return EXIT_FAILED if tally.failed or tally.stopped else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
