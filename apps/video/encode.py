"""The encoder thread: upscaled frames encoded, audio packets muxed beside them."""

from __future__ import annotations

import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError

from .decode import Colour
from .options import _OPTIONS, _PRESET, VideoOptions, VideoReport
from .probe import encoder_settings
from .queues import End, get, time_text

__all__ = ["add_streams", "Encoder"]

log = logging.getLogger(__name__)


def add_streams(av: Any, out: Any, inp: Any, scale: int, options: VideoOptions, dst: Path,
                 colour: Colour, audio: bool = True) -> tuple[Any, dict[int, Any], str, str]:
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


class Encoder:
    """Encodes upscaled frames and muxes the audio packets that travel with them, in its own thread."""

    def __init__(self, out: Any, vout: Any, amap: dict[int, Any], pix_fmt: str, colour: Colour,
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
        while (item := get(self.inq, self.stop)) is not None:
            if isinstance(item, End):
                self._flush()
                self._mux_audio(item.audio)
                return
            if item.matrix is not None:
                self.vout.set_display_matrix(item.matrix)
            if (item.rgb.height, item.rgb.width) != (self.vout.height, self.vout.width):
                raise InputError(f"the frame size changes at {time_text(item.pts, self.time_base)} (to "
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
