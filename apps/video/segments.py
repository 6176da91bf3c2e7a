"""One long video in segments: spans by timestamp, each upscaled on its own (Ray tasks), joined by remuxing."""

from __future__ import annotations

import heapq
import itertools
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import atomic_file, partial_path

from .options import Span, VideoOptions, VideoReport
from .pipeline import write_video
from .probe import av_error, open_input

__all__ = ["segment_spans", "plan_segments", "segment_path", "upscale_segment", "join_segments", "fill_dts"]


def segment_spans(start: Fraction, duration: Fraction | None, seconds: float) -> list[Span]:
    """Split a video stream that starts at ``start`` and lasts ``duration`` seconds into spans of
    ``seconds`` (each [from, to) in the input's own time; the last one runs to the end, whatever the
    container claimed). The last span takes the remainder when it is under half a span, so every span
    lasts ½ to 1½ ``seconds``. One span [start, None) when ``seconds`` is 0, the duration unknown or short."""
    if seconds <= 0 or not duration or duration <= 0:
        return [(start, None)]
    step = Fraction(seconds).limit_denominator(1_000_000)
    n = max(1, math.floor(duration / step + Fraction(1, 2)))
    cuts = [start + k * step for k in range(n)]
    return [(a, b) for a, b in zip(cuts, [*cuts[1:], None])]


def plan_segments(src: str | Path, seconds: float) -> list[Span]:
    """:func:`segment_spans` for ``src``'s first video stream (its start time and duration as the
    container states them); :class:`InputError` when ``src`` is no video."""
    path = Path(src)
    with open_input(path) as c:
        v = c.streams.video[0]
        tb = v.time_base or Fraction(1, 1_000_000)
        start = v.start_time * tb if v.start_time is not None else Fraction(0)
        if v.duration:
            duration: Fraction | None = v.duration * tb
        else:
            duration = Fraction(c.duration, 1_000_000) - start if c.duration else None
    return segment_spans(start, duration, seconds)


def segment_path(dst: str | Path, index: int) -> Path:
    """The hidden file that holds segment ``index`` of the output ``dst`` until the join: a temporary
    name of :mod:`bsrn_edge.imageio` (``remove_partials([dst])`` removes it; it is never an input)."""
    if not 0 <= index < 100_000:
        raise ValueError(f"segment index {index} out of range 0…99999")
    return partial_path(dst, f"seg{index:05d}")


def upscale_segment(src: str | Path, dst: str | Path, up: Any, span: Span, options: VideoOptions = VideoOptions(),
                    on_frame: Callable[[], None] | None = None,
                    on_damage: Callable[[str], None] | None = None) -> VideoReport:
    """Upscale the frames of ``src`` whose timestamps lie in ``span`` into ``dst``, video only, each frame
    with its timestamp in ``src`` (not shifted to 0). A new encoder starts the file, so it begins with a
    keyframe; ``--frames`` and ``--preview`` in ``options`` are ignored. Written atomically, as
    :func:`upscale_video`; an empty span gives a file with no frames. :func:`join_segments` joins them."""
    return write_video(src, dst, up, options, on_frame, on_damage, span)


def join_segments(src: str | Path, parts: list[Path], dst: str | Path) -> VideoReport:
    """Join the segment files ``parts`` (from :func:`upscale_segment`, in time order) into ``dst``: their
    video packets copied in order with their own timestamps, and every audio packet of ``src`` copied
    once, straight from ``src``. Nothing is decoded or encoded. ``dst`` appears atomically; the parts
    are left for the caller to remove. Parts encoded with different settings are an :class:`InputError`."""
    av = require("av")
    src, dst = Path(src), Path(dst)
    if not parts:
        raise ValueError("join_segments: no parts")
    report = VideoReport()
    with open_input(src) as inp, atomic_file(dst) as fh:
        out = av.open(fh, mode="w")  # through the descriptor that created the temporary (by its name: the format)
        try:
            with av.open(str(parts[0])) as first:
                vt = first.streams.video[0]
                vout = out.add_stream_from_template(vt, opaque=True)
                vout.time_base = vt.time_base
                extradata = vt.codec_context.extradata
                report.codec, report.pix_fmt = vt.codec_context.name, vt.codec_context.pix_fmt or ""
            amap = {a.index: out.add_stream_from_template(a) for a in inp.streams.audio}
            video = _part_packets(av, parts, extradata)
            audio = (p for p in inp.demux(*inp.streams.audio) if p.size) if amap else iter(())
            for packet in heapq.merge(video, audio, key=_decode_time):
                if packet.stream.type == "audio":
                    packet.stream = amap[packet.stream.index]
                    report.audio_packets += 1
                else:
                    packet.stream = vout
                    report.frames += 1
                out.mux(packet)
        except BaseException:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report; the file is removed
                pass
            raise
        out.close()
    return report


def _decode_time(packet: Any) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return ts * packet.time_base if ts is not None and packet.time_base else Fraction(0)


_HEAD = 32  # packets read ahead at the start of each part: more than any H.264/HEVC reorder depth (16)


def fill_dts(head: list[Any]) -> None:
    """Give the first packets of a part the decode timestamps their container left out, in place.

    Matroska stores only presentation times, and on reading FFmpeg cannot guess a decode time for the first
    packets of a stream with B-frames (one, or two with a B-pyramid). In decode order the k-th packet decodes
    at the k-th smallest presentation time less the reorder delay: the delay is the largest amount by which a
    sorted time runs ahead of a packet's own, or what the first known decode time implies if that is more
    (mp4 and mov store decode times; the first are negative). This is how ``ffmpeg -c copy`` fills them."""
    if all(p.dts is not None for p in head):
        return
    pts = [p.pts for p in head]
    if any(t is None for t in pts):
        raise InputError("a segment packet has no timestamp; the segments cannot be joined without re-encoding")
    srt = sorted(pts)
    shift = max(0, *(s - t for s, t in zip(srt, pts)))
    known = next(((i, p.dts) for i, p in enumerate(head) if p.dts is not None), None)
    if known is not None:
        shift = max(shift, srt[known[0]] - known[1])
    for p, s in zip(head, srt):
        if p.dts is None:
            p.dts = s - shift


class _Order:
    """Keeps decode timestamps strictly increasing across the seams of the parts (a tick later than the last
    when a part's first packets would go back), never after a packet's presentation time."""

    def __init__(self) -> None:
        self.last: int | None = None

    def check(self, packet: Any, part: Path) -> Any:
        if self.last is not None and packet.dts <= self.last:
            packet.dts = self.last + 1
        if packet.dts > packet.pts:
            raise InputError(f"{part}: its frames overlap the previous segment's in decode order; the parts cannot "
                             "be joined without re-encoding (run the command again to redo them)")
        self.last = packet.dts
        return packet


def _part_packets(av: Any, parts: list[Path], extradata: bytes | None) -> Iterator[Any]:
    """The video packets of each part in turn (a part is opened only while it is read), each with a decode
    timestamp (:func:`fill_dts`), in one time base, decode times increasing throughout."""
    order, time_base = _Order(), None
    for part in parts:
        try:
            c = av.open(str(part))
        except (av_error(av), OSError) as exc:
            raise InputError(f"{part}: segment not readable ({exc}); run the command again to redo it") from exc
        with c:
            if not c.streams.video:
                raise InputError(f"{part}: segment has no video stream; run the command again to redo it")
            v = c.streams.video[0]
            if v.codec_context.extradata != extradata or (time_base is not None and v.time_base != time_base):
                raise InputError(f"{part}: segment encoded with other settings than {parts[0].name}; the parts "
                                 "cannot be joined without re-encoding (run the command again to redo them)")
            time_base = v.time_base
            packets = (p for p in c.demux(v) if p.size)  # the empty packet at the end only flushes a decoder
            head = list(itertools.islice(packets, _HEAD))
            fill_dts(head)
            for packet in itertools.chain(head, packets):
                yield order.check(packet, part)
