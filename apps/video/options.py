"""Video options and facts: what to encode and which part of the clip to run, what a probe found, what a
run wrote. No PyAV needed here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from bsrn_edge.errors import InputError

__all__ = ["VIDEO_EXTENSIONS", "DEFAULT_PIX_FMT", "VideoOptions", "VideoInfo", "VideoReport", "parse_frames", "Span"]

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

    def starts_past_end(self, options: VideoOptions) -> bool:
        """True when ``--frames A:`` starts at or past the frame count the container declares."""
        return self.frames is not None and options.frames[0] >= self.frames

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
    """What :func:`upscale_video` wrote: frames and audio packets, each damaged part it skipped, and (``ended_early``)
    why the output is partial when the input's frames ran out before the time its container declares."""

    frames: int = 0
    audio_packets: int = 0
    codec: str = ""
    pix_fmt: str = ""
    damaged: list[str] = field(default_factory=list)
    ended_early: str | None = None


#: [from, to) seconds in the input's own time; to None: to the end
Span = tuple[Fraction, Fraction | None]
