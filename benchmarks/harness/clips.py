"""Synthetic video clips of real image content, for the video benchmark and tests (needs PyAV).

A clip pans a window across a real image (never noise), so codecs and the network see the content
they are made for, and every fact about the clip (frame count, timestamps, audio length) is known
from how it was made.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from bsrn_edge._lazy import require

__all__ = ["write_pan_clip"]


def _write_tone(av, container, stream, seconds: float) -> None:  # type: ignore[no-untyped-def]
    rate = 48000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    for k in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        for p in stream.encode(frame):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def write_pan_clip(path: str | Path, image: np.ndarray, frames: int, *, size: tuple[int, int] = (160, 90),
                   fps: int = 25, origin: tuple[int, int] = (40, 100), step: tuple[int, int] = (5, 1),
                   vfr: bool = False, audio: bool = False, codec: str = "libx264",
                   rotation: int | None = None) -> list[float]:
    """Write ``frames`` crops of ``size`` (width, height) moving ``step`` pixels a frame across ``image``
    (H×W×3 uint8; the window wraps at the edge), tagged BT.709 limited range; returns each frame's
    time in seconds. ``vfr``: millisecond time base, gaps alternating 80 and 40 ms. ``audio``: a 440 Hz
    mono AAC track as long as the video. ``rotation``: a display matrix, degrees counter-clockwise."""
    av = require("av")
    w, h = size
    times = []
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height = w, h
        v.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        cc = v.codec_context
        cc.time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # BT.709, limited
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=48000, layout="mono") if audio else None
        pts = 0
        for i in range(frames):
            x = (origin[0] + step[0] * i) % (image.shape[1] - w)
            y = (origin[1] + step[1] * i) % (image.shape[0] - h)
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[y:y + h, x:x + w]), format="rgb24")
            f = f.reformat(format=v.pix_fmt, dst_colorspace="ITU709", dst_color_range=1)
            f.pts, f.time_base = pts, cc.time_base
            times.append(float(pts * cc.time_base))
            pts += (40 if i % 2 else 80) if vfr else 1
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            _write_tone(av, c, a, frames / fps)
    return times
