"""Optional PyTorch backend: checkpoints and bundled names, CPU or CUDA, fp32 or fp16 (channels_last).

On CUDA it runs the network three ways: eager, captured CUDA graphs (one per input shape), or
``torch.compile`` (inductor). Its device path (:meth:`TorchBackend.run_device`) takes uint8 N×h×w×3
pixels that are already on the device and converts them there; all network work of every caller is
ordered on one compute stream, so callers' copy streams overlap with it.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np

from bsrn_edge import __version__
from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

from .base import check_batch, check_pixels

__all__ = ["TorchBackend", "Mode"]

Mode = Literal["eager", "graph", "compile"]

# Graphs and compiled kernels pay off where launch overhead matters: frames and tiles. A one-off large
# image runs eager: capturing it would run the network three more times and pin its activations in a
# graph pool for good, and compiling it takes tens of seconds (measured on an H200: a 4000×3000 upscale
# took 3.8 s with a graph and 25 s with inductor against 2.8 s eager).
ACCELERATED_MAX_PIXELS = 1920 * 1088  # N·h·w of one call, LR pixels
ACCELERATED_MAX_SHAPES = 8


class TorchBackend:
    """Runs the deploy form of a checkpoint with PyTorch (the only backend that needs torch).

    ``mode``: ``"eager"``; ``"graph"`` captures one CUDA graph per input shape (CUDA only); ``"compile"``
    uses ``torch.compile`` (inductor; the first call per shape compiles for tens of seconds).
    ``cuda_graph=True`` is the older spelling of ``mode="graph"``. Both apply to the first
    ``ACCELERATED_MAX_SHAPES`` input shapes of at most ``ACCELERATED_MAX_PIXELS`` LR pixels; other
    calls run eager.
    """

    def __init__(self, checkpoint: str, *, device: str = "cpu", precision: str = "fp32", cuda_graph: bool = False,
                 mode: Mode | None = None):
        torch = require("torch")
        from bsrn_edge.checkpoint import load_model
        from bsrn_edge.models.deploy import to_deploy

        mode = mode or ("graph" if cuda_graph else "eager")
        if precision not in ("fp32", "fp16"):
            raise InputError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if mode not in ("eager", "graph", "compile"):
            raise InputError(f"mode must be 'eager', 'graph' or 'compile', got {mode!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but PyTorch sees no CUDA GPU; use the CPU "
                             f"(device='cpu'; bsrn-upscale -g cpu)")
        if precision == "fp16" and not device.startswith("cuda"):
            raise InputError("fp16 with PyTorch needs a CUDA device; use fp32 on the CPU (precision='fp32'; "
                             "bsrn-upscale --fp32)")
        loaded = load_model(checkpoint)
        v = loaded.variant
        self.torch = torch
        self.dev = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        cuda = self.dev.type == "cuda"
        # eager PyTorch runs each partial sum of SplitPointwise as its own add kernel (ONNX Runtime fuses
        # them into the convs), so here the Concat costs less memory traffic than the sums
        model = to_deploy(loaded.model, split_concat=False).to(self.dev, self.dtype)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.mode: Mode = mode if cuda or mode == "compile" else "eager"
        self._net = torch.compile(model) if self.mode == "compile" else model
        self.meta = ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256,
                              __version__, precision=precision, input_range=v.input_range)
        suffix = {"eager": "", "graph": "-graph", "compile": "-compile"}[self.mode]
        self.name = f"torch-{self.dev.type}-{precision}{suffix}"
        self.tile_limits = (v.min_size, 0)
        self.max_batch = 0
        from ..devices.torch import TorchDevice

        self.device = TorchDevice(str(self.dev))
        self._compute = self.device.stream()  # all network work, from every caller, in order
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        self._accelerated: set[tuple[int, ...]] = set()  # shapes that get a graph or compiled kernels
        self._lock = threading.Lock()  # graphs share static buffers; the compute stream is shared

    # -- the network on tensors ----------------------------------------------------------------
    def forward_tensor(self, t: Any) -> Any:
        """Float N×3×h×w tensor on this device (any float dtype) → float N×3×sh×sw in the model dtype.

        Call it on the stream the result is wanted on; it is not thread-safe with graphs (callers lock).
        """
        torch = self.torch
        t = t.to(self.dtype)
        if self.dev.type == "cuda":
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.mode == "eager" or not self.accelerates(tuple(t.shape)):
                return self.model(t)
            return self._net(t) if self.mode == "compile" else self._replay(t)

    def accelerates(self, shape: tuple[int, ...]) -> bool:
        """Whether calls of this N×C×h×w shape run through a CUDA graph / compiled kernels (else eager)."""
        if shape in self._accelerated:
            return True
        if len(self._accelerated) >= ACCELERATED_MAX_SHAPES or shape[0] * shape[2] * shape[3] > ACCELERATED_MAX_PIXELS:
            return False
        self._accelerated.add(shape)
        return True

    def _replay(self, t: Any) -> Any:
        torch = self.torch
        key = tuple(t.shape)
        if key not in self._graphs:  # capture once per shape (fixed tile and frame shapes)
            static_in = t.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(t)
        graph.replay()
        return static_out

    def _pixels(self, x: Any, out: Any) -> Any:
        """uint8 N×h×w×3 → network → uint8 N×sh×sw×3 into ``out``; returns a device bool 'all finite'."""
        torch = self.torch
        f = x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)  # the same float32 division as bsrn_edge.pixels
        y = self.forward_tensor(f).float()
        finite = torch.isfinite(y).all()
        out.copy_(y.mul_(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1))
        return finite

    # -- Backend -------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = check_batch(x, self)
        t = torch.from_numpy(x).to(self.dev)
        with self._lock, self.device_stream(None), torch.inference_mode():
            y = self.forward_tensor(t).float().cpu().numpy()
        return y

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        out[...] = self.infer(x)

    def device_stream(self, stream: Any) -> Any:
        """Context: run on the shared compute stream, ordered after ``stream`` and before what follows on it."""
        import contextlib

        torch, dev = self.torch, self.device
        if self._compute is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def ctx():  # type: ignore[no-untyped-def]
            caller = stream if stream is not None else torch.cuda.current_stream(self.dev)
            dev.join(self._compute, caller)
            with torch.cuda.stream(self._compute):
                yield
            dev.join(caller, self._compute)

        return ctx()

    # -- DeviceBackend -------------------------------------------------------------------------
    def run_device(self, x: Any, out: Any, stream: Any) -> Any:
        """Enqueue uint8 pixels → uint8 pixels on ``stream``; returns a device bool tensor, True when every
        output value was finite (read it after the stream's work has completed)."""
        check_pixels(tuple(x.shape), tuple(out.shape), self)
        with self._lock, self.device_stream(stream), self.torch.inference_mode():
            return self._pixels(x, out)

    def close(self) -> None:
        self._graphs.clear()
