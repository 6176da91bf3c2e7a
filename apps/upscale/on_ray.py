"""``bsrn-upscale --ray [ADDRESS]``: plan on the driver, upscale on a Ray cluster, keep a manifest.

Exit codes as ``bsrn-upscale``: 0 when every input is done or skipped, 1 when some input failed (each
one is in the manifest with its reason, and the others still finish) or the cluster failed, 2 for a
usage error found before anything is written, 3 without Ray installed, 130 when interrupted. Re-running the same command sends
only what is not done yet.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError
from bsrn_edge.imageio import remove_partials

from ..args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ..batch import Tally, count_outcome, say
from ..distributed.manifest import MANIFEST_NAME, OUTCOME_OF_STATUS, Entry, ManifestLog, read_manifest, resume, write_manifest
from ..distributed.plan import actor_shape, discover_inputs, plan_outputs
from ..distributed.ray_job import WorkerOptions, cluster_resources, connect, run_on_ray
from ..jobs import Job
from .parser import image_options, name_suffix, video_options
from .run import open_upscaler as open_checked  # the single-machine model and --tile checks
from .run import usage_error

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
                         **extra)


def _on_cluster(todo: list[Job], args: argparse.Namespace, options: WorkerOptions, tally: Tally,
                entries: dict[str, Entry], manifest: Path) -> None:
    """Send ``todo`` to the cluster, recording each result in ``entries``, the manifest log and ``tally``."""
    tqdm = require("tqdm").tqdm
    started = connect(args.ray)
    try:
        require("ray.data").DataContext.get_current().enable_progress_bars = False  # ours below
        shape = actor_shape(cluster_resources(), args.device, args.actors, args.cpus_per_actor)
        per = f"{shape.cpus:g} CPU" + (f", {shape.gpus:g} GPU" if shape.gpus else "")
        say(f"{len(todo)} to upscale on Ray with {shape.actors} actor(s) of {per}")
        log = ManifestLog(manifest)
        with tqdm(total=len(todo), desc="upscaling", unit="img", file=sys.stderr, disable=len(todo) < 2) as bar:
            try:
                for entry, stop in run_on_ray(todo, replace(options, threads=shape.threads), shape):
                    log.add(entry)
                    entries[entry.input] = entry
                    bar.update()
                    if count_outcome(tally, entry.input, OUTCOME_OF_STATUS[entry.status], entry.reason, stop, say):
                        break
            finally:
                log.close()
    finally:
        if started:
            require("ray").shutdown()


def run_command(args: argparse.Namespace) -> int:
    """Run ``bsrn-upscale`` with ``--ray`` (``args`` from :func:`bsrn_edge.apps.upscale.parser.build_parser`)."""
    if args.ray is None:
        print("bsrn-upscale: error: --actors, --cpus-per-actor and --segment-seconds need --ray", file=sys.stderr)
        return EXIT_USAGE
    try:  # everything that can be wrong with the command line, before any file is touched
        ray_error = require("ray").exceptions.RayError
        jobs = plan_outputs(discover_inputs(args.input, exclude=args.output), args.output, args.ext, name_suffix(args))
        options = _worker_options(args)
        manifest = Path(os.path.abspath(args.output)) / MANIFEST_NAME
        previous = read_manifest(manifest)
    except (BsrnEdgeError, ValueError) as exc:
        return usage_error(exc)
    todo, settled = resume(jobs, previous, args.force)
    entries = {e.input: e for e in settled}
    tally = Tally(len(jobs), skipped=len(settled))
    outputs = [p for j in jobs for p in j.outputs]
    remove_partials(outputs)  # left by a killed run
    code = EXIT_OK
    try:
        if todo:
            _on_cluster(todo, args, options, tally, entries, manifest)
    except KeyboardInterrupt:
        tally.stopped, code = "interrupted; run the same command again to resume", EXIT_INTERRUPTED
    except BsrnEdgeError as exc:  # found once connected: --device cuda on a cluster without GPUs
        print(f"bsrn-upscale: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except ray_error as exc:  # the cluster itself failed: what finished is in the manifest
        tally.stopped, code = f"the Ray job failed ({type(exc).__name__}: {exc})", EXIT_FAILED
    finally:
        remove_partials(outputs)
        keep = [e for j in jobs if (e := entries.get(str(j.src)) or previous.get(str(j.src)))]  # not attempted: as before
        if keep or manifest.exists():
            write_manifest(manifest, keep)
    print(f"bsrn-upscale: {tally.summary()}; manifest: {manifest}", file=sys.stderr)
    if code != EXIT_OK:
        return code
    return EXIT_FAILED if tally.failed or tally.stopped else EXIT_OK
