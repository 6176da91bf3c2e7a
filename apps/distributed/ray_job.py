"""The Ray Data side of a distributed run: a Dataset of jobs, a pool of actors each holding one ``Upscaler``.

The Dataset holds paths only (one row, and one block, per input: an image, or a whole video file run
through :func:`bsrn_edge.apps.video.upscale_video`, audio remuxed, or one segment of a long video:
see :mod:`.segments`); each actor decodes images with
``bsrn-upscale``'s own reader (:func:`bsrn_edge.imageio.read_image`) and writes with its atomic
writer, through :func:`bsrn_edge.apps.batch.attempt`, so outputs are the single-machine ones bit for
bit. ``ray.data.read_images`` is not used: checked on Ray 2.60, it ignores EXIF orientation (a rotated
JPEG comes out unrotated), drops the ICC profile (there is no column for it) and reads 16-bit colour
PNGs as 8-bit; only alpha survives (RGBA stays 4 channels).

The model reaches the workers as a path on shared storage, not through the object store: the inputs
and the output folder must be on storage every node reaches anyway, and a path keeps what sits beside
an ONNX file (its ``.fp16`` / ``.u8`` siblings, the FP32 fallback) and lets bundled names resolve from
each node's own installation. Each actor opens the model once, in its constructor.

An actor that dies is restarted by Ray and its unfinished items retried: Ray Data's actor pools default
to unlimited ``max_restarts`` and ``max_task_retries`` (tests/test_distributed.py kills an actor to
check it, since passing them explicitly is deprecated in Ray 2.60); a write cut short leaves only a hidden ``.part`` file, never a partial
file under a final name, and the driver removes those at the end.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import set_run_token

from ..batch import attempt, video_runner
from ..jobs import ImageOptions, Job
from ..video import Span, VideoOptions
from .manifest import STATUS_OF_OUTCOME, Entry
from .plan import VIDEO, ActorShape
from .segments import Joiner, parse_span, split_jobs

__all__ = ["WorkerOptions", "UpscaleActor", "connect", "run_on_ray"]



@dataclass(frozen=True)
class WorkerOptions:
    """What each actor needs to open its ``Upscaler`` (the arguments of ``bsrn-upscale``)."""

    model: str
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    tile: int | str | None = "auto"
    overlap: int | None = None
    batch: int = 1
    force: bool = False
    threads: int | None = None
    memory_mb: int = 768
    image: ImageOptions = ImageOptions()
    video: VideoOptions = VideoOptions()
    segment_seconds: float = 60.0  # a longer video is upscaled in segments of this length (0: never)
    run_token: str = ""  # the driver's (bsrn_edge.imageio.run_token): the workers' temporaries are its run's


class UpscaleActor:
    """A ``map_batches`` callable: one ``Upscaler`` opened per actor, one result row per job.

    A per-file failure is a row with status ``failed`` and its reason, never an exception, so one bad
    image does not stop the others; ``stop`` carries a reason to end the run (a full disk). A video
    job runs the whole file in this actor, as single-machine ``bsrn-upscale`` does.
    """

    def __init__(self, options: WorkerOptions):
        from bsrn_edge.runtime import Upscaler

        o = options
        self.up = Upscaler(o.model, o.backend, tile=o.tile, overlap=o.overlap, batch=o.batch, device=o.device,  # type: ignore[arg-type]
                           precision=o.precision, threads=o.threads, memory_mb=o.memory_mb)
        self.force = o.force
        self.image = o.image
        self.video = o.video
        self._videos = video_runner(o.video)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        if o.run_token:
            set_run_token(o.run_token)  # temporaries named as the driver's, whose lock says the run is alive

    def _segment_runner(self, span: Span) -> Callable[[Job, Any, bool], str]:
        """Runs one segment of a video (always written: a segment is a temporary of this run); a segment whose
        input ends before its container says fails, with the times (the video cannot be joined whole)."""
        from ..video import upscale_segment

        def run(job: Job, up: Any, force: bool) -> str:
            report = upscale_segment(job.src, job.dst, up, span, self.video)
            if report.ended_early:
                raise InputError(f"{job.src}: {report.ended_early}")
            return "written"

        return run

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        rows: dict[str, list[str]] = {k: [] for k in ("input", "output", "status", "reason", "stop", "worker")}
        spans = batch["span"] if "span" in batch else [""] * len(batch["src"])
        alphas = batch["alpha"] if "alpha" in batch else [""] * len(batch["src"])
        for src, dst, fmt, refusal, alpha, span in zip(batch["src"], batch["dst"], batch["fmt"], batch["refusal"],
                                                       alphas, spans):
            job = Job(Path(str(src)), Path(str(dst)), str(fmt), str(refusal) or None, Path(str(alpha)) if alpha else None)
            segment = parse_span(str(span))
            run = self._segment_runner(segment) if segment else self._videos if job.fmt == VIDEO else None
            outcome, msg, stop = attempt(job, self.up, self.force, run, self.image)
            for key, value in (("input", src), ("output", dst), ("status", STATUS_OF_OUTCOME[outcome]), ("reason", msg),
                               ("stop", stop), ("worker", self.worker)):
                rows[key].append(str(value or ""))
        return rows


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (None or "": ``$RAY_ADDRESS``, else a new local Ray).

    Returns True when this call started the connection (the caller shuts it down), False when Ray was
    already initialised in this process (then it is left as it is).
    """
    ray = require("ray")
    if ray.is_initialized():
        return False
    ray.init(address=address or None, log_to_driver=True)
    return True


def cluster_resources() -> dict[str, float]:
    """The connected cluster's total resources (``CPU``, ``GPU``, ...)."""
    return dict(require("ray").cluster_resources())


def run_on_ray(jobs: Sequence[Job], options: WorkerOptions, shape: ActorShape) -> Iterator[tuple[Entry, str | None]]:
    """Upscale ``jobs`` on the connected cluster; yields (manifest entry, reason to stop or None) per job
    as each finishes, in no particular order (videos, the long ones, are queued first). A video of at
    least 1½ × ``options.segment_seconds`` (unless ``--frames``/``--preview`` trim it) runs as one task per
    segment and is joined here, on the driver, when its last segment is in (:mod:`.segments`); it still
    yields one entry. Stop iterating to cancel the rest."""
    if not jobs:
        return
    ray = require("ray")
    require("ray.data")
    seconds = 0.0 if options.video.trimmed else options.segment_seconds
    items, split = split_jobs(sorted(jobs, key=lambda j: j.fmt != VIDEO), seconds)
    joiner = Joiner(split)
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    pool = ray.data.ActorPoolStrategy(size=min(shape.actors, len(items)))
    ds = ds.map_batches(UpscaleActor, fn_constructor_kwargs={"options": options}, batch_size=1, batch_format="numpy",
                        compute=pool, num_cpus=shape.cpus, num_gpus=shape.gpus or None)
    try:
        for row in ds.iter_rows():
            stop = str(row["stop"]) or None
            entry = joiner.add(_entry(row), stop)
            if entry is not None:
                yield entry, stop
    finally:
        joiner.close()


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(str(row["input"]), str(row["output"]), str(row["status"]),  # type: ignore[arg-type]
                 str(row["reason"]) or None, str(row["worker"]) or None)
