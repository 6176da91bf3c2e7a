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

import errno
import logging
import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import atomic_file

from .decode import Decoder, SegmentDecoder
from .encode import Encoder, add_streams
from .options import Span, VideoOptions, VideoReport
from .probe import av_error, open_input
from .queues import End, Failed, Frame, get, put

__all__ = ["upscale_video", "write_video"]

log = logging.getLogger(__name__)


def _network(up: Any, inq: queue.Queue, outq: queue.Queue, stop: threading.Event) -> None:
    """The calling thread's stage: frames from the decoder through ``up.stream``, copies to the encoder."""
    av = require("av")
    pending: deque[Frame] = deque()
    end: list[End] = []

    def frames() -> Iterator[np.ndarray]:
        while (item := get(inq, stop)) is not None:
            if isinstance(item, Failed):
                raise item.error
            if isinstance(item, End):
                end.append(item)
                return
            pending.append(item)
            yield item.rgb

    for upscaled in up.stream(frames()):
        item = pending.popleft()
        # stream() reuses its buffer once the next frame is asked for: the VideoFrame is the one copy
        item.rgb = av.VideoFrame.from_ndarray(upscaled, format="rgb24")
        if not put(outq, item, stop):
            return
    if end:
        put(outq, end[0], stop)


def _run_stages(up: Any, decoder: Decoder, encoder: Encoder, stop: threading.Event) -> None:
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
    return write_video(src, dst, up, options, on_frame, on_damage, None)


def _system_error(exc: BaseException) -> bool:
    """An error of the system, not of FFmpeg's settings (a full disk, no permission): reported as a write
    error, never answered with "try another container"."""
    return isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL, errno.ENOSYS)


def write_video(src: str | Path, dst: str | Path, up: Any, options: VideoOptions, on_frame: Callable[[], None] | None,
                on_damage: Callable[[str], None] | None, span: Span | None) -> VideoReport:
    """:func:`upscale_video`, or with ``span`` :func:`~.segments.upscale_segment`."""
    av = require("av")
    src, dst = Path(src), Path(dst)
    report = VideoReport()
    stop = threading.Event()
    with open_input(src) as inp, atomic_file(dst) as fh:
        out = av.open(fh, mode="w")  # through the descriptor that created the temporary (by its name: the format)
        try:
            q: queue.Queue = queue.Queue(maxsize=options.queue)
            decoder = (Decoder(inp, options, q, stop, report, on_damage or log.warning) if span is None else
                       SegmentDecoder(inp, span, options, q, stop, report, on_damage or log.warning))
            vout, amap, report.codec, report.pix_fmt = add_streams(av, out, inp, up.scale, options, dst, decoder.colour,
                                                                   audio=span is None)
            encoder = Encoder(out, vout, amap, report.pix_fmt, decoder.colour, decoder.video.time_base, stop,
                              report, on_frame, options.queue)
            _run_stages(up, decoder, encoder, stop)
        except BaseException as exc:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report; the file is removed
                pass
            if isinstance(exc, av_error(av)) and not _system_error(exc):
                raise InputError(f"{src} → {dst}: FFmpeg stopped ({exc}); nothing was written. Try .mkv, which "
                                 "holds any codec, or another --codec") from exc
            raise
        out.close()
    return report
