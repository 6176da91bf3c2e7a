"""Video files through an :class:`~bsrn_edge.runtime.Upscaler`: decode → ``Upscaler.stream()`` → encode.

The three stages overlap: a decoder thread and an encoder thread run beside the calling thread, which
runs the network, joined by bounded queues (``VideoOptions.queue`` frames each), so a clip runs at
the speed of its slowest stage and memory stays bounded. PyAV (FFmpeg's libraries, the optional
extra ``video``) does the decoding and encoding; it is imported on first use.

What the output keeps: every audio stream, remuxed packet for packet (never re-encoded); each
frame's own timestamp in the input's time base (so variable frame rate survives); the display
matrix (rotation and flips); the colour matrix, range, primaries and transfer tags. Pixels are
converted YUV → RGB → YUV with the input's matrix and range both ways (an untagged input is read
as BT.709 from 720 lines up, else BT.601, as players do) and the output says which it used.

The default pixel format is ``yuv444p``: 8-bit, no chroma subsampling. The network's output is
8-bit RGB whose colour detail is as sharp as its luma; 4:2:0 would halve the chroma resolution
the upscale just created. Choose ``yuv420p`` for players that cannot decode 4:4:4 (browsers, phones).
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
import queue
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import IMAGE_EXTENSIONS, atomic_path, partial_path

__all__ = ["VIDEO_EXTENSIONS", "DEFAULT_PIX_FMT", "VideoOptions", "VideoInfo", "VideoReport",
           "parse_frames", "probe_video", "looks_like_video", "output_for", "default_codec", "encoder_settings",
           "upscale_video", "Span", "segment_spans", "plan_segments", "segment_path", "upscale_segment", "join_segments"]

log = logging.getLogger(__name__)

#: suffixes (lower case) that bsrn-upscale treats as videos without probing; others are probed
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts",
                                     ".mpg", ".mpeg", ".flv", ".wmv", ".ogv", ".3gp", ".y4m")
DEFAULT_PIX_FMT = "yuv444p"
# FFmpeg demuxers that open still images (or text) with a "video" stream: never routed as videos
_STILL_FORMATS = ("image2", "gif", "apng", "tty", "webp")
# muxers that cannot list the codecs they hold (FFmpeg has no table for them): not checked up front
_UNLISTED = ("mpegts",)
# constant-quality defaults that keep the upscale's detail (x264 16: ≥ 40 dB per frame on a fast pan; x265 and
# VP9 use other scales); codecs missing here have no CRF
_CRF = {"libx264": 12, "libx264rgb": 12, "libx265": 19, "libvpx-vp9": 24, "libaom-av1": 24, "libsvtav1": 24}
# x264's speed/size trade-off. veryfast at CRF 12 measured 43.6 dB on real 1280×720 frames against 42.3 dB for
# x264's default (medium, CRF 16), at about a third of medium's CPU time, for files about 40% larger: on a CPU
# the encoder shares the cores with the network, so the cheaper preset is what keeps a clip at network speed.
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
_PRESET = {"libx264": "veryfast", "libx264rgb": "veryfast"}
# encoder options beside the CRF: VP9 needs a zero bit rate for constant quality; x264 looks ahead 20
# frames, not 40 (each is a whole upscaled frame in memory: 25 MB at 3840×2160 in 4:4:4); x265 stays quiet
_OPTIONS = {"libvpx-vp9": {"b": "0"}, "libx264": {"rc-lookahead": "20"}, "libx265": {"x265-params": "log-level=error"}}
_CODECS = ("libx264", "libx265", "libvpx-vp9", "ffv1", "mpeg4")  # default codec: the first this build has
# AVColorSpace tag → swscale matrix name; other tags (unspecified, RGB, YCgCo) are guessed by size
_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_SPC_BT709, _SPC_SMPTE170M, _RANGE_MPEG = 1, 6, 1


# -- options and facts ---------------------------------------------------------------------------
def parse_frames(text: str) -> tuple[int, int | None]:
    """``"A:B"`` → (A, B): frames A (inclusive) to B (exclusive), counted from 0 in display order;
    ``"A:"`` runs to the end, ``":B"`` starts at 0. Raises :class:`InputError` otherwise."""
    start, sep, stop = text.partition(":")
    try:
        a = int(start) if start.strip() else 0
        b = int(stop) if stop.strip() else None
    except ValueError:
        a, b = -1, None
    if not sep or a < 0 or (b is not None and b <= a):
        raise InputError(f"expected frames as A:B with 0 ≤ A < B (either may be left out, e.g. 100: or :50), got {text!r}")
    return a, b


@dataclass(frozen=True)
class VideoOptions:
    """How to encode and which part of the clip to run.

    ``codec``: an FFmpeg encoder name (None: :func:`default_codec`). ``crf``: constant-quality level
    (None: the codec's default in ``_CRF``). ``preset``: x264/x265 speed preset (None: ``_PRESET``'s,
    veryfast for x264, the encoder's own otherwise). ``pix_fmt``: None picks ``yuv444p`` where the encoder
    takes it. ``frames``: (A, B) as from :func:`parse_frames`. ``preview``: run only this many
    seconds from frame A. ``queue``: frames each inter-thread queue holds.
    """

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    frames: tuple[int, int | None] = (0, None)
    preview: float | None = None
    queue: int = 8
    preset: str | None = None

    @property
    def trimmed(self) -> bool:
        return self.frames != (0, None) or self.preview is not None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found: the first video stream and the audio streams beside it."""

    path: Path
    width: int
    height: int
    codec: str
    frames: int | None  # None when the container does not say
    duration: float | None  # seconds
    rate: Fraction | None
    audio: tuple[str, ...]

    def frames_to_run(self, options: VideoOptions) -> int | None:
        """How many frames ``options`` will upscale, when the container lets us know (for a progress bar)."""
        total = self.frames or (round(self.duration * self.rate) if self.duration and self.rate else None)
        a, b = options.frames
        if b is not None:
            total = b if total is None else min(total, b)
        total = None if total is None else max(0, total - a)
        if options.preview is not None and self.rate:
            n = math.ceil(Fraction(options.preview).limit_denominator(1_000_000) * self.rate)
            total = n if total is None else min(total, n)
        return total


@dataclass
class VideoReport:
    """What :func:`upscale_video` wrote: frames and audio packets, and each damaged part it skipped."""

    frames: int = 0
    audio_packets: int = 0
    codec: str = ""
    pix_fmt: str = ""
    damaged: list[str] = field(default_factory=list)


def _av_error(av: Any) -> type[Exception]:
    return av.FFmpegError if hasattr(av, "FFmpegError") else av.AVError  # PyAV ≥ 14 / older


def _open_input(path: Path) -> Any:
    """The open input container with a video stream, or an :class:`InputError` that says what is wrong."""
    av = require("av")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; expected a video (mp4, mov, mkv, webm, …)")
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except (_av_error(av), OSError) as exc:
        raise InputError(f"{path}: not a readable video ({getattr(exc, 'strerror', None) or exc}); expected a complete "
                         "video file that FFmpeg reads (mp4, mov, mkv, webm, …). The file may be truncated, "
                         "damaged or of another kind") from exc
    if container.format.name.endswith("_pipe") or container.format.name in _STILL_FORMATS or not container.streams.video:
        kind = "no video stream" if not container.streams.video else f"a still image or text ({container.format.name})"
        container.close()
        raise InputError(f"{path}: holds {kind}, not a video; pass a video file (mp4, mov, mkv, webm, …)")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path``'s header and describe its first video stream; :class:`InputError` when it is no video."""
    path = Path(path)
    with _open_input(path) as c:
        v = c.streams.video[0]
        duration = float(v.duration * v.time_base) if v.duration and v.time_base else (
            c.duration / 1_000_000 if c.duration else None)
        return VideoInfo(path, v.codec_context.width, v.codec_context.height, v.codec_context.name,
                         v.frames or None, duration, v.average_rate or v.guessed_rate,
                         tuple(a.codec_context.name for a in c.streams.audio))


def looks_like_video(path: str | Path) -> bool:
    """True when bsrn-upscale should treat ``path`` as a video: a file with a video suffix (a bad one
    is then reported as such), or any other non-image file in which FFmpeg finds a video stream."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in IMAGE_EXTENSIONS:
        return False
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    if not available("av"):
        return False
    try:
        probe_video(path)
    except InputError:
        return False
    return True


def output_for(src: str | Path, dst: str | Path) -> Path:
    """The file that ``-o dst`` names for the video ``src``: ``dst`` itself when it has a video suffix;
    for a folder (or a name without suffix) ``dst/<stem><suffix>`` with the input's suffix (``.mkv``
    when that is no video suffix). The input itself is never an output."""
    src, dst = Path(src), Path(dst)
    if dst.is_dir() or not dst.suffix:
        suffix = src.suffix.lower() if src.suffix.lower() in VIDEO_EXTENSIONS else ".mkv"
        dst = dst / f"{src.stem}{suffix}"
    elif dst.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(f"-o {dst}: not a video file name; use .mp4, .mkv, .mov or .webm, or a folder")
    if dst.is_dir():
        raise InputError(f"{dst}: a folder has the output's name; move it away or choose another -o")
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError(f"{dst}: is the input file; refusing to overwrite it (choose another -o)")
    return dst


def default_codec(dst: str | Path | None = None) -> str:
    """The encoder used when none is named: VP9 for ``.webm`` outputs, else the first of libx264,
    libx265, libvpx-vp9, ffv1, mpeg4 that this PyAV build has."""
    av = require("av")
    have = av.codecs_available
    if dst is not None and Path(dst).suffix.lower() == ".webm" and "libvpx-vp9" in have:
        return "libvpx-vp9"
    for name in _CODECS:
        if name in have:
            return name
    raise InputError("this PyAV build has none of libx264, libx265, libvpx-vp9, ffv1 or mpeg4; install PyAV's wheel "
                     "(pip install 'bsrn-edge[video]') or pass --codec")


# -- the three stages ----------------------------------------------------------------------------
@dataclass
class _Frame:
    """One decoded frame on its way: RGB pixels (after the network: the upscaled frame, already an
    ``av.VideoFrame``), the output timestamp, the audio packets to mux after it, and the display matrix of
    the first frame."""

    rgb: Any
    pts: int
    audio: list = field(default_factory=list)
    matrix: list[int] | None = None


@dataclass
class _End:
    audio: list = field(default_factory=list)


@dataclass
class _Failed:
    error: BaseException


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


@dataclass
class _Colour:
    """The YUV matrix and range used both ways, as swscale names and as the tags written out."""

    matrix: str
    range: int
    tags: dict[str, int]

    @classmethod
    def of(cls, cc: Any) -> "_Colour":
        spc = int(cc.colorspace)
        matrix = _MATRIX.get(spc) or ("ITU709" if cc.height >= 720 else "ITU601")
        if spc not in _MATRIX:
            spc = _SPC_BT709 if matrix == "ITU709" else _SPC_SMPTE170M
        rng = int(cc.color_range) or _RANGE_MPEG
        tags = {"colorspace": spc, "color_range": rng}
        tags.update({k: int(getattr(cc, k)) for k in ("color_primaries", "color_trc") if int(getattr(cc, k)) != 2})
        return cls(matrix, rng, tags)


def _time(pts: int | None, time_base: Fraction | None) -> str:
    return f"t={float(pts * time_base):.3f} s" if pts is not None and time_base else "t=unknown"


class _Decoder:
    """Demuxes and decodes in its own thread: video frames of the window in display order, each with
    the audio packets demuxed since the previous one (trimmed to the window and shifted with it)."""

    def __init__(self, inp: Any, options: VideoOptions, out: queue.Queue, stop: threading.Event, report: VideoReport,
                 on_damage: Callable[[str], None]):
        self.inp, self.options, self.out, self.stop, self.report = inp, options, out, stop, report
        self.on_damage = on_damage
        self.video = inp.streams.video[0]
        self.video.thread_type = "AUTO"
        self.audio = list(inp.streams.audio)
        self.colour = _Colour.of(self.video.codec_context)
        self.index = 0  # display-order index of the next decoded frame
        self.offset: Fraction | None = None if options.trimmed else Fraction(0)  # seconds cut from the start
        self.end: Fraction | None = None  # the window's end in seconds, once known
        self.preview = None if options.preview is None else Fraction(options.preview).limit_denominator(1_000_000)
        self.last_pts: int | None = None
        self.held: list = []  # audio packets not yet attached to a frame
        self.done_audio: set[int] = set()
        self.sent: list[int] | None = []  # pts of video packets sent and not yet seen as frames (None: untracked)
        self.why = "the decoder dropped it"  # the decoder's last error, for the next frame found missing
        self.first = True  # the next frame passed on is the first (it carries the display matrix)
        self.shift = 0  # the window's start in video time-base units, taken off every timestamp
        self.av_error = _av_error(require("av"))

    def _before(self, i: int, t: Fraction) -> bool:
        """True for the frame ``i`` (at ``t`` seconds) that comes before the window."""
        return i < self.options.frames[0]

    def _past(self, i: int, t: Fraction) -> bool:
        """True for the first frame after the window (``self.offset`` is the window's start by then)."""
        b = self.options.frames[1]
        return (b is not None and i >= b) or (self.preview is not None and t - self.offset >= self.preview)

    def run(self) -> None:
        try:
            self._demux()
            if self.offset is None:
                raise InputError(f"{self.inp.name}: --frames starts at frame {self.options.frames[0]} but the clip "
                                 f"has {self.index} frames; nothing was written")
            _put(self.out, _End(self._audio_in_window(self.held)), self.stop)  # audio after the last frame
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            _put(self.out, _Failed(exc), self.stop)

    def _demux(self) -> None:
        packets = self.inp.demux(self.video, *self.audio)
        while not self.stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                if self.end is None:
                    self._lost(None)
                return
            except self.av_error as exc:
                self._damaged(f"{_time(self.last_pts, self.video.time_base)}: the file cannot be read past here "
                              f"({exc}); the clip ends there")
                self._frames(None)
                return
            if packet.stream.type == "audio":
                if packet.size:
                    self.held.append(packet)
                    self._check_audio_done(packet)
                if self.end is not None and len(self.done_audio) == len(self.audio):
                    return
            elif self.end is None:
                self._frames(packet)
            elif not self.audio:  # past the window, and no audio to wait for
                return

    def _check_audio_done(self, packet: Any) -> None:
        if self.end is not None and packet.pts is not None and packet.pts * packet.time_base >= self.end:
            self.done_audio.add(packet.stream.index)

    def _frames(self, packet: Any) -> None:
        """Decode one video packet (None: flush) and pass on the frames inside the window."""
        if packet is not None and packet.size and self.sent is not None:
            if packet.pts is None:
                self.sent = None
            else:
                bisect.insort(self.sent, packet.pts)
        try:
            frames = packet.decode() if packet is not None else self.video.codec_context.decode(None)
        except self.av_error as exc:  # a threaded decoder reports an error with a later packet:
            self.why = str(exc)     # the frame that never comes out is reported instead, at its own time
            if self.sent is None:
                self._damaged(f"{_time(packet.pts, packet.time_base)}: damaged video packet skipped ({exc})")
            return
        for frame in frames:
            self._lost(frame.pts)
            if frame.is_corrupt:
                self._damaged(f"{_time(frame.pts, frame.time_base)}: frame decoded with errors (concealed), kept")
            self._frame(frame)

    def _frame(self, frame: Any) -> None:
        i, self.index = self.index, self.index + 1
        pts = frame.pts if frame.pts is not None else (self.last_pts or 0) + 1
        pts = pts if self.last_pts is None or pts > self.last_pts else self.last_pts + 1  # keep strictly increasing
        self.last_pts = pts
        t = pts * self.video.time_base
        if self.end is not None:
            return
        if self._before(i, t):  # before the window: audio that ends by now can go
            self.held = [p for p in self.held if p.pts is not None and (p.pts + (p.duration or 0)) * p.time_base > t]
            return
        if self.offset is None:
            self.offset = t
            self.shift = round(t / self.video.time_base)
        if self._past(i, t):
            self.end = t
            for p in self.held:
                self._check_audio_done(p)
            return
        rgb = frame.to_ndarray(format="rgb24", src_colorspace=self.colour.matrix, src_color_range=self.colour.range)
        matrix = frame.side_data.get("DISPLAYMATRIX") if self.first else None
        self.first = False
        # audio that starts before this frame goes with it; later packets wait (the window's end is not known yet)
        now = [p for p in self.held if p.pts is None or p.pts * p.time_base < t]
        self.held = [p for p in self.held if p.pts is not None and p.pts * p.time_base >= t]
        item = _Frame(rgb, pts - self.shift, self._audio_in_window(now),
                      np.frombuffer(bytes(matrix), np.int32).tolist() if matrix is not None else None)
        _put(self.out, item, self.stop)

    def _lost(self, pts: int | None) -> None:
        """Report the frames whose packets went in but never came out before the frame at ``pts``
        (frames leave the decoder in display order; None: the end). Decoders drop a frame they
        cannot decode without saying so; this is how such a frame is noticed."""
        if self.sent is None:
            return
        k = len(self.sent) if pts is None else bisect.bisect_right(self.sent, pts)
        lost, self.sent = self.sent[:k], self.sent[k:]
        for p in lost:
            if p != pts:
                self._damaged(f"{_time(p, self.video.time_base)}: damaged frame skipped ({self.why})")

    def _audio_in_window(self, packets: list) -> list:
        """The packets that overlap [offset, end), shifted so that the offset becomes 0."""
        if not self.options.trimmed:
            return packets
        kept = []
        for p in packets:
            if p.pts is None:
                continue
            start, tb = p.pts * p.time_base, p.time_base
            stop = start + (p.duration or 0) * tb
            if stop <= self.offset or (self.end is not None and start >= self.end):
                continue
            shift = round(self.offset / tb)
            p.pts -= shift
            if p.dts is not None:
                p.dts -= shift
            kept.append(p)
        return kept

    def _damaged(self, what: str) -> None:
        self.report.damaged.append(what)
        self.on_damage(f"{self.inp.name}: {what}")


class _SegmentDecoder(_Decoder):
    """The frames whose timestamps lie in ``span`` = [start, stop) seconds (stop None: to the end), with
    the input's own timestamps and no audio. Demuxing starts at the last keyframe at or before start."""

    def __init__(self, inp: Any, span: tuple[Fraction, Fraction | None], options: VideoOptions, out: queue.Queue,
                 stop: threading.Event, report: VideoReport, on_damage: Callable[[str], None]):
        super().__init__(inp, replace(options, frames=(0, None), preview=None), out, stop, report, on_damage)
        self.span = span
        self.audio = []

    def _before(self, i: int, t: Fraction) -> bool:
        return t < self.span[0]

    def _past(self, i: int, t: Fraction) -> bool:
        return self.span[1] is not None and t >= self.span[1]

    def _demux(self) -> None:
        if self.span[0] > 0:
            self.inp.seek(math.floor(self.span[0] / self.video.time_base), stream=self.video, backward=True)
        super()._demux()

    def _lost(self, pts: int | None) -> None:
        if self.sent:  # frames before the segment (leading frames of the keyframe sought) are not ours to report
            self.sent = [p for p in self.sent if p * self.video.time_base >= self.span[0]]
        super()._lost(pts)


def encoder_settings(options: VideoOptions, dst: str | Path, audio: tuple[str, ...] = ()) -> tuple[str, str, int | None]:
    """(encoder, pixel format, CRF or None) for writing ``dst`` with the ``audio`` codecs remuxed, checked
    against this PyAV build before any work (nothing is created): an unknown encoder, a pixel format or
    CRF it does not take, or a codec that ``dst``'s container cannot hold is an :class:`InputError`."""
    av = require("av")
    dst = Path(dst)
    name = options.codec or default_codec(dst)
    try:
        codec = av.Codec(name, "w")
    except Exception as exc:  # noqa: BLE001 - PyAV's UnknownCodecError differs between versions
        have = ", ".join(c for c in _CODECS if c in av.codecs_available)
        raise InputError(f"--codec {name}: no such encoder in this PyAV build; try one of {have}") from exc
    if codec.type != "video":
        raise InputError(f"--codec {name}: is a {codec.type} encoder; name a video encoder such as libx264")
    formats = [f.name for f in codec.video_formats or ()]
    pix_fmt = options.pix_fmt or (DEFAULT_PIX_FMT if DEFAULT_PIX_FMT in formats or not formats else formats[0])
    if formats and pix_fmt not in formats:
        raise InputError(f"--pix-fmt {pix_fmt}: {name} does not take it; it takes {', '.join(formats)}")
    if options.preset is not None and (options.preset not in _PRESETS or not name.startswith(("libx264", "libx265"))):
        raise InputError(f"--preset {options.preset}: x264/x265 presets are {', '.join(_PRESETS)}, for libx264 and "
                         f"libx265 only (encoder here: {name})")
    if options.crf is not None and name not in _CRF:
        raise InputError(f"--crf: {name} has no constant-quality (CRF) mode; leave --crf out "
                         f"(CRF encoders: {', '.join(sorted(_CRF))})")
    _check_container(av, dst, [(name, "video")] + [(a, "audio") for a in audio])
    return name, pix_fmt, options.crf if options.crf is not None else _CRF.get(name)


def _check_container(av: Any, dst: Path, codecs: list[tuple[str, str]]) -> None:
    try:
        out = av.open(str(dst), mode="w")  # the file itself is only created when writing starts
    except (_av_error(av), ValueError) as exc:
        raise InputError(f"{dst}: FFmpeg cannot tell the container from {dst.suffix!r}; use .mp4, .mkv, .mov or .webm") from exc
    try:
        for codec, kind in codecs:
            if out.format.name not in _UNLISTED and codec not in out.supported_codecs:
                raise InputError(f"{dst}: a {dst.suffix} file cannot hold {codec} {kind}; "
                                 f"{'pick another --codec, or ' if kind == 'video' else ''}write .mkv (it holds any codec)")
    finally:
        out.close()


def _add_streams(av: Any, out: Any, inp: Any, scale: int, options: VideoOptions, dst: Path,
                 colour: _Colour, audio: bool = True) -> tuple[Any, dict[int, Any], str, str]:
    """Add the upscaled video stream and (``audio``) one remuxed stream per input audio stream to ``out``."""
    vin = inp.streams.video[0]
    audio_in = list(inp.streams.audio) if audio else []
    name, pix_fmt, crf = encoder_settings(options, dst, tuple(a.codec_context.name for a in audio_in))
    rate = vin.average_rate or vin.guessed_rate
    vout = out.add_stream(name, rate=rate) if rate else out.add_stream(name)
    cc = vout.codec_context
    vout.width, vout.height, vout.pix_fmt = vin.codec_context.width * scale, vin.codec_context.height * scale, pix_fmt
    cc.time_base = vin.time_base
    if vin.codec_context.sample_aspect_ratio:
        cc.sample_aspect_ratio = vin.codec_context.sample_aspect_ratio
    if not av.VideoFormat(pix_fmt).is_rgb:
        for key, value in colour.tags.items():
            setattr(cc, key, value)
    preset = options.preset or _PRESET.get(name)
    cc.options = {**_OPTIONS.get(name, {}), **({"crf": str(crf)} if crf is not None else {}),
                  **({"preset": preset} if preset else {})}
    amap = {}
    for a in audio_in:
        amap[a.index] = out.add_stream_from_template(a)
    others = len(inp.streams) - 1 - len(inp.streams.audio)
    if others:
        log.warning("%s: %d stream(s) that are neither the video nor audio (subtitles, data) are not copied", inp.name, others)
    return vout, amap, name, pix_fmt


class _Encoder:
    """Encodes upscaled frames and muxes the audio packets that travel with them, in its own thread."""

    def __init__(self, out: Any, vout: Any, amap: dict[int, Any], pix_fmt: str, colour: _Colour,
                 time_base: Fraction, stop: threading.Event, report: VideoReport, on_frame: Callable[[], None] | None,
                 size: int):
        self.out, self.vout, self.amap, self.pix_fmt, self.colour = out, vout, amap, pix_fmt, colour
        self.time_base, self.stop, self.report, self.on_frame = time_base, stop, report, on_frame
        self.inq: queue.Queue = queue.Queue(maxsize=size)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._encode()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the calling thread
            self.error = exc
            self.stop.set()

    def _encode(self) -> None:
        av = require("av")
        yuv = not av.VideoFormat(self.pix_fmt).is_rgb
        target = {"format": self.pix_fmt, **({"dst_colorspace": self.colour.matrix, "dst_color_range": self.colour.range}
                                             if yuv else {})}
        while (item := _get(self.inq, self.stop)) is not None:
            if isinstance(item, _End):
                self._flush()
                self._mux_audio(item.audio)
                return
            if item.matrix is not None:
                self.vout.set_display_matrix(item.matrix)
            if (item.rgb.height, item.rgb.width) != (self.vout.height, self.vout.width):
                raise InputError(f"the frame size changes at {_time(item.pts, self.time_base)} (to "
                                 f"{item.rgb.width}×{item.rgb.height} after upscaling); clips that change size are not supported")
            frame = item.rgb.reformat(**target)
            frame.pts, frame.time_base = item.pts, self.time_base
            for packet in self.vout.encode(frame):
                self.out.mux(packet)
            self._mux_audio(item.audio)
            self.report.frames += 1
            if self.on_frame is not None:
                self.on_frame()

    def _flush(self) -> None:
        for packet in self.vout.encode(None):
            self.out.mux(packet)

    def _mux_audio(self, packets: list) -> None:
        for packet in packets:
            packet.stream = self.amap[packet.stream.index]
            self.out.mux(packet)
            self.report.audio_packets += 1


def _network(up: Any, inq: queue.Queue, outq: queue.Queue, stop: threading.Event) -> None:
    """The calling thread's stage: frames from the decoder through ``up.stream``, copies to the encoder."""
    av = require("av")
    pending: deque[_Frame] = deque()
    end: list[_End] = []

    def frames() -> Iterator[np.ndarray]:
        while (item := _get(inq, stop)) is not None:
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _End):
                end.append(item)
                return
            pending.append(item)
            yield item.rgb

    for upscaled in up.stream(frames()):
        item = pending.popleft()
        # stream() reuses its buffer once the next frame is asked for: the VideoFrame is the one copy
        item.rgb = av.VideoFrame.from_ndarray(upscaled, format="rgb24")
        if not _put(outq, item, stop):
            return
    if end:
        _put(outq, end[0], stop)


def _run_stages(up: Any, decoder: _Decoder, encoder: _Encoder, stop: threading.Event) -> None:
    threads = [threading.Thread(target=decoder.run, name="bsrn-video-decode", daemon=True),
               threading.Thread(target=encoder.run, name="bsrn-video-encode", daemon=True)]
    for t in threads:
        t.start()
    try:
        _network(up, decoder.out, encoder.inq, stop)
        while threads[1].is_alive():  # a timed join, so that Ctrl-C reaches this thread
            threads[1].join(0.1)
        if encoder.error is not None:
            raise encoder.error
    finally:
        stop.set()
        for t in threads:
            t.join()


def upscale_video(src: str | Path, dst: str | Path, up: Any, options: VideoOptions = VideoOptions(),
                  on_frame: Callable[[], None] | None = None,
                  on_damage: Callable[[str], None] | None = None) -> VideoReport:
    """Upscale the video ``src`` into ``dst`` with the :class:`~bsrn_edge.runtime.Upscaler` ``up``.

    ``dst``'s suffix picks the container. ``dst`` appears only once complete: the file is written to
    a hidden temporary beside it and renamed, so an error or Ctrl-C leaves no file under that name.
    ``on_frame`` is called from the encoder thread after each frame is encoded (a progress bar).
    Damaged packets are skipped and the clip goes on; each is listed in the report with its timestamp
    and passed to ``on_damage`` as it is found (default: a logged warning). A file that is not a
    video raises :class:`InputError`.
    """
    return _write(src, dst, up, options, on_frame, on_damage, None)


def _write(src: str | Path, dst: str | Path, up: Any, options: VideoOptions, on_frame: Callable[[], None] | None,
           on_damage: Callable[[str], None] | None, span: tuple[Fraction, Fraction | None] | None) -> VideoReport:
    """:func:`upscale_video`, or with ``span`` :func:`upscale_segment`."""
    av = require("av")
    src, dst = Path(src), Path(dst)
    report = VideoReport()
    stop = threading.Event()
    with _open_input(src) as inp, atomic_path(dst) as tmp:
        out = av.open(str(tmp), mode="w")
        try:
            q: queue.Queue = queue.Queue(maxsize=options.queue)
            decoder = (_Decoder(inp, options, q, stop, report, on_damage or log.warning) if span is None else
                       _SegmentDecoder(inp, span, options, q, stop, report, on_damage or log.warning))
            vout, amap, report.codec, report.pix_fmt = _add_streams(av, out, inp, up.scale, options, dst, decoder.colour,
                                                                    audio=span is None)
            encoder = _Encoder(out, vout, amap, report.pix_fmt, decoder.colour, decoder.video.time_base, stop,
                               report, on_frame, options.queue)
            _run_stages(up, decoder, encoder, stop)
        except BaseException as exc:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report; the file is removed
                pass
            if isinstance(exc, _av_error(av)):
                raise InputError(f"{src} → {dst}: FFmpeg stopped ({exc}); nothing was written. Try .mkv, which "
                                 "holds any codec, or another --codec") from exc
            raise
        out.close()
    return report


# -- one long video in segments ------------------------------------------------------------------
Span = tuple[Fraction, Fraction | None]


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
    with _open_input(path) as c:
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
    return _write(src, dst, up, options, on_frame, on_damage, span)


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
    with _open_input(src) as inp, atomic_path(dst) as tmp:
        out = av.open(str(tmp), mode="w")
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


def _part_packets(av: Any, parts: list[Path], extradata: bytes | None) -> Iterator[Any]:
    """The video packets of each part in turn (a part is opened only while it is read)."""
    for part in parts:
        try:
            c = av.open(str(part))
        except (_av_error(av), OSError) as exc:
            raise InputError(f"{part}: segment not readable ({exc}); run the command again to redo it") from exc
        with c:
            if not c.streams.video:
                raise InputError(f"{part}: segment has no video stream; run the command again to redo it")
            v = c.streams.video[0]
            if v.codec_context.extradata != extradata:
                raise InputError(f"{part}: segment encoded with other settings than {parts[0].name}; the parts "
                                 "cannot be joined without re-encoding (run the command again to redo them)")
            for packet in c.demux(v):
                if packet.size:
                    yield packet
