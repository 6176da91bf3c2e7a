"""Asynchronous streams for tests without a GPU: work is queued and runs later, and across streams in
whatever order the events between them allow, so a missing event join or host wait gives a wrong result.

CUDA's contract (CUDA Runtime API, "Streams" and ``cudaStreamWaitEvent``; pycuda's ``Stream.wait_for_event``:
"Enqueues a wait for the given Event"): work on one stream runs in order; work on two streams has no order
unless one waits for an event recorded on the other; the host sees a result only after it synchronises
with the stream or an event after it. These fakes hold work back as far as that contract allows:

- a *lazy* stream runs its work only when the host waits for it (``synchronize``, an event's ``synchronize``)
  or when another stream's wait needs it, and then it runs straight through to what was asked, without
  letting other streams in between (a GPU busy elsewhere);
- an *eager* stream runs each piece of work as soon as the waits queued before it allow (an idle GPU that
  starts at once), also before work the host enqueued earlier on a lazy stream.

A backend's compute stream made eager and the callers' streams lazy show both mistakes: a compute stream
that does not wait for the caller's upload runs the network on the old input, and a caller's stream that
does not wait for the compute stream downloads the old output.

:class:`AsyncHostDevice` is the runtime's ``Device`` protocol on numpy buffers with such streams;
:func:`async_ort` makes an ONNX Runtime backend's device path run its session on its compute stream, as
ONNX Runtime's TensorRT execution provider does with a ``user_compute_stream`` (it skips the host sync
then: microsoft/onnxruntime#19301 and the EP source, /work/research/trt_ort.md §4.6).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

__all__ = ["Scheduler", "QueueStream", "Marker", "Wait", "AsyncHostDevice", "async_ort"]

Op = Callable[[], None]


class Marker:
    """A no-op queued by an event record; the event has completed when its marker has run."""

    def __call__(self) -> None:
        return None


class Wait:
    """Queued by ``wait_for_event``: runs ``src`` up to ``marker`` first (it is ready once that has run)."""

    def __init__(self, src: "QueueStream", marker: Op):
        self.src, self.marker = src, marker

    def ready(self) -> bool:
        return self.src.done(self.marker)

    def __call__(self) -> None:
        self.src.run_until(self.marker)


class Scheduler:
    """The streams of one fake device. ``lazy=False`` runs all work at once, on the calling thread."""

    def __init__(self, lazy: bool = True):
        self.lazy = lazy
        self.streams: list[QueueStream] = []
        self._busy = False

    def progress(self) -> None:
        """Let every eager stream run what its waits allow (called after enqueueing and after host waits)."""
        if self._busy:
            return
        self._busy = True
        try:
            moved = True
            while moved:
                moved = any([s.run_ready() for s in self.streams if s.eager])
        finally:
            self._busy = False

    def run_everything(self) -> None:
        for s in list(self.streams):
            s.run_all()


class QueueStream:
    """A queue of device work on a :class:`Scheduler` (see the module doc for lazy and eager)."""

    _handles = itertools.count(0x5000, 0x10)

    def __init__(self, scheduler: Scheduler, eager: bool = False):
        self.scheduler, self.eager = scheduler, eager
        self.queue: list[Op] = []
        self.handle = next(QueueStream._handles)
        scheduler.streams.append(self)

    def enqueue(self, op: Op) -> None:
        if not self.scheduler.lazy:
            op()
            return
        self.queue.append(op)
        self.scheduler.progress()

    def done(self, op: Op) -> bool:
        """Whether ``op`` (once enqueued here) has run."""
        return op not in self.queue

    def run_ready(self) -> bool:
        """Run queued work from the front while it needs nothing that has not run; True if anything ran."""
        ran = False
        while self.queue and (not isinstance(self.queue[0], Wait) or self.queue[0].ready()):
            self.queue.pop(0)()
            ran = True
        return ran

    def run_until(self, op: Op) -> None:
        while op in self.queue:
            self.queue.pop(0)()

    def run_all(self) -> None:
        while self.queue:
            self.queue.pop(0)()

    def wait_on(self, other: "QueueStream") -> None:
        """Order the work enqueued here from now on after everything enqueued on ``other`` so far."""
        marker = Marker()
        other.enqueue(marker)
        self.enqueue(Wait(other, marker))


class _Event:
    def __init__(self, stream: QueueStream):
        self.stream, self.marker = stream, Marker()
        stream.enqueue(self.marker)

    def synchronize(self) -> None:
        self.stream.run_until(self.marker)
        self.stream.scheduler.progress()


class AsyncHostDevice:
    """The ``Device`` protocol (runtime/devices/base.py) on numpy buffers with asynchronous streams.

    Buffers start filled with 0xA5 bytes, so reading one before the work that writes it shows.
    ``eager_streams``: how many of the first streams made are eager (see the module doc).
    """

    kind = "cpu"
    index = 0

    def __init__(self, eager_streams: int = 0):
        self.scheduler = Scheduler()
        self.eager_streams = eager_streams

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        a = np.empty(shape, dtype)
        a.view(np.uint8)[...] = 0xA5
        return a

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self.empty(shape, dtype)

    def stream(self) -> QueueStream:
        eager = len(self.scheduler.streams) < self.eager_streams
        return QueueStream(self.scheduler, eager=eager)

    def upload(self, dst: Any, src: np.ndarray, stream: QueueStream) -> None:
        stream.enqueue(lambda: np.copyto(_array(dst), src.reshape(dst.shape)))  # reads the host buffer when it runs

    def download(self, dst: np.ndarray, src: Any, stream: QueueStream) -> None:
        stream.enqueue(lambda: np.copyto(dst, _array(src).reshape(dst.shape)))

    def record(self, stream: QueueStream) -> _Event:
        return _Event(stream)

    def wait(self, event: _Event | None) -> None:
        if event is not None:
            event.synchronize()

    def join(self, stream: QueueStream, other: QueueStream) -> None:
        if stream is not None and other is not None and stream is not other:
            stream.wait_on(other)

    def stream_handle(self, stream: QueueStream | None) -> int:
        return stream.handle if stream is not None else 0

    def free_memory(self) -> int:
        return 4 << 30


def _array(buf: Any) -> np.ndarray:
    """A numpy view of a numpy array or a CPU torch tensor."""
    return buf if isinstance(buf, np.ndarray) else buf.numpy()


class _Binding:
    """An ONNX Runtime IOBinding that remembers whether device buffers were bound (the device path)."""

    def __init__(self, binding: Any):
        self._binding, self.on_device = binding, False

    def bind_input(self, *args: Any, **kw: Any) -> None:
        self.on_device = True
        self._binding.bind_input(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._binding, name)


class _OnStream:
    """An ONNX Runtime session whose device-path runs are enqueued on ``stream`` instead of running now."""

    def __init__(self, session: Any, stream: QueueStream):
        self._session, self._stream = session, stream

    def io_binding(self) -> _Binding:
        return _Binding(self._session.io_binding())

    def run_with_iobinding(self, binding: Any, *args: Any) -> None:
        inner = binding._binding if isinstance(binding, _Binding) else binding
        if isinstance(binding, _Binding) and binding.on_device:
            self._stream.enqueue(lambda: self._session.run_with_iobinding(inner, *args))
        else:
            self._session.run_with_iobinding(inner, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def async_ort(backend: Any, device: AsyncHostDevice) -> Any:
    """Make a CPU :class:`~bsrn_edge.runtime.backends.onnxruntime.OnnxRuntimeBackend` behave like one on a GPU with
    a user compute stream: its device is ``device``, its compute stream one of ``device``'s, and its device-path
    runs are enqueued there. Returns the backend."""
    backend.device = device
    backend._stream = device.stream()
    session_for = backend._session_for
    backend._session_for = lambda shape: _OnStream(session_for(shape), backend._stream)
    return backend
