"""ONNX Runtime backend: the embedded default (CPU), with CUDA/TensorRT providers when onnxruntime-gpu is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bsrn_edge.errors import InputError, MissingDependencyError
from bsrn_edge.hostinfo import physical_cores  # re-exported: the one /proc/cpuinfo reader
from bsrn_edge.meta import NONFINITE_OUTPUT, ModelMeta

from ..devices.base import device_pointer
from ..model_info import read_onnx_props
from .base import FiniteFlag, check_batch, check_pixels, raise_if_nonfinite
from .ort_providers import GPU_PROVIDERS, TRT_MAX_BATCH, TRT_MAX_SIDE, open_session, provider_options, providers_for
from .ort_sessions import ShapeSessions, session_options

__all__ = ["OnnxRuntimeBackend", "physical_cores", "session_options", "provider_options"]


def both_runtimes_installed() -> bool:
    """True when onnxruntime and onnxruntime-gpu are both installed (they overwrite each other's files)."""
    from importlib import metadata

    names = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            names.add(dist)
        except metadata.PackageNotFoundError:
            pass
    return len(names) == 2


class OnnxRuntimeBackend:
    """Runs an ONNX written by bsrn-export. ``InferenceSession.run`` is thread-safe.

    On the CPU, each input shape (batch, height, width) gets its own session with those dimensions
    fixed, up to ``shape_sessions`` of them (:class:`~.ort_sessions.ShapeSessions`).
    ``shape_sessions=0`` runs every shape through the one dynamic-shape session.

    All sessions draw on one CPU memory arena shared by the process (``_register_shared_cpu_arena``), so
    caching several shapes does not multiply the activation memory; ``shared_arena=False`` gives this
    backend's sessions arenas of their own (bsrn-bench does, to measure each model's memory alone).
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 shape_sessions: int = 4, shared_arena: bool = True):
        if both_runtimes_installed():
            logging.getLogger(__name__).warning(
                "both onnxruntime and onnxruntime-gpu are installed and shadow each other; keep one: "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'bsrn-edge[gpu]' (or [cpu])")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file")
        self.session = self._open(device, threads, shared_arena)
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = ModelMeta.from_props(props, str(self.path))
        used = self.session.get_providers()
        self._on_gpu = used[0] in GPU_PROVIDERS
        provider = used[0].replace("ExecutionProvider", "")
        self.name = (f"onnxruntime-{provider.lower()}" + ("-fp16" if self.meta.precision == "fp16" else "")
                     + ("-u8" if self.meta.pixels == "uint8" else ""))
        inp = self.session.get_inputs()[0]
        self._in_name, self._out_name = inp.name, self.session.get_outputs()[0].name
        outs = {o.name for o in self.session.get_outputs()}
        self._flag = NONFINITE_OUTPUT if NONFINITE_OUTPUT in outs else None  # uint8 graphs since 0.3
        self._half_io = inp.type == "tensor(float16)"
        if not self._on_gpu:  # the CPU serves: a host device for a uint8 model, else the host path alone
            self.device, self._stream = (self._device_for("CPUExecutionProvider") if self.meta.pixels == "uint8" else None), None
        elif self.meta.pixels != "uint8":  # a float model on a GPU: the host path (the device path takes uint8 pixels)
            self.device = None
        trt = "TensorrtExecutionProvider" in used  # its engine profile bounds the tiles and the batch
        self.tile_limits = (self.meta.min_size, TRT_MAX_SIDE if trt else 0)
        self.max_batch = TRT_MAX_BATCH if trt else 0
        # symbolic input dimensions by axis, e.g. {0: "batch", 2: "height", 3: "width"}
        free_dims = {i: d for i, d in enumerate(inp.shape) if isinstance(d, str) and d}
        shaped = shape_sessions > 0 and not self._on_gpu and free_dims
        self._shaped = ShapeSessions(self.path, free_dims, shape_sessions, threads, shared_arena) if shaped else None

    def _open(self, device: str, threads: int | None, shared_arena: bool) -> Any:
        """The session, with the GPU providers' options (a stream of this backend's device to run on)."""
        providers = providers_for(device)
        gpu = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
        self.device = self._device_for(providers[0], gpu)
        self._stream = self.device.stream() if self.device is not None else None
        handle = self.device.stream_handle(self._stream) if self.device is not None else 0
        meta = ModelMeta.from_props(read_onnx_props(self.path), str(self.path)) if providers[0] in GPU_PROVIDERS else None
        options = provider_options(providers, self.path, meta, handle, gpu) if meta is not None else [{}] * len(providers)
        try:
            return open_session(self.path, session_options(threads, shared_arena=shared_arena), providers, options,
                                gpu_required=device != "auto")
        except MissingDependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InputError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc

    @staticmethod
    def _device_for(provider: str, gpu: int = 0):  # type: ignore[no-untyped-def]
        """Host buffers on the CPU; on a GPU provider, PyTorch's device helper when torch is installed, else pycuda's
        (None when neither is: then only the host path runs). ``gpu``: the CUDA device index."""
        from bsrn_edge._lazy import available

        if provider not in GPU_PROVIDERS:
            from ..devices.host import HostDevice

            return HostDevice()
        if available("torch"):
            from ..devices.torch import TorchDevice

            return TorchDevice(f"cuda:{gpu}")
        if gpu:
            raise InputError(f"GPU {gpu} without PyTorch: pycuda's device helper drives GPU 0 only; "
                             f"run with CUDA_VISIBLE_DEVICES={gpu} and device 'cuda' instead")
        if available("pycuda.driver"):
            from ..devices.pycuda import PycudaDevice

            return PycudaDevice()
        return None

    def _session_for(self, shape: tuple[int, ...]) -> Any:
        """The session specialised to ``shape``, or the dynamic one."""
        if self.session is None:
            raise InputError(f"{self.path}: this ONNX Runtime backend was closed; open the model again (or a new Upscaler)")
        return self._shaped.get(shape) if self._shaped is not None else self.session

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Host arrays in the model's pixel I/O (float N×3×h×w, or uint8 N×h×w×3 for a uint8-I/O model)."""
        x = check_batch(x, self)
        feed = x.astype(np.float16) if self._half_io else x
        names = [self._out_name] + ([self._flag] if self._flag else [])
        res = self._session_for(x.shape).run(names, {self._in_name: feed})
        if self._flag:
            self._check_flag(res[1], x.shape)
        y = res[0]
        return y if y.dtype in (np.float32, np.uint8) else y.astype(np.float32)

    def _check_flag(self, flag: np.ndarray, shape: tuple[int, ...]) -> None:
        raise_if_nonfinite(flag, self.path, shape)

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the result into ``out`` (the model's output layout and dtype) without allocating the output."""
        want = np.uint8 if self.meta.pixels == "uint8" else np.float32
        if self._half_io or self._on_gpu or not out.flags.c_contiguous or out.dtype != want:
            out[...] = self.infer(x)  # ORT writes whole C-contiguous buffers of the output's own dtype only
            return
        x = check_batch(x, self)
        session = self._session_for(x.shape)
        binding = session.io_binding()
        binding.bind_cpu_input(self._in_name, x)
        binding.bind_output(self._out_name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        flag = self._bind_flag(binding)
        session.run_with_iobinding(binding)
        if flag is not None:
            self._check_flag(flag, x.shape)

    def _bind_flag(self, binding: Any) -> np.ndarray | None:
        """Bind the non-finite flag (when the graph has one) to a small host array; ORT fills it after the run."""
        if not self._flag:
            return None
        flag = np.zeros((1, 1, 1, 1), np.float32)
        binding.bind_output(self._flag, "cpu", 0, np.float32, [1, 1, 1, 1], flag.ctypes.data)
        return flag

    def run_device(self, x: Any, out: Any, stream: Any) -> Any:
        """uint8 pixels already on this backend's device → uint8 pixels, through IOBinding (no host copy).

        Needs a uint8-I/O model (``bsrn-export --uint8-io``). The session runs on its own compute stream,
        ordered after ``stream`` and before what follows on it. Returns a :class:`~.base.FiniteFlag`, true when the
        network's output was finite (readable once ``stream``'s work has completed), or None for a graph without the flag.
        """
        if self.device is None or self.meta.pixels != "uint8":
            raise InputError(f"{self.path}: the device path needs the uint8-I/O model (bsrn-export --uint8-io), "
                             f"on {'a GPU provider' if self.device is None else 'this provider'}")
        check_pixels(tuple(x.shape), tuple(out.shape), self)
        kind = "cuda" if self._on_gpu else "cpu"
        dev = self.device
        session = self._session_for(tuple(x.shape))  # the dynamic session on a GPU
        binding = session.io_binding()
        binding.bind_input(self._in_name, kind, dev.index, np.uint8, list(x.shape), device_pointer(x))
        binding.bind_output(self._out_name, kind, dev.index, np.uint8, list(out.shape), device_pointer(out))
        flag = self._bind_flag(binding)
        dev.join(self._stream, stream)
        session.run_with_iobinding(binding)
        dev.join(stream, self._stream)
        return None if flag is None else FiniteFlag(flag)

    def close(self) -> None:
        if self._shaped is not None:
            self._shaped.clear()
        self.session = None
