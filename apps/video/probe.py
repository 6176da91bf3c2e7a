"""Opening and describing a video with PyAV, and checking the encoder settings before any work."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import IMAGE_EXTENSIONS

from .options import (
    _CODECS,
    _CRF,
    _PRESETS,
    _STILL_FORMATS,
    _UNLISTED,
    DEFAULT_PIX_FMT,
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoOptions,
)

__all__ = ["av_error", "open_input", "declared_end", "probe_video", "looks_like_video", "output_for", "default_codec", "encoder_settings"]


def av_error(av: Any) -> type[Exception]:
    return av.FFmpegError if hasattr(av, "FFmpegError") else av.AVError  # PyAV ≥ 14 / older


def open_input(path: Path) -> Any:
    """The open input container with a video stream, or an :class:`InputError` that says what is wrong."""
    av = require("av")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; expected a video (mp4, mov, mkv, webm, …)")
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except (av_error(av), OSError) as exc:
        raise InputError(f"{path}: not a readable video ({getattr(exc, 'strerror', None) or exc}); expected a complete "
                         "video file that FFmpeg reads (mp4, mov, mkv, webm, …). The file may be truncated, "
                         "damaged or of another kind") from exc
    if container.format.name.endswith("_pipe") or container.format.name in _STILL_FORMATS or not container.streams.video:
        kind = "no video stream" if not container.streams.video else f"a still image or text ({container.format.name})"
        container.close()
        raise InputError(f"{path}: holds {kind}, not a video; pass a video file (mp4, mov, mkv, webm, …)")
    return container


def _tag_seconds(text: str) -> Fraction | None:
    """A Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``) in seconds."""
    m = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", text.strip())
    return None if m is None else int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])


def declared_end(container: Any, stream: Any) -> tuple[Fraction, bool] | None:
    """(Where ``stream`` should end in seconds as its container declares it, True when the figure is the
    stream's own: its duration, or a Matroska track's DURATION tag; False for the whole file's duration, which
    may include a longer audio track); None when the container does not say."""
    tb = stream.time_base
    start = stream.start_time * tb if stream.start_time is not None and tb else Fraction(0)
    if stream.duration and tb:
        return start + stream.duration * tb, True
    tagged = _tag_seconds(stream.metadata.get("DURATION", ""))
    if tagged is not None:
        return tagged, True
    if container.duration:
        return Fraction(container.duration, 1_000_000) + Fraction(container.start_time or 0, 1_000_000), False
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path``'s header and describe its first video stream; :class:`InputError` when it is no video."""
    path = Path(path)
    with open_input(path) as c:
        v = c.streams.video[0]
        duration = float(v.duration * v.time_base) if v.duration and v.time_base else (
            c.duration / 1_000_000 if c.duration else None)
        return VideoInfo(path, v.codec_context.width, v.codec_context.height, v.codec_context.name,
                         v.frames or None, duration, v.average_rate or v.guessed_rate,
                         tuple(a.codec_context.name for a in c.streams.audio))


def looks_like_video(path: str | Path) -> bool:
    """True when bsrn-upscale should treat ``path`` as a video: a file with a video suffix (a bad one
    is then reported as such), or any other non-image file in which FFmpeg finds a video stream. A media
    file that holds only audio (an .m4a) is an :class:`InputError`: it is neither a video nor an image."""
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
        _refuse_audio_only(path)
        return False
    return True


def _refuse_audio_only(path: Path) -> None:
    av = require("av")
    try:
        with av.open(str(path), mode="r") as c:
            audio = [a.codec_context.name for a in c.streams.audio] if not c.streams.video else []
    except (av_error(av), OSError, ValueError):
        return
    if audio:
        raise InputError(f"{path}: holds only audio ({', '.join(audio)}), not a video; pass a video file (mp4, mov, "
                         f"mkv, webm, …) or an image")


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
    except (av_error(av), ValueError) as exc:
        raise InputError(f"{dst}: FFmpeg cannot tell the container from {dst.suffix!r}; use .mp4, .mkv, .mov or .webm") from exc
    try:
        for codec, kind in codecs:
            if out.format.name not in _UNLISTED and codec not in out.supported_codecs:
                raise InputError(f"{dst}: a {dst.suffix} file cannot hold {codec} {kind}; "
                                 f"{'pick another --codec, or ' if kind == 'video' else ''}write .mkv (it holds any codec)")
    finally:
        out.close()
