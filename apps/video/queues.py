"""What travels between the decoder, network and encoder threads, and bounded puts and gets that give
up once the run is stopped."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = ["Frame", "End", "Failed", "put", "get", "time_text"]


@dataclass
class Frame:
    """One decoded frame on its way: RGB pixels (after the network: the upscaled frame, already an
    ``av.VideoFrame``), the output timestamp, the audio packets to mux after it, and the display matrix of
    the first frame."""

    rgb: Any
    pts: int
    audio: list = field(default_factory=list)
    matrix: list[int] | None = None


@dataclass
class End:
    audio: list = field(default_factory=list)


@dataclass
class Failed:
    error: BaseException


def put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def time_text(pts: int | None, time_base: Fraction | None) -> str:
    return f"t={float(pts * time_base):.3f} s" if pts is not None and time_base else "t=unknown"

