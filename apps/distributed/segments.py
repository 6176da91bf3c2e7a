"""One long video as several Ray tasks: split on the driver, one segment per task, joined on the driver.

A video longer than 1½ × ``--segment-seconds`` is cut into spans of that length by timestamp
(:func:`bsrn_edge.apps.video.plan_segments`). Each span is one row of the Dataset: an actor upscales
it with :func:`~bsrn_edge.apps.video.upscale_segment` into a hidden temporary beside the output
(:func:`~bsrn_edge.apps.video.segment_path`, a name that ``remove_partials`` cleans up and that is
never taken for an input). Once every segment of a video has arrived, the driver joins them with
:func:`~bsrn_edge.apps.video.join_segments` (packets copied, nothing re-encoded; the audio copied
once from the input), removes the segments, and reports the video as one manifest entry. A failed
segment fails the whole video, with the segment's reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from bsrn_edge.errors import BsrnEdgeError
from bsrn_edge.imageio import remove_partials

from ..batch import error_text
from ..jobs import Job
from ..video import Span, join_segments, plan_segments, segment_path
from .manifest import Entry
from .plan import VIDEO

__all__ = ["SplitVideo", "split_jobs", "span_text", "parse_span", "Joiner"]

log = logging.getLogger(__name__)


def span_text(span: Span | None) -> str:
    """A span as a Dataset cell: ``"9/10:9/5"``, ``"9/5:"`` for one that runs to the end, "" for none."""
    if span is None:
        return ""
    return f"{span[0]}:{'' if span[1] is None else span[1]}"


def parse_span(text: str) -> Span | None:
    """The inverse of :func:`span_text`."""
    if not text:
        return None
    start, _, stop = text.partition(":")
    return Fraction(start), (Fraction(stop) if stop else None)


@dataclass
class SplitVideo:
    """A video job cut into segments, and the segment results that have arrived."""

    job: Job
    spans: list[Span]
    parts: list[Path]
    results: dict[int, Entry] = field(default_factory=dict)
    finished: bool = False


def _item(job: Job, dst: Path, span: Span | None) -> dict[str, str]:
    return {"src": str(job.src), "dst": str(dst), "fmt": job.fmt, "refusal": job.refusal or "",
            "alpha": str(job.alpha_dst or ""), "span": span_text(span)}


def split_jobs(jobs: Sequence[Job], seconds: float) -> tuple[list[dict[str, str]], list[SplitVideo]]:
    """(Dataset rows, the videos that were split) for ``jobs``: a video whose plan has several spans
    becomes one row per span; every other job (and a video the driver cannot probe: its worker then
    reports why) stays one row."""
    items: list[dict[str, str]] = []
    split: list[SplitVideo] = []
    for job in jobs:
        spans: list[Span] = []
        if job.fmt == VIDEO and seconds > 0 and not job.refusal:
            try:
                spans = plan_segments(job.src, seconds)
            except BsrnEdgeError as exc:  # no PyAV here, or not a video: the worker says so for this file
                log.debug("%s: not split (%s)", job.src, exc)
        if len(spans) < 2:
            items.append(_item(job, job.dst, None))
            continue
        video = SplitVideo(job, spans, [segment_path(job.dst, k) for k in range(len(spans))])
        split.append(video)
        items += [_item(job, part, span) for part, span in zip(video.parts, spans)]
    return items, split


def _seconds(span: Span) -> str:
    return f"{float(span[0]):.3f}–{'end' if span[1] is None else f'{float(span[1]):.3f}'} s"


class Joiner:
    """Collects segment results; gives back the video's entry once its last segment is in."""

    def __init__(self, videos: Sequence[SplitVideo]):
        self._by_part = {str(p): (v, k) for v in videos for k, p in enumerate(v.parts)}
        self._videos = list(videos)

    def add(self, entry: Entry, stop: str | None) -> Entry | None:
        """``entry`` itself when it is no segment; None while its video waits for segments; else the
        video's entry (joined: done; a segment failed, or the join: failed)."""
        found = self._by_part.get(entry.output)
        if found is None:
            return entry
        video, k = found
        if video.finished:
            return None
        video.results[k] = entry
        if stop is None and entry.status != "failed" and len(video.results) < len(video.parts):
            return None
        return self._finish(video)

    def _finish(self, video: SplitVideo) -> Entry:
        video.finished = True
        job, n = video.job, len(video.parts)
        workers = ",".join(sorted({e.worker for e in video.results.values() if e.worker})) or None
        failed = sorted((k, e) for k, e in video.results.items() if e.status == "failed")
        try:
            if failed:
                k, e = failed[0]
                return Entry.for_job(job, "failed",
                                     f"segment {k + 1}/{n} ({_seconds(video.spans[k])}): {e.reason}", workers)
            join_segments(job.src, video.parts, job.dst)
            return Entry.for_job(job, "done", None, workers)
        except Exception as exc:  # noqa: BLE001 - the video's failure (FFmpeg's errors too), never the driver's
            what = str(exc) if isinstance(exc, (BsrnEdgeError, OSError)) else error_text(exc)
            return Entry.for_job(job, "failed", f"joining the {n} segments: {what}", workers)
        finally:
            self._remove(video)

    @staticmethod
    def _remove(video: SplitVideo) -> None:
        remove_partials(video.parts)  # a segment's own temporary, left by a killed actor
        for part in video.parts:
            part.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the segments of every video not joined (the run was cut short)."""
        for video in self._videos:
            self._remove(video)
