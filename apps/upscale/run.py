"""bsrn-upscale: upscale image files, folders and video files (thin wrapper over ``Upscaler``; ``--ray``
hands a collection to :mod:`bsrn_edge.apps.upscale.on_ray`).

Exit codes: 0 when every input was written or already done (skipped); 1 when some input failed or the
batch stopped on a write error that makes going on pointless; 2 for a usage error, found before any
file is touched; 3 when an optional dependency is missing; 130 when interrupted (Ctrl-C or SIGTERM).
Output names are planned for the whole batch first (see :func:`~bsrn_edge.apps.jobs.plan_jobs`); an
existing output is taken as done, because outputs are only ever renamed into place once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Iterator

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import remove_partials

from .. import args as cli
from ..args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from ..batch import Tally, run_jobs, say, write_failure
from ..jobs import plan_jobs
from ..video import looks_like_video
from .parser import build_parser, image_options, name_suffix, video_options

__all__ = ["main", "open_upscaler", "usage_error"]


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
    from bsrn_edge.runtime import Upscaler

    try:
        return Upscaler(args.model, args.backend, tile=args.tile, overlap=args.overlap, batch=args.batch,
                        device=args.device, precision=args.precision, memory_mb=args.memory_mb)
    except InputError as exc:
        if str(exc).startswith("tile "):  # the library's parameter is the command line's --tile
            raise InputError(f"--{exc}") from exc
        raise


def _choice(up) -> str:  # type: ignore[no-untyped-def]
    """`` (auto picked …: why)`` when ``backend="auto"`` chose the engine by measuring it, else nothing."""
    why = getattr(up.backend, "choice", "")
    return f" ({why})" if why else ""


def usage_error(exc: BaseException) -> int:
    """Print a command-line error found before any work; 3 for a missing optional dependency, else 2."""
    return cli.usage_error("bsrn-upscale", exc)


def _run_video(args: argparse.Namespace) -> int:
    """One video file through :func:`~bsrn_edge.apps.video.upscale_video`, with a progress bar."""
    from ..video import encoder_settings, output_for, probe_video, upscale_video

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
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}{_choice(up)}; {info.width}×{info.height} → "
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
        msg = write_failure(exc, dst)[0] if isinstance(exc, OSError) else str(exc)
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
        from .on_ray import run_command

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
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}{_choice(up)}", file=sys.stderr)
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
