"""Running planned jobs: one input at a time, a failure counted and reported without stopping the batch
(unless nothing after it could succeed), shared by ``bsrn-upscale`` and the Ray workers."""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import OUTPUT_FORMATS as FORMATS
from bsrn_edge.imageio import read_image, write_image
from bsrn_edge.pixels import outscale_size, resize

from .jobs import VIDEO, ImageOptions, Job, has_transparency
from .video.options import VideoOptions

__all__ = ["Tally", "WriteError", "attempt", "count_outcome", "error_text", "run_jobs", "say", "upscale_picture",
           "video_runner", "write_failure", "folder_stop", "TileBar"]

# write errors after which no later file can succeed either: the batch stops with its summary
_STOP_ERRNOS = {errno.EROFS: "read-only file system", errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


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


def write_failure(exc: OSError, dst: Path) -> tuple[str, str | None]:
    """(message for this file, reason to stop the batch or None) for a failed write of ``dst``."""
    what = exc.strerror or str(exc)
    msg = f"{dst}: cannot write it ({what})"
    if exc.errno in _STOP_ERRNOS:
        return msg, f"{dst.parent}: {_STOP_ERRNOS[exc.errno]}; no later file could be written"
    if exc.errno in (errno.EACCES, errno.EPERM) and not os.access(dst.parent, os.W_OK | os.X_OK):
        return msg, _not_writable(dst.parent)
    return msg, None


def _not_writable(folder: Path) -> str:
    return f"{folder}: the output folder is not writable; fix its permissions or choose another -o"


def folder_stop(stop: str | None, dst: Path, remaining: Iterable[Path]) -> str | None:
    """``stop`` (from :func:`write_failure` for ``dst``) as it applies to the rest of the batch: an output folder that
    is not writable ends the batch only when every ``remaining`` output goes into it. In a tree the other folders'
    files go on (``None``), and this folder's fail one by one."""
    if stop is None or stop != _not_writable(dst.parent):
        return stop
    return stop if all(p.parent == dst.parent for p in remaining) else None


def upscale_picture(pixels: np.ndarray, up, outscale: float | None,  # type: ignore[no-untyped-def]
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The network's output, resampled (Lanczos) to ``outscale`` × the input size when that differs;
    ``progress(done, total)`` hears of the tiles as they finish."""
    out = up.upscale(pixels, progress=progress) if progress is not None else up.upscale(pixels)
    if outscale is None or outscale == up.scale:
        return out
    return resize(out, *outscale_size(pixels.shape[0], pixels.shape[1], outscale))


def _read(job: Job, options: ImageOptions):  # type: ignore[no-untyped-def]
    """The input as a Picture; a file that cannot be opened is the input's failure (InputError naming it)."""
    try:
        return read_image(job.src, max_pixels=options.max_pixels)
    except OSError as exc:
        raise InputError(f"{job.src}: cannot read it ({exc.strerror or exc})") from exc


def _run_one(job: Job, up, force: bool, options: ImageOptions = ImageOptions(),  # type: ignore[no-untyped-def]
             progress: Callable[[int, int], None] | None = None) -> str:
    """Upscale one job; returns "written" or "skipped", raises BsrnEdgeError / OSError on failure."""
    if job.refusal:
        raise InputError(job.refusal)
    if job.done(options.max_pixels) and not force:
        return "skipped"
    pic = _read(job, options)
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
    out = upscale_picture(pixels, up, options.outscale, progress)
    try:
        write_image(out, dst, fmt, icc=pic.icc, exif=pic.exif, lossless=options.lossless and fmt == FORMATS["webp"])
    except OSError as exc:
        raise WriteError(dst, exc) from exc
    return "written"


def video_runner(options: VideoOptions, on_damage: Callable[[str], None] | None = None,
                 on_frame: Callable[[], None] | None = None) -> Callable[[Job, Any, bool], str]:
    """What runs a video job (a whole file through ``upscale_video``, atomically): "skipped" when its output
    exists; a clip whose input ends before its container says is kept, and is this input's failure."""
    def run(job: Job, up: Any, force: bool) -> str:
        from .video import upscale_video

        if job.refusal:
            raise InputError(job.refusal)
        if job.dst.exists() and not force:
            return "skipped"
        report = upscale_video(job.src, job.dst, up, options, on_frame=on_frame, on_damage=on_damage)
        if report.ended_early:
            raise InputError(f"{job.src}: {report.ended_early}; {job.dst} was written and is partial")
        return "written"

    return run


class WriteError(OSError):
    """An OSError while writing ``dest`` (which may differ from the job's planned name)."""

    def __init__(self, dest: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.dest = dest


def attempt(job: Job, up, force: bool, run=None,  # type: ignore[no-untyped-def]
            options: ImageOptions = ImageOptions(), progress: Callable[[int, int], None] | None = None,
            ) -> tuple[str, str | None, str | None]:
    """Run one job without raising for a per-file error: (``"written"``, ``"skipped"`` or ``"failed"``,
    the failure's message, a reason to stop the batch). Used by this loop and by the Ray workers.
    ``run(job, up, force)`` does the work (default: an image with ``options``). Whatever goes wrong with one
    input (our errors, a backend's, numpy's, running out of memory) is that input's failure; only a write
    error after which no file could be written (a full disk, a read-only file system) stops the batch."""
    try:
        return run(job, up, force) if run else _run_one(job, up, force, options, progress), None, None
    except BsrnEdgeError as exc:
        return "failed", str(exc), None
    except OSError as exc:
        msg, stop = write_failure(exc, getattr(exc, "dest", job.dst))
        return "failed", msg, stop
    except Exception as exc:  # noqa: BLE001 - one input's failure, whatever its type, never the batch's
        return "failed", f"{job.src}: {error_text(exc)}", None


def error_text(exc: BaseException) -> str:
    """An unexpected exception in one line: its type and the first line of its message (at most 300 characters)."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}{': ' + first if first else ''}"


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


class TileBar:
    """A progress bar over one image's tiles (``progress(done, total)`` of ``Upscaler.upscale``), shown once
    an image turns out to need more than one tile; for a run of one large image, which has no batch bar."""

    def __init__(self, name: str):
        self.name = name
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < 2:
                return
            self.bar = require("tqdm").tqdm(total=total, desc=self.name, unit="tile", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_jobs(jobs: list[Job], up, force: bool, say, tally: Tally,  # type: ignore[no-untyped-def]
             options: ImageOptions = ImageOptions(), video: VideoOptions = VideoOptions()) -> None:
    """Run the planned jobs in order, counting into ``tally`` as they end (so an interrupt keeps the counts);
    per-file errors are reported and counted, a stop reason ends the batch. One image alone gets a bar of
    its tiles instead of the batch's."""
    tqdm = require("tqdm").tqdm
    videos = video_runner(video, on_damage=say)
    blocked: dict[Path, str] = {}  # output folders found not writable while others are: their files fail unrun
    for k, job in enumerate(tqdm(jobs, desc="upscaling", unit="img", file=sys.stderr, disable=len(jobs) < 2)):
        if job.dst.parent in blocked:
            count_outcome(tally, job.src, "failed", f"{job.dst}: not written, {blocked[job.dst.parent]}", None, say)
            continue
        tiles = TileBar(job.src.name) if len(jobs) == 1 else None
        before = [p.exists() for p in job.outputs]
        try:
            result = attempt(job, up, force, videos if job.fmt == VIDEO else None, options, tiles)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM; an output renamed into place just before it is done: count it
            tally.written += any(p.exists() and not b for p, b in zip(job.outputs, before))
            raise
        finally:
            if tiles is not None:
                tiles.close()
        outcome, msg, stop = result
        scoped = folder_stop(stop, job.dst, (j.dst for j in jobs[k + 1:]))
        if stop is not None and scoped is None:  # said with this file; the folder's later files fail unrun
            blocked[job.dst.parent], msg = stop, f"{msg}; {stop}"
        if count_outcome(tally, job.src, outcome, msg, scoped, say):
            break


def say(message: str) -> None:
    """One line on stderr that does not break a progress bar."""
    require("tqdm").tqdm.write(f"bsrn-upscale: {message}", file=sys.stderr)

