"""bsrn-upscale: upscale image files, folders and video files (thin wrapper over ``Upscaler``; ``--ray``
hands a collection to :mod:`bsrn_edge.apps.upscale.on_ray`).

Exit codes: 0 when every input was written or already done (skipped); 1 when some input failed or the
batch stopped on a write error that makes going on pointless; 2 for a usage error, found before any
file is touched; 3 when an optional dependency is missing; 130 on Ctrl-C and 143 on SIGTERM (the summary
is printed either way). A folder is searched recursively and each output keeps its input's path relative
to it, as with ``--ray`` (:func:`~bsrn_edge.apps.jobs.plan_jobs`); an existing output is taken as done,
because outputs are only ever renamed into place once complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import BsrnEdgeError, InputError
from bsrn_edge.imageio import RunLock, remove_partials

from .. import args as cli
from ..args import EXIT_FAILED, EXIT_OK, interrupt_word, interrupted_exit, terminate_raises
from ..batch import Tally, error_text, run_jobs, say, write_failure
from ..jobs import plan_jobs
from ..video import looks_like_video
from .parser import build_parser, image_options, name_suffix, video_options

__all__ = ["main", "open_upscaler", "usage_error", "check_model", "output_root"]

#: the largest scale a model's metadata may claim (BSRN is ×2 to ×4; other SR networks reach ×8)
MAX_SCALE = 16


def check_model(up, model: str) -> None:  # type: ignore[no-untyped-def]
    """Refuse a model whose metadata cannot be right before any file is touched: a scale outside 1 to
    :data:`MAX_SCALE`, a minimum input side below 1, or an ONNX whose input height and width are fixed
    (bsrn-upscale runs images of any size)."""
    m = up.meta
    checks = (("scale", m.scale, 1 <= m.scale <= MAX_SCALE), ("minimum input side", m.min_size, m.min_size >= 1),
              ("tile", m.tile, m.tile >= 1))
    bad = [f"{name} {value}" for name, value, ok in checks if not ok]
    if bad:
        raise InputError(f"{model}: its metadata cannot be right ({', '.join(bad)}; a scale is 1 to {MAX_SCALE}, a "
                         f"minimum side and a tile at least 1). Export the model again with bsrn-export")
    shape = _input_shape(up.backend)
    if shape:
        hw = shape[1:3] if m.pixels == "uint8" else shape[2:4]
        if len(hw) == 2 and all(isinstance(d, int) and d > 0 for d in hw):
            raise InputError(f"{model}: its input size is fixed at {hw[1]}×{hw[0]}; bsrn-upscale runs images of any "
                             f"size and needs free height and width (bsrn-export writes them)")


def _input_shape(backend) -> list[int | str]:  # type: ignore[no-untyped-def]
    """The dimensions of an ONNX model's input (a number where fixed, a name where free), whatever engine runs it;
    [] when not known (an engine file, a checkpoint, or no onnx package)."""
    session = getattr(backend, "session", None)
    if session is not None and hasattr(session, "get_inputs"):
        return list(session.get_inputs()[0].shape)
    path = getattr(backend, "path", None)
    if path is None or Path(path).suffix.lower() != ".onnx" or not available("onnx"):
        return []
    graph = require("onnx").load(str(path), load_external_data=False).graph
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]


def open_upscaler(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The Upscaler the command line asks for, checked by :func:`check_model` (its InputErrors, e.g. a tile
    outside the model's limits, are usage errors; a checkpoint without PyTorch is a missing dependency)."""
    from bsrn_edge.runtime import Upscaler

    try:
        up = Upscaler(args.model, args.backend, tile=args.tile, overlap=args.overlap, batch=args.batch,
                      device=args.device, precision=args.precision, memory_mb=args.memory_mb)
    except InputError as exc:
        if str(exc).startswith("tile "):  # the library's parameter is the command line's --tile
            raise InputError(f"--{exc}") from exc
        if str(args.model) not in str(exc):  # e.g. impossible size rules read from the model's metadata
            raise InputError(f"{args.model}: {exc}") from exc
        raise
    check_model(up, args.model)
    return up


def output_root(src: Path, output: Path) -> Path:
    """The folder a run writes into (its lock lives there): ``-o`` itself for a folder of inputs (whatever its name,
    ``photos.x4`` too, as :func:`~bsrn_edge.apps.jobs.plan_jobs` reads it), or for a folder or a new name without a
    suffix; else the folder of the output file."""
    return output if src.is_dir() or output.is_dir() or not output.suffix else output.parent


def _choice(up) -> str:  # type: ignore[no-untyped-def]
    """`` (auto picked …: why)`` when ``backend="auto"`` chose the engine by measuring it, else nothing."""
    why = getattr(up.backend, "choice", "")
    return f" ({why})" if why else ""


def usage_error(exc: BaseException) -> int:
    """Print a command-line error found before any work; 3 for a missing optional dependency, else 2."""
    return cli.usage_error("bsrn-upscale", exc)


def _video_plan(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(output, probe, codec, pixel format, upscaler) for one video, everything checked before any file is touched."""
    from ..video import encoder_settings, output_for, probe_video

    options = video_options(args)
    dst = output_for(args.input, args.output)
    info = probe_video(args.input)
    if info.starts_past_end(options):
        raise InputError(f"--frames starts at frame {options.frames[0]} but {args.input} has {info.frames} "
                         f"frames; nothing was written")
    codec, pix_fmt, _ = encoder_settings(options, dst, info.audio)
    return dst, info, codec, pix_fmt, open_upscaler(args)


def _run_video(args: argparse.Namespace) -> int:
    """One video file through :func:`~bsrn_edge.apps.video.upscale_video`, with a progress bar."""
    from ..video import upscale_video

    tqdm = require("tqdm").tqdm
    try:
        dst, info, codec, pix_fmt, up = _video_plan(args)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    if dst.exists() and not args.force:
        print(f"bsrn-upscale: {dst}: exists, skipped as done (--force redoes it)", file=sys.stderr)
        return EXIT_OK
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}{_choice(up)}; {info.width}×{info.height} → "
          f"{info.width * up.scale}×{info.height * up.scale}, {codec} {pix_fmt}", file=sys.stderr)
    bar = tqdm(total=info.frames_to_run(video_options(args)), unit="frame", desc=dst.name, file=sys.stderr)
    try:
        with terminate_raises(), RunLock(dst.parent), bar:
            try:
                remove_partials([dst])  # left by a killed run
                report = upscale_video(args.input, dst, up, video_options(args), on_frame=bar.update, on_damage=say)
            finally:
                remove_partials([dst])
    except KeyboardInterrupt as exc:
        print(f"bsrn-upscale: {interrupt_word(exc)}; nothing was written to {dst}", file=sys.stderr)
        return interrupted_exit(exc)
    except Exception as exc:  # noqa: BLE001 - reported as this input's failure, never as a traceback
        print(f"bsrn-upscale: failed {args.input}: {_failure_text(exc, dst)}", file=sys.stderr)
        return EXIT_FAILED
    damaged = f"; {len(report.damaged)} damaged part(s) skipped, listed above" if report.damaged else ""
    print(f"bsrn-upscale: wrote {dst} ({report.frames} frames, {report.audio_packets} audio packets copied{damaged})",
          file=sys.stderr)
    if report.ended_early:
        print(f"bsrn-upscale: failed {args.input}: {report.ended_early}; {dst} is partial", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _failure_text(exc: Exception, dst: Path) -> str:
    if isinstance(exc, OSError):
        return write_failure(exc, dst)[0]
    return str(exc) if isinstance(exc, BsrnEdgeError) else error_text(exc)


def _flags_for_the_other_kind(args: argparse.Namespace, video: bool) -> list[str]:
    """The flags given that apply only to images (when the input is a video) or only to videos (when not)."""
    image_flags = (("-s/--outscale", args.outscale), ("-f/--ext", args.ext), ("--suffix", args.suffix or None),
                   ("--lossless", args.lossless or None))
    video_flags = (("--codec", args.codec), ("--crf", args.crf), ("--preset", args.preset), ("--pix-fmt", args.pix_fmt),
                   ("--frames", args.frames), ("--preview", args.preview))
    return [flag for flag, value in (image_flags if video else video_flags) if value is not None]


def _run_images(args: argparse.Namespace) -> int:
    """A file or a folder (recursive: its images and videos) through :func:`~bsrn_edge.apps.batch.run_jobs`."""
    try:  # everything that can be wrong with the command line, before any file is touched
        jobs = plan_jobs(args.input, args.output, args.ext, name_suffix(args))
        up = open_upscaler(args)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    print(f"bsrn-upscale: {up.meta.variant} ×{up.scale} on {up.backend_name}{_choice(up)}", file=sys.stderr)
    outputs = [p for j in jobs for p in j.outputs]
    tally = Tally(len(jobs))
    code = EXIT_OK
    try:
        with terminate_raises(), RunLock(output_root(args.input, args.output)):
            try:
                remove_partials(outputs)  # left by a killed run
                run_jobs(jobs, up, args.force, say, tally, image_options(args), video_options(args))
            finally:
                remove_partials(outputs)
    except KeyboardInterrupt as exc:
        code = interrupted(tally, exc)
    print(f"bsrn-upscale: {tally.summary()}", file=sys.stderr)
    return batch_exit(tally, code)


def interrupted(tally: Tally, exc: KeyboardInterrupt) -> int:
    """A batch stopped by Ctrl-C or SIGTERM: its reason in ``tally``, and the exit code it calls for."""
    tally.stopped = f"{interrupt_word(exc)}; run the same command again to resume"
    return interrupted_exit(exc)


def batch_exit(tally: Tally, code: int) -> int:
    """A batch's exit code: ``code`` when set (an interrupt, a usage error), else 1 for any failure or stop, else 0."""
    return code or (EXIT_FAILED if tally.failed or tally.stopped else EXIT_OK)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lossless and args.ext == "jpg":
        return usage_error(InputError("--lossless applies to WebP (PNG and TIFF are always lossless); JPEG has no "
                                      "lossless mode: drop --lossless or use -f webp / -f png"))
    if args.ray is not None or args.actors or args.cpus_per_actor or args.segment_seconds is not None:
        from .on_ray import run_command

        return run_command(args)
    try:
        video = looks_like_video(args.input)
    except BsrnEdgeError as exc:  # a media file without video (an .m4a): not an image either
        return usage_error(exc)
    misused = [] if args.input.is_dir() else _flags_for_the_other_kind(args, video)  # a folder may hold both
    if misused:
        kind = "images" if video else "videos"
        what = "a video, which comes out at the model's scale in the container -o names" if video else "not a video"
        return usage_error(InputError(f"{', '.join(misused)} apply to {kind}; {args.input} is {what}"))
    return _run_video(args) if video else _run_images(args)


if __name__ == "__main__":
    raise SystemExit(main())
