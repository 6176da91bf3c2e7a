"""One runner per bench backend: an upscale function for fidelity, a forward call and clock for timing,
and a memory measurement. The timing loop itself is :func:`~bsrn_edge.bench.timing.time_calls`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bsrn_edge.errors import InputError

from .memory import MIB, cpu_peak_rss_increase_mb
from .timing import Clock, cuda_event_clock, perf_counter_clock

if TYPE_CHECKING:  # pragma: no cover
    from bsrn_edge.checkpoint import LoadedModel

__all__ = ["Runner", "TorchRunner", "OrtRunner", "OvRunner", "TrtRunner"]

_COPIES_NOTE = "runtime includes host↔device copies"


class Runner:
    """One backend ready to run one model. Subclasses give :meth:`upscale` (1×3×H×W float32 in [0, 1]
    in, the upscaled array out) and may prepare a faster :meth:`forward` or another :attr:`clock`."""

    note: str = ""
    clock: Clock = staticmethod(perf_counter_clock)

    def upscale(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> Callable[[], object]:
        """A call running one forward pass on ``x``, prepared so that only the pass is timed."""
        return lambda: self.upscale(x)

    def memory_mb(self, call: Callable[[], object], device: str) -> tuple[float | None, str]:
        """Run ``call`` once; return its memory in MB (None where not measured) and a note."""
        if device == "cpu":
            return cpu_peak_rss_increase_mb(call)
        call()
        return None, "mem: not measured for this backend on CUDA"

    def close(self) -> None:
        pass


class TorchRunner(Runner):
    """PyTorch fp32 eager on the authors' structure; on CUDA the input is on the device before timing
    and CUDA events time the forward."""

    def __init__(self, loaded: "LoadedModel", device: str):
        import torch

        from bsrn_edge.evaluate import torch_upscale_fn

        if device == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda requested but PyTorch sees no CUDA GPU; use --device cpu")
        self.torch = torch
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self._upscale = torch_upscale_fn(self.model, str(self.device))
        if self.device.type == "cuda":
            self.clock = cuda_event_clock(torch)

    def upscale(self, x: np.ndarray) -> np.ndarray:
        return self._upscale(x)

    def forward(self, x: np.ndarray) -> Callable[[], object]:
        torch, model = self.torch, self.model
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)  # the copy stays outside the timed region

        def call() -> object:
            with torch.inference_mode():
                return model(t)

        return call

    def memory_mb(self, call: Callable[[], object], device: str) -> tuple[float | None, str]:
        if device != "cuda":
            return super().memory_mb(call, device)
        torch = self.torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MIB, ""

    def close(self) -> None:
        self.model.to("cpu")
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


class BackendRunner(Runner):
    """Any runtime :class:`~bsrn_edge.runtime.backends.base.Backend` (its ``infer`` is the forward pass)."""

    def __init__(self, backend: Any, note: str = ""):
        self.backend, self.note = backend, note

    def upscale(self, x: np.ndarray) -> np.ndarray:
        return self.backend.infer(x)

    def close(self) -> None:
        self.backend.close()


class OrtRunner(BackendRunner):
    """An exported ONNX on :class:`~bsrn_edge.runtime.backends.onnxruntime.OnnxRuntimeBackend` (CPU, or the
    CUDA provider with onnxruntime-gpu)."""

    def __init__(self, onnx_path: Path, device: str, threads: int | None):
        from bsrn_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

        provider = "CUDAExecutionProvider" if device == "cuda" else "cpu"
        # own arenas: with the process-wide shared one, a model measured after another would reuse
        # the arena the first one grew, and its memory column would read near zero
        backend = OnnxRuntimeBackend(onnx_path, device=provider, threads=threads, shared_arena=False)
        used = backend.session.get_providers()[0]
        if device == "cuda" and used != "CUDAExecutionProvider":
            raise InputError(
                f"ONNX Runtime has no CUDA provider here (providers: {', '.join(backend.session.get_providers())}); "
                f"install onnxruntime-gpu (pip install 'bsrn-edge[gpu]') or use --device cpu"
            )
        super().__init__(backend, _COPIES_NOTE if device == "cuda" else "")


class OvRunner(BackendRunner):
    """An exported ONNX (FP32, or INT8 QDQ) on :class:`~bsrn_edge.runtime.backends.openvino.OpenVINOBackend` on the
    CPU, at inference precision ``precision`` (fp32 or bf16)."""

    def __init__(self, onnx_path: Path, precision: str, threads: int | None):
        from bsrn_edge.runtime.backends.openvino import OpenVINOBackend

        super().__init__(OpenVINOBackend(onnx_path, precision=precision, threads=threads))


class TrtRunner(BackendRunner):
    """A TensorRT engine on :class:`~bsrn_edge.runtime.backends.tensorrt.TensorRTBackend`."""

    def __init__(self, engine_path: Path):
        from bsrn_edge.runtime.backends.tensorrt import TensorRTBackend

        super().__init__(TensorRTBackend(engine_path), _COPIES_NOTE)
