"""Camera → BSRN upscale → window or file, with latency kept bounded when the model is slower than the camera.

    python examples/camera_app.py --model bsrn-s-x4.onnx                  # camera 0, shown in a window
    python examples/camera_app.py --model bsrn-s-x4.onnx --camera clip.mp4 --camera-fps 30 --output out.avi --seconds 10

Three threads. The capture thread reads the camera as fast as it delivers frames and puts each into
a queue of ``--queue`` frames that drops its oldest frame when full. The worker upscales the frame at
the head of that queue with ``Upscaler.upscale_into`` (buffers reused: nothing is allocated per frame
but the BGR copy handed on). The main thread shows or writes each result and prints, once a second,
the latency from capture to display (p50/p95), the output fps and the frames dropped. A frame waits
for at most ``--queue`` model runs before it is upscaled, and a result for at most two frames' display
before it is shown, so latency stays bounded however fast the camera is.
A video file stands in for a camera with ``--camera FILE --camera-fps N`` (read at N frames a second).
Needs ``pip install 'bsrn-edge[cpu,camera]'`` (OpenCV, headless: ``--show`` needs a full opencv-python, and says
so in one line when it is missing; so does a camera that cannot be opened).
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bsrn_edge._lazy import require
from bsrn_edge.errors import BsrnEdgeError, InputError, MissingDependencyError
from bsrn_edge.runtime import Upscaler


class DropOldest:
    """A bounded FIFO whose ``put`` never blocks: when full, the oldest item is dropped and counted."""

    def __init__(self, size: int):
        self.items: collections.deque = collections.deque(maxlen=size)
        self.cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Any) -> None:
        with self.cond:
            if len(self.items) == self.items.maxlen:
                self.dropped += 1
            self.items.append(item)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def get(self) -> Any:
        """The oldest item, waiting for one; None once closed and empty."""
        with self.cond:
            self.cond.wait_for(lambda: self.items or self.closed)
            return self.items.popleft() if self.items else None


@dataclass
class Stats:
    """What a run measured. Latency: capture → shown or written, per displayed frame."""

    captured: int = 0
    shown: int = 0
    dropped: int = 0
    latency_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    error: BaseException | None = None  # what stopped the worker, re-raised by run()

    def percentile(self, q: float, last: int | None = None) -> float:
        values = self.latency_ms[-last:] if last else self.latency_ms
        return float(np.percentile(values, q)) if values else float("nan")

    @property
    def fps(self) -> float:
        return self.shown / max(1e-9, (self.ended or time.perf_counter()) - self.started)

    def line(self, last: int | None = None) -> str:
        return (f"latency p50 {self.percentile(50, last):.0f} ms, p95 {self.percentile(95, last):.0f} ms | "
                f"output {self.fps:.2f} fps | dropped {self.dropped} of {self.captured}")


def capture(cap: Any, frames: DropOldest, stats: Stats, stop: threading.Event, fps: float | None) -> None:
    """Read until the source ends or ``stop`` is set; ``fps`` paces a file like a camera (which paces itself)."""
    tick = time.perf_counter()
    try:
        while not stop.is_set():
            ok, bgr = cap.read()
            if not ok:
                break
            if fps:
                tick += 1 / fps
                time.sleep(max(0.0, tick - time.perf_counter()))
            stats.captured += 1
            frames.put((time.perf_counter(), bgr))
            stats.dropped = frames.dropped
    finally:
        frames.close()


def upscale_worker(up: Upscaler, frames: DropOldest, results: DropOldest, stats: Stats) -> None:
    cv2 = require("cv2")
    rgb = out = None
    try:
        while (item := frames.get()) is not None:
            captured_at, bgr = item
            start = time.perf_counter()
            if rgb is None or rgb.shape != bgr.shape:
                rgb = np.empty_like(bgr)
                out = np.empty((rgb.shape[0] * up.scale, rgb.shape[1] * up.scale, 3), np.uint8)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=rgb)
            up.upscale_into(rgb, out)
            stats.model_ms.append((time.perf_counter() - start) * 1000)
            results.put((captured_at, cv2.cvtColor(out, cv2.COLOR_RGB2BGR)))  # a new array: safe to hand on
    except BaseException as exc:  # noqa: BLE001 - re-raised by run() in the main thread
        stats.error = exc
    finally:
        results.close()


def run(source: int | str, up: Upscaler, *, camera_fps: float | None = None, queue: int = 2,
        seconds: float | None = None, output: str | None = None, show: bool = False,
        report: Callable[[str], None] = print) -> Stats:
    """Capture from ``source`` (a camera index or a video file), upscale, show and/or write; returns the stats."""
    cv2 = require("cv2")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise InputError(f"cannot open camera {source!r}; pass a camera index (0, 1, …) or a video file")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if w and h:  # the first run of a frame size builds the backend's session for it: not a camera frame's cost
        up.upscale_into(np.zeros((h, w, 3), np.uint8), np.empty((h * up.scale, w * up.scale, 3), np.uint8))
    stats, stop = Stats(), threading.Event()
    frames, results = DropOldest(queue), DropOldest(2)
    threads = [threading.Thread(target=capture, args=(cap, frames, stats, stop, camera_fps), daemon=True),
               threading.Thread(target=upscale_worker, args=(up, frames, results, stats), daemon=True)]
    for t in threads:
        t.start()
    writer, printed = None, time.perf_counter()
    try:
        while (item := results.get()) is not None:
            captured_at, bgr = item
            if output:
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if output.endswith(".mp4") else "MJPG"))
                    writer = cv2.VideoWriter(output, fourcc, camera_fps or cap.get(cv2.CAP_PROP_FPS) or 30,
                                             (bgr.shape[1], bgr.shape[0]))
                writer.write(bgr)
            if show:
                cv2.imshow("bsrn-edge", bgr)
                if cv2.waitKey(1) in (27, ord("q")):  # Esc or q
                    stop.set()
            stats.latency_ms.append((time.perf_counter() - captured_at) * 1000)
            stats.shown += 1
            now = time.perf_counter()
            if seconds is not None and now - stats.started >= seconds:
                stop.set()  # the frames already queued are still shown
            if now - printed >= 1:
                report(stats.line(last=100))
                printed = now
    finally:
        stop.set()
        for t in threads:
            t.join()
        cap.release()
        if writer is not None:
            writer.release()
    if stats.error is not None:
        raise stats.error
    stats.ended, stats.dropped = time.perf_counter(), frames.dropped + results.dropped
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help=".onnx, .engine, checkpoint file or bundled name")
    ap.add_argument("--camera", default="0", help="camera index, or a video file standing in for a camera")
    ap.add_argument("--camera-fps", type=float, help="read a file at this rate, as a camera would deliver it")
    ap.add_argument("--queue", type=int, default=2, help="frames waiting for the model at most (oldest dropped)")
    ap.add_argument("--seconds", type=float, help="stop after this long (default: until the source ends, or Esc)")
    ap.add_argument("--output", help="write the upscaled frames to this .avi/.mp4")
    ap.add_argument("--show", action="store_true", help="show the frames in a window (Esc or q stops)")
    args = ap.parse_args(argv)
    source = int(args.camera) if args.camera.isdigit() else args.camera
    try:
        if args.show:
            check_window()
        with Upscaler(args.model) as up:
            stats = run(source, up, camera_fps=args.camera_fps, queue=args.queue, seconds=args.seconds,
                        output=args.output, show=args.show)
    except BsrnEdgeError as exc:  # one line that says what to do, never a traceback
        print(f"camera_app: error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, MissingDependencyError) else 2
    print(f"done: {stats.shown} frames shown; {stats.line()}")
    return 0


def check_window() -> None:
    """``--show`` needs an OpenCV built with a window system; the ``camera`` extra installs the headless build
    (servers have no display), whose ``imshow`` raises. Said before the model is opened."""
    cv2 = require("cv2")
    try:
        cv2.namedWindow("bsrn-edge")
    except cv2.error as exc:
        raise InputError("--show needs OpenCV with a window system, and this one is headless (the 'camera' extra "
                         "installs opencv-python-headless): pip uninstall -y opencv-python-headless && pip install "
                         "opencv-python, or write the frames with --output out.avi instead") from exc


if __name__ == "__main__":
    raise SystemExit(main())
