"""Opening a model: the file or name and the backend, device and precision asked for → one :class:`Backend`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from bsrn_edge._lazy import available
from bsrn_edge.artifacts import parse_artifact, sibling
from bsrn_edge.errors import InputError

from .backends.base import Backend

__all__ = ["open_backend", "BackendName", "DeviceName", "Precision"]

BackendName = Literal["auto", "onnxruntime", "tensorrt", "torch"]
DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16"]


def _cuda() -> bool:
    if not available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _pick_onnx(path: Path, precision: str, device: str) -> Path:
    """The ONNX to open for ``precision`` and ``device``: a named sibling (``.fp16``, ``.u8``) when it
    exists beside ``path``; on a GPU the uint8-I/O variant is preferred (pixel work stays in the graph)."""
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    name = parse_artifact(path)
    if precision not in ("auto", name.precision):
        want = sibling(path, precision=precision)
        if not want.is_file():
            raise InputError(f"{path}: precision {precision!r} requested but {want.name} is not beside it; "
                             f"export it with bsrn-export{' --fp16' if precision == 'fp16' else ''}, or pass the file itself")
        path = want
    if device.startswith("cuda") and name.pixels == "float" and sibling(path, pixels="uint8").is_file():
        path = sibling(path, pixels="uint8")
    return path


def open_backend(model: str | Path, backend: BackendName = "auto", device: DeviceName | str = "auto",
                 precision: Precision | str = "auto", threads: int | None = None) -> Backend:
    """Open ``model`` (.onnx, .engine, checkpoint file or bundled name) with the requested backend.

    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (a GPU where the backend can use one). ``precision``:
    ``"fp32"``, ``"fp16"`` or ``"auto"`` (an artifact's own; PyTorch: fp16 on a GPU, fp32 on the CPU).
    ``threads``: ONNX Runtime's CPU threads (default: the physical cores); other backends ignore it.
    """
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if precision not in ("auto", "fp32", "fp16"):
        raise InputError(f"precision must be 'auto', 'fp32' or 'fp16', got {precision!r}")
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".engine") and path.is_dir():
        raise InputError(f"{model}: is a folder; expected an {suffix} file")
    if backend == "auto":
        backend = "onnxruntime" if suffix == ".onnx" else "tensorrt" if suffix == ".engine" else "torch"
    if backend == "onnxruntime":
        if suffix != ".onnx":
            raise InputError(f"{model}: the onnxruntime backend needs an .onnx file (export one with bsrn-export)")
        from .backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(_pick_onnx(path, precision, str(device)), device=str(device), threads=threads)
    if backend == "tensorrt":
        if suffix != ".engine":
            raise InputError(f"{model}: the tensorrt backend needs an .engine file (bsrn-export --onnx FILE --engine)")
        if device == "cpu":
            raise InputError(f"{model}: TensorRT engines run on a CUDA GPU only; use the .onnx on the CPU")
        if str(device).startswith("cuda:") and str(device) != "cuda:0":
            raise InputError(f"{model}: this runtime opens TensorRT engines on the first visible GPU; to use "
                             f"{device}, run with CUDA_VISIBLE_DEVICES={str(device)[5:]} and device 'cuda'")
        from .backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    if backend == "torch":
        if not available("torch"):
            raise InputError(
                f"{model}: checkpoints and bundled names need the optional PyTorch backend "
                f"(pip install 'bsrn-edge[export]'), or export an .onnx first with bsrn-export"
            )
        from .backends.torch import TorchBackend

        dev = str(device) if device != "auto" else ("cuda" if _cuda() else "cpu")
        prec = precision if precision != "auto" else ("fp16" if dev.startswith("cuda") else "fp32")
        return TorchBackend(str(model), device=dev, precision=prec, mode="graph" if dev.startswith("cuda") else "eager")
    raise InputError(f"unknown backend {backend!r}; choose auto, onnxruntime, tensorrt or torch")
