"""``bsrn-upscale --ray [ADDRESS]``: plan on the driver, upscale on a Ray cluster, keep a manifest.

Exit codes as ``bsrn-upscale``: 0 when every input is done or skipped, 1 when some input failed (each
one is in the manifest with its reason, and the others still finish) or the cluster failed, 2 for a
usage error found before anything is written, 3 without Ray installed, 130 on Ctrl-C, 143 on SIGTERM. However
the run ends, the manifest holds every result that arrived and the summary is printed; a Ray this command
started is shut down with it. Re-running the same command sends only what is not done yet.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError
from bsrn_edge.imageio import RunLock, remove_partials, run_token

from ..args import EXIT_OK, EXIT_USAGE, restore_sigterm, terminate_raises
from ..batch import Tally, count_outcome, error_text, folder_stop, say, write_failure
from ..distributed.manifest import MANIFEST_NAME, OUTCOME_OF_STATUS, Entry, ManifestLog, read_manifest, resume, write_manifest
from ..distributed.plan import ActorShape, actor_shape, discover_inputs, plan_outputs
from ..distributed.ray_job import WorkerOptions, cluster_resources, connect, run_on_ray
from ..jobs import Job
from .parser import image_options, name_suffix, video_options
from .run import batch_exit, interrupted, usage_error
from .run import open_upscaler as open_checked  # the single-machine model and --tile checks

__all__ = ["run_command"]



def _worker_options(args: argparse.Namespace) -> WorkerOptions:
    """The actors' options, with the model checked here first where this machine can open it (a
    TensorRT engine or ``--device cuda`` may need the workers' GPUs; their errors come from Ray)."""
    model = Path(args.model)
    name = str(model.absolute()) if model.exists() else args.model  # workers do not share our folder
    if args.backend != "tensorrt" and not args.device.startswith("cuda"):
        open_checked(argparse.Namespace(**{**vars(args), "model": name}))
    extra = {} if args.segment_seconds is None else {"segment_seconds": float(args.segment_seconds)}
    return WorkerOptions(name, args.backend, args.device, args.precision, args.tile, args.overlap, args.batch,
                         args.force, memory_mb=args.memory_mb, image=image_options(args), video=video_options(args),
                         run_token=run_token(), **extra)


def _send(todo: list[Job], options: WorkerOptions, shape: ActorShape, tally: Tally, entries: dict[str, Entry],
          manifest: Path) -> None:
    """Send ``todo`` to the connected cluster, recording each result in ``entries``, the manifest log and ``tally``."""
    tqdm = require("tqdm").tqdm
    log = ManifestLog(manifest)
    with tqdm(total=len(todo), desc="upscaling", unit="img", file=sys.stderr, disable=len(todo) < 2) as bar:
        try:
            for entry, stop in run_on_ray(todo, replace(options, threads=shape.threads), shape):
                entries[entry.input] = entry
                bar.update()
                stop = folder_stop(stop, Path(entry.output), (j.dst for j in todo if str(j.src) not in entries))
                last = count_outcome(tally, entry.input, OUTCOME_OF_STATUS[entry.status], entry.reason, stop, say)
                log.add(entry)  # a full disk here ends the run (the caller says so); the entry is kept above
                if last:
                    break
        finally:
            log.close()


def _on_cluster(todo: list[Job], args: argparse.Namespace, options: WorkerOptions, tally: Tally,
                entries: dict[str, Entry], manifest: Path) -> None:
    """Connect (or start a local Ray), send ``todo``, and shut down what this command started, whatever happens."""
    ray = require("ray")
    started = not ray.is_initialized()
    ours = signal.getsignal(signal.SIGTERM)  # terminate_raises' handler, from run_command
    try:
        connect(args.ray)
        restore_sigterm(ours)  # ray.init installed its own (it exits 15); ours again, through the shutdown below
        require("ray.data").DataContext.get_current().enable_progress_bars = False  # ours below
        shape = actor_shape(cluster_resources(), args.device, args.actors, args.cpus_per_actor)
        per = f"{shape.cpus:g} CPU" + (f", {shape.gpus:g} GPU" if shape.gpus else "")
        say(f"{len(todo)} to upscale on Ray with {shape.actors} actor(s) of {per}")
        _send(todo, options, shape, tally, entries, manifest)
    finally:
        if started:
            ray.shutdown()  # the local Ray's processes end with this command
        restore_sigterm(ours)


def _written_unheard(todo: list[Job], entries: dict[str, Entry], force: bool, tally: Tally) -> None:
    """Jobs sent whose output appeared though their result never reached the driver (an actor finished it as
    the run was stopped): done by this run, so counted and recorded as such. Not with ``--force``, where the
    output may be the old one."""
    if force:
        return
    for job in todo:
        if str(job.src) not in entries and not job.refusal and job.done():
            entries[str(job.src)] = Entry.for_job(job, "done")
            tally.written += 1


def _finish(manifest: Path, jobs: list[Job], entries: dict[str, Entry], previous: dict[str, Entry], tally: Tally) -> None:
    """Rewrite the manifest, one line per input in plan order (not attempted: as before); a failure to write it
    is said, and stops the run."""
    keep = [e for j in jobs if (e := entries.get(str(j.src)) or previous.get(str(j.src)))]
    try:
        if keep or manifest.exists():
            write_manifest(manifest, keep)
    except OSError as exc:
        say(f"{manifest}: cannot write the manifest ({exc.strerror or exc})")
        tally.stopped = tally.stopped or write_failure(exc, manifest)[1] or "the manifest could not be written"


def _run(todo: list[Job], jobs: list[Job], args: argparse.Namespace, options: WorkerOptions, tally: Tally,
         previous: dict[str, Entry], manifest: Path, settled: list[Entry]) -> int:
    """The run itself, under the output folder's lock: what it did is in the manifest and the summary however it ends
    (``settled``: the inputs whose outputs were there already, recorded as done or skipped without Ray)."""
    entries: dict[str, Entry] = {e.input: e for e in settled}
    outputs = [p for j in jobs for p in j.outputs]
    code = EXIT_OK
    try:
        remove_partials(outputs)  # left by a killed run
        if todo:
            _on_cluster(todo, args, options, tally, entries, manifest)
    except KeyboardInterrupt as exc:
        code = interrupted(tally, exc)
    except BsrnEdgeError as exc:  # found once connected: --device cuda on a cluster without GPUs
        print(f"bsrn-upscale: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except OSError as exc:  # the manifest or the output folder on the driver
        msg, stop = write_failure(exc, Path(exc.filename) if exc.filename else manifest)
        say(msg)
        tally.stopped = stop or msg
    except Exception as exc:  # noqa: BLE001 - the cluster itself failed: what finished is in the manifest
        tally.stopped = f"the Ray job failed ({error_text(exc)})"
    finally:
        remove_partials(outputs)
        _written_unheard(todo, entries, args.force, tally)
        _finish(manifest, jobs, entries, previous, tally)
    print(f"bsrn-upscale: {tally.summary()}; manifest: {manifest}", file=sys.stderr)
    return batch_exit(tally, code)


def run_command(args: argparse.Namespace) -> int:
    """Run ``bsrn-upscale`` with ``--ray`` (``args`` from :func:`bsrn_edge.apps.upscale.parser.build_parser`)."""
    if args.ray is None:
        print("bsrn-upscale: error: --actors, --cpus-per-actor and --segment-seconds need --ray", file=sys.stderr)
        return EXIT_USAGE
    try:  # everything that can be wrong with the command line, before any file is touched
        require("ray")
        jobs = plan_outputs(discover_inputs(args.input, exclude=args.output), args.output, args.ext, name_suffix(args))
        options = _worker_options(args)
        manifest = Path(os.path.abspath(args.output)) / MANIFEST_NAME
        previous = read_manifest(manifest)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    todo, settled = resume(jobs, previous, args.force)
    tally = Tally(len(jobs), skipped=len(settled))
    with terminate_raises(), RunLock(manifest.parent):
        return _run(todo, jobs, args, options, tally, previous, manifest, settled)
