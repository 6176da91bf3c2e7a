"""The decoder thread: demux, decode, pick the frames of the window, and pass each on with its audio.

Four small units do the work that is not demuxing: :class:`Colour` (the YUV matrix and range used both
ways), :class:`FrameWindow` (which frames are inside ``--frames`` / ``--preview``, or a segment's span),
:class:`AudioWindow` (the audio packets that travel with each frame, trimmed and shifted with the
window) and :class:`DamageReport` (frames the decoder dropped or concealed, reported with their time).
"""

from __future__ import annotations

import bisect
import math
import queue
import threading
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError

from .options import _MATRIX, _RANGE_MPEG, _SPC_BT709, _SPC_SMPTE170M, Span, VideoOptions, VideoReport
from .probe import av_error, declared_end
from .queues import End, Failed, Frame, put, time_text

__all__ = ["Colour", "FrameWindow", "SegmentWindow", "AudioWindow", "DamageReport", "Decoder", "SegmentDecoder"]


@dataclass
class Colour:
    """The YUV matrix and range used both ways, as swscale names and as the tags written out."""

    matrix: str
    range: int
    tags: dict[str, int]

    @classmethod
    def of(cls, cc: Any) -> Colour:
        spc = int(cc.colorspace)
        matrix = _MATRIX.get(spc) or ("ITU709" if cc.height >= 720 else "ITU601")
        if spc not in _MATRIX:
            spc = _SPC_BT709 if matrix == "ITU709" else _SPC_SMPTE170M
        rng = int(cc.color_range) or _RANGE_MPEG
        tags = {"colorspace": spc, "color_range": rng}
        tags.update({k: int(getattr(cc, k)) for k in ("color_primaries", "color_trc") if int(getattr(cc, k)) != 2})
        return cls(matrix, rng, tags)

    def to_rgb(self, frame: Any) -> np.ndarray:
        """A decoded frame as H×W×3 uint8 RGB, converted with this matrix and range."""
        return frame.to_ndarray(format="rgb24", src_colorspace=self.matrix, src_color_range=self.range)


class FrameWindow:
    """Frames A to B-1 (display order) of ``--frames``, cut short after ``--preview`` seconds."""

    def __init__(self, options: VideoOptions):
        self.first, self.stop = options.frames
        self.preview = None if options.preview is None else Fraction(options.preview).limit_denominator(1_000_000)

    def before(self, i: int, t: Fraction) -> bool:
        """True for frame ``i`` (at ``t`` seconds) when it comes before the window."""
        return i < self.first

    def past(self, i: int, t: Fraction, start: Fraction) -> bool:
        """True for the first frame after a window that started at ``start`` seconds."""
        return (self.stop is not None and i >= self.stop) or (self.preview is not None and t - start >= self.preview)


class SegmentWindow(FrameWindow):
    """The frames whose timestamps lie in ``span`` = [start, stop) seconds."""

    def __init__(self, span: Span):
        self.span = span

    def before(self, i: int, t: Fraction) -> bool:
        return t < self.span[0]

    def past(self, i: int, t: Fraction, start: Fraction) -> bool:
        return self.span[1] is not None and t >= self.span[1]


class AudioWindow:
    """Audio packets waiting for the frame they go with; with ``trimmed``, only those that overlap the window,
    shifted so that the window starts at 0."""

    def __init__(self, streams: int, trimmed: bool):
        self.streams, self.trimmed = streams, trimmed
        self.held: list = []  # packets not yet attached to a frame
        self.done: set[int] = set()  # streams that have reached the window's end

    def add(self, packet: Any, end: Fraction | None) -> None:
        if packet.size:
            self.held.append(packet)
            self.check_done(packet, end)

    def check_done(self, packet: Any, end: Fraction | None) -> None:
        if end is not None and packet.pts is not None and packet.pts * packet.time_base >= end:
            self.done.add(packet.stream.index)

    def all_done(self) -> bool:
        return len(self.done) == self.streams

    def close(self, end: Fraction) -> None:
        """The window ends at ``end``: mark the streams whose held packets already reach it."""
        for p in self.held:
            self.check_done(p, end)

    def drop_ended_by(self, t: Fraction) -> None:
        """Before the window: forget the packets that end by ``t``."""
        self.held = [p for p in self.held if p.pts is not None and (p.pts + (p.duration or 0)) * p.time_base > t]

    def take_before(self, t: Fraction) -> list:
        """The packets that start before ``t`` (they go with the frame at ``t``); later ones keep waiting."""
        now = [p for p in self.held if p.pts is None or p.pts * p.time_base < t]
        self.held = [p for p in self.held if p.pts is not None and p.pts * p.time_base >= t]
        return now

    def in_window(self, packets: list, offset: Fraction | None, end: Fraction | None) -> list:
        """The packets that overlap [offset, end), shifted so that the offset becomes 0."""
        if not self.trimmed:
            return packets
        kept = []
        for p in packets:
            if p.pts is None or offset is None:
                continue
            start, tb = p.pts * p.time_base, p.time_base
            stop = start + (p.duration or 0) * tb
            if stop <= offset or (end is not None and start >= end):
                continue
            shift = round(offset / tb)
            p.pts -= shift
            if p.dts is not None:
                p.dts -= shift
            kept.append(p)
        return kept


class DamageReport:
    """Frames that went into the decoder and never came out, or came out concealed, each reported with its
    time. Decoders drop a frame they cannot decode without saying so: the timestamps of the packets sent
    and not yet seen as frames are how such a frame is noticed."""

    def __init__(self, name: str, time_base: Fraction, report: VideoReport, on_damage: Callable[[str], None],
                 since: Fraction | None = None):
        self.name, self.time_base, self.report, self.on_damage = name, time_base, report, on_damage
        self.since = since  # a segment: frames before this time (leading frames of the keyframe sought) are not ours
        self.sent: list[int] | None = []  # pts of video packets sent and not yet seen as frames (None: untracked)
        self.why = "the decoder dropped it"  # the decoder's last error, for the next frame found missing

    def sent_packet(self, packet: Any) -> None:
        if packet.size and self.sent is not None:
            if packet.pts is None:
                self.sent = None
            else:
                bisect.insort(self.sent, packet.pts)

    def decode_failed(self, exc: BaseException, packet: Any) -> None:
        """A threaded decoder reports an error with a later packet: the frame that never comes out is reported
        instead, at its own time (when packets are tracked)."""
        self.why = str(exc)
        if self.sent is None:
            self.damaged(f"{time_text(packet.pts, packet.time_base)}: damaged video packet skipped ({exc})")

    def seen(self, pts: int | None) -> None:
        """A frame at ``pts`` came out (None: the end): report the frames sent before it that never did."""
        if self.sent is None:
            return
        if self.sent and self.since is not None:
            self.sent = [p for p in self.sent if p * self.time_base >= self.since]
        k = len(self.sent) if pts is None else bisect.bisect_right(self.sent, pts)
        lost, self.sent = self.sent[:k], self.sent[k:]
        for p in lost:
            if p != pts:
                self.damaged(f"{time_text(p, self.time_base)}: damaged frame skipped ({self.why})")

    def damaged(self, what: str) -> None:
        self.report.damaged.append(what)
        self.on_damage(f"{self.name}: {what}")


class Decoder:
    """Demuxes and decodes in its own thread: video frames of the window in display order, each with
    the audio packets demuxed since the previous one (trimmed to the window and shifted with it)."""

    def __init__(self, inp: Any, options: VideoOptions, out: queue.Queue, stop: threading.Event, report: VideoReport,
                 on_damage: Callable[[str], None], window: FrameWindow | None = None, audio: bool = True):
        self.inp, self.options, self.out, self.stop = inp, options, out, stop
        self.video = inp.streams.video[0]
        self.video.thread_type = "AUTO"
        self.audio_streams = list(inp.streams.audio) if audio else []
        self.colour = Colour.of(self.video.codec_context)
        self.window = window or FrameWindow(options)
        self.audio = AudioWindow(len(self.audio_streams), options.trimmed)
        since = self.window.span[0] if isinstance(self.window, SegmentWindow) else None
        self.damage = DamageReport(inp.name, self.video.time_base, report, on_damage, since)
        self.index = 0  # display-order index of the next decoded frame
        self.offset: Fraction | None = None if options.trimmed else Fraction(0)  # seconds cut from the start
        self.end: Fraction | None = None  # the window's end in seconds, once known
        self.last_pts: int | None = None
        self.first = True  # the next frame passed on is the first (it carries the display matrix)
        self.shift = 0  # the window's start in video time-base units, taken off every timestamp
        self.av_error = av_error(require("av"))
        self.report = report
        self.declared = declared_end(inp, self.video)
        self.rate: Fraction | None = self.video.average_rate or self.video.guessed_rate

    def run(self) -> None:
        try:
            self._demux()
            if self.offset is None:
                raise InputError(f"{self.inp.name}: --frames starts at frame {self.options.frames[0]} but the clip "
                                 f"has {self.index} frames; nothing was written")
            if self.end is None:  # the input ran out before the window closed
                self.report.ended_early = self._ended_early()
            put(self.out, End(self.audio.in_window(self.audio.held, self.offset, self.end)), self.stop)  # audio after the last frame
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            put(self.out, Failed(exc), self.stop)

    def _packets(self) -> Any:
        return self.inp.demux(self.video, *self.audio_streams)

    def _ended_early(self) -> str | None:
        """Why the output is partial, when the last frame decoded ends well before the time the container
        declares for the video (1½ frames of slack; ½ s more when only the whole file's duration is known)."""
        if self.declared is None:
            return None
        end, own = self.declared
        frame = 1 / self.rate if self.rate else Fraction(1, 25)
        last = (self.last_pts * self.video.time_base + frame) if self.last_pts is not None else Fraction(0)
        if end - last <= frame * 3 / 2 + (0 if own else Fraction(1, 2)):
            return None
        return (f"its frames end at {float(last):.3f} s but its container declares {float(end):.3f} s of video "
                f"({self.index} frames decoded): the file is damaged or cut short")

    def _demux(self) -> None:
        packets = self._packets()
        while not self.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                if self.end is None:
                    self.damage.seen(None)
                return
            except self.av_error as exc:
                self.damage.damaged(f"{time_text(self.last_pts, self.video.time_base)}: the file cannot be read "
                                    f"past here ({exc}); the clip ends there")
                self._decode(None)
                return
            if packet.stream.type == "audio":
                self.audio.add(packet, self.end)
                if self.end is not None and self.audio.all_done():
                    return
            elif self.end is None:
                self._decode(packet)
            elif not self.audio_streams:  # past the window, and no audio to wait for
                return

    def _decode(self, packet: Any) -> None:
        """Decode one video packet (None: flush) and pass on the frames inside the window."""
        if packet is not None:
            self.damage.sent_packet(packet)
        try:
            frames = packet.decode() if packet is not None else self.video.codec_context.decode(None)
        except self.av_error as exc:
            self.damage.decode_failed(exc, packet)
            return
        for frame in frames:
            self.damage.seen(frame.pts)
            if frame.is_corrupt:
                self.damage.damaged(f"{time_text(frame.pts, frame.time_base)}: frame decoded with errors (concealed), kept")
            self._frame(frame)

    def _frame(self, frame: Any) -> None:
        i, self.index = self.index, self.index + 1
        pts = frame.pts if frame.pts is not None else (self.last_pts or 0) + 1
        pts = pts if self.last_pts is None or pts > self.last_pts else self.last_pts + 1  # keep strictly increasing
        self.last_pts = pts
        t = pts * self.video.time_base
        if self.end is not None:
            return
        if self.window.before(i, t):  # before the window: audio that ends by now can go
            self.audio.drop_ended_by(t)
            return
        if self.offset is None:
            self.offset = t
            self.shift = round(t / self.video.time_base)
        if self.window.past(i, t, self.offset):
            self.end = t
            self.audio.close(t)
            return
        matrix = frame.side_data.get("DISPLAYMATRIX") if self.first else None
        self.first = False
        # audio that starts before this frame goes with it; later packets wait (the window's end is not known yet)
        item = Frame(self.colour.to_rgb(frame), pts - self.shift, self.audio.in_window(self.audio.take_before(t), self.offset, self.end),
                     np.frombuffer(bytes(matrix), np.int32).tolist() if matrix is not None else None)
        put(self.out, item, self.stop)


class SegmentDecoder(Decoder):
    """The frames whose timestamps lie in ``span`` = [start, stop) seconds (stop None: to the end), with
    the input's own timestamps and no audio. Demuxing starts at the last keyframe at or before start."""

    def __init__(self, inp: Any, span: Span, options: VideoOptions, out: queue.Queue, stop: threading.Event,
                 report: VideoReport, on_damage: Callable[[str], None]):
        super().__init__(inp, replace(options, frames=(0, None), preview=None), out, stop, report, on_damage,
                         window=SegmentWindow(span), audio=False)

    def _packets(self) -> Any:
        span = self.window.span  # type: ignore[attr-defined]
        if span[0] > 0:
            self.inp.seek(math.floor(span[0] / self.video.time_base), stream=self.video, backward=True)
        return super()._packets()
