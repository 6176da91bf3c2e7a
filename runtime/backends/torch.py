"""Optional PyTorch backend: checkpoints and bundled names, CPU or CUDA, fp32 or fp16 (channels_last)."""

from __future__ import annotations

import threading

import numpy as np

from bsrn_edge import __version__
from bsrn_edge._lazy import require
from bsrn_edge.errors import InputError
from bsrn_edge.meta import ModelMeta

from .base import check_batch

__all__ = ["TorchBackend"]


class TorchBackend:
    """Runs the deploy form of a checkpoint with PyTorch (the only backend that needs torch)."""

    def __init__(self, checkpoint: str, *, device: str = "cpu", precision: str = "fp32", cuda_graph: bool = False):
        torch = require("torch")
        from bsrn_edge.checkpoint import load_model
        from bsrn_edge.models.deploy import to_deploy

        if precision not in ("fp32", "fp16"):
            raise InputError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but PyTorch sees no CUDA GPU; use device='cpu'")
        if precision == "fp16" and not device.startswith("cuda"):
            raise InputError("fp16 with PyTorch needs a CUDA device; use precision='fp32' on the CPU")
        loaded = load_model(checkpoint)
        v = loaded.variant
        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        # eager PyTorch runs each partial sum of SplitPointwise as its own add kernel (ONNX Runtime fuses
        # them into the convs), so here the Concat costs less memory traffic than the sums
        model = to_deploy(loaded.model, split_concat=False).to(self.device, self.dtype)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.meta = ModelMeta(v.name, v.arch, v.scale, v.channels, v.min_size, v.tile, v.overlap, loaded.sha256,
                              __version__, precision=precision, input_range=v.input_range)
        self.name = f"torch-{self.device.type}-{precision}" + ("-graph" if cuda_graph else "")
        self.tile_limits = (v.min_size, 0)
        self.max_batch = 0
        self._graphs: dict[tuple[int, ...], tuple[object, object, object]] = {}
        self._use_graph = cuda_graph and self.device.type == "cuda"
        self._lock = threading.Lock()  # captured graphs share static buffers

    def _run(self, t):  # type: ignore[no-untyped-def]
        torch = self.torch
        with torch.inference_mode():
            if not self._use_graph:
                return self.model(t)
            with self._lock:
                return self._replay(t)

    def _replay(self, t):  # type: ignore[no-untyped-def]
        torch = self.torch
        with torch.inference_mode():
            key = tuple(t.shape)
            if key not in self._graphs:  # capture once per shape (fixed tile and frame shapes)
                static_in = t.clone()
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        self.model(static_in)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = self.model(static_in)
                self._graphs[key] = (graph, static_in, static_out)
            graph, static_in, static_out = self._graphs[key]
            static_in.copy_(t)  # type: ignore[attr-defined]
            graph.replay()  # type: ignore[attr-defined]
            return static_out.clone()  # type: ignore[attr-defined]

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = check_batch(x, self)
        t = torch.from_numpy(x).to(self.device, self.dtype)
        if self.device.type == "cuda":
            t = t.contiguous(memory_format=torch.channels_last)
        return self._run(t).float().cpu().numpy()

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        out[...] = self.infer(x)

    def close(self) -> None:
        self._graphs.clear()
