"""Opening a model: the file or name and the backend, device and precision asked for → one :class:`Backend`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from bsrn_edge._lazy import available
from bsrn_edge.artifacts import parse_artifact, sibling
from bsrn_edge.errors import InputError, MissingDependencyError

from .backends.base import Backend
from .model_info import read_engine_props

__all__ = ["open_backend", "BackendName", "DeviceName", "Precision"]

BackendName = Literal["auto", "onnxruntime", "openvino", "tensorrt", "torch"]
DeviceName = Literal["auto", "cpu", "cuda", "gpu", "npu"]
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
_OV_DEVICE = re.compile(r"(gpu|npu)(\.\d+)?")  # OpenVINO's Intel GPU / NPU names, lower-cased


def _cuda() -> bool:
    if not available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _pick_onnx(path: Path, precision: str, device: str) -> Path:
    """The ONNX to open for ``precision`` and ``device``: a named sibling (``.fp16``, ``.int8``, ``.u8``) when it
    exists beside ``path``; on a GPU the uint8-I/O variant is preferred (pixel work stays in the graph). BF16 is
    an inference precision of the FP32 graph."""
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    name = parse_artifact(path)
    precision = "fp32" if precision == "bf16" else precision
    if precision not in ("auto", name.precision):
        want = sibling(path, precision=precision)
        if not want.is_file():
            flag = {"fp16": " --fp16", "int8": " --int8"}.get(precision, "")
            raise InputError(f"{path}: precision {precision!r} requested but {want.name} is not beside it; "
                             f"export it with bsrn-export{flag}, or pass the file itself")
        path = want
    if device.startswith("cuda") and name.pixels == "float" and sibling(path, pixels="uint8").is_file():
        path = sibling(path, pixels="uint8")
    return path


def _auto_onnx(path: Path, device: str, precision: str, threads: int | None) -> tuple[str, str, str]:
    """``backend="auto"`` for an .onnx → (backend, precision, why): OpenVINO for its devices and for BF16 (INT8 too
    when installed); for an FP32 graph on the CPU, the engine measured fastest here (:mod:`.choose`); else ONNX Runtime."""
    if _OV_DEVICE.fullmatch(device) or precision == "bf16" or (precision == "int8" and available("openvino")):
        return "openvino", precision, ""
    if precision == "auto" and device in ("auto", "cpu") and parse_artifact(path).precision == "fp32" and path.is_file():
        if device == "cpu" or not _ort_cuda():
            from .choose import choose

            return choose(path, threads)
    return "onnxruntime", precision, ""


def _ort_cuda() -> bool:
    """True when ONNX Runtime has its CUDA provider here (then ``device="auto"`` means its GPU, as before)."""
    if not available("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _checked(device: str, precision: str) -> tuple[str, str]:
    device, precision = str(device).lower(), str(precision)
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device) and not _OV_DEVICE.fullmatch(device):
        raise InputError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', or OpenVINO's 'gpu', 'gpu.N', 'npu'; got {device!r}")
    if precision not in ("auto", "fp32", "fp16", "bf16", "int8"):
        raise InputError(f"precision must be 'auto', 'fp32', 'fp16', 'bf16' or 'int8', got {precision!r}")
    return device, precision


def _openvino(path: Path, device: str, precision: str, threads: int | None) -> Backend:
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: the openvino backend needs an .onnx file (export one with bsrn-export)")
    if device.startswith("cuda"):
        raise InputError(f"{path}: OpenVINO drives Intel GPUs and NPUs ('gpu', 'npu'), not CUDA; use 'cpu' or 'gpu'")
    from .backends.openvino import OpenVINOBackend

    ov_device = "CPU" if device in ("auto", "cpu") else device.upper()
    hint = "bf16" if precision == "bf16" else "fp16" if ov_device != "CPU" and precision in ("auto", "fp16") else "fp32"
    return OpenVINOBackend(_pick_onnx(path, precision, device), device=ov_device, precision=hint, threads=threads)


def _tensorrt(path: Path, device: str, precision: str) -> Backend:
    if path.suffix.lower() != ".engine":
        raise InputError(f"{path}: the tensorrt backend needs an .engine file (bsrn-export --onnx FILE --engine)")
    if device == "cpu":
        raise InputError(f"{path}: TensorRT engines run on a CUDA GPU only; use the .onnx on the CPU")
    if device.startswith("cuda:") and device != "cuda:0":
        raise InputError(f"{path}: this runtime opens TensorRT engines on the first visible GPU; to use "
                         f"{device}, run with CUDA_VISIBLE_DEVICES={device[5:]} and device 'cuda'")
    built = read_engine_props(path).get("bsrn_edge.precision", "fp32")
    if precision not in ("auto", built):  # an engine has one precision, fixed when it was built
        raise InputError(f"{path}: a {built} engine, but {precision} was asked for; build a {precision} engine with "
                         f"bsrn-export --onnx <the {precision} .onnx> --engine, or pass that engine")
    from .backends.tensorrt import TensorRTBackend

    return TensorRTBackend(path)


def open_backend(model: str | Path, backend: BackendName = "auto", device: DeviceName | str = "auto",
                 precision: Precision | str = "auto", threads: int | None = None) -> Backend:
    """Open ``model`` (.onnx, .engine, checkpoint file or bundled name) with the requested backend.

    ``device``: ``"cpu"``, ``"cuda"`` / ``"cuda:N"``, OpenVINO's ``"gpu"`` / ``"gpu.N"`` / ``"npu"``, or ``"auto"``
    (a CUDA GPU where the backend can use one). ``precision``: ``"fp32"``, ``"fp16"``, ``"bf16"`` (OpenVINO on a CPU
    with native BF16), ``"int8"`` (the ``.int8.onnx`` sibling) or ``"auto"`` (an artifact's own; PyTorch: fp16 on a
    GPU, fp32 on the CPU). ``backend="auto"`` on an FP32 ``.onnx`` on the CPU runs what :mod:`~.choose` measured
    fastest here within the model's accuracy budget, and the backend's ``choice`` says what and why. ``threads``:
    the CPU threads of ONNX Runtime and OpenVINO (default: the physical cores); other backends ignore it.
    """
    device, precision = _checked(str(device), str(precision))
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".engine") and path.is_dir():
        raise InputError(f"{model}: is a folder; expected an {suffix} file")
    if backend == "auto" and suffix == ".onnx":
        name, precision, why = _auto_onnx(path, device, precision, threads)
        opened = open_backend(path, name, device, precision, threads)  # type: ignore[arg-type]
        if why:
            setattr(opened, "choice", why)  # noqa: B010 - shown by bsrn-upscale's header
        return opened
    if backend == "auto":
        backend = "tensorrt" if suffix == ".engine" else "torch"
    if _OV_DEVICE.fullmatch(device) and backend != "openvino":
        raise InputError(f"device {device!r} is an OpenVINO device; use backend 'openvino' (--backend openvino)")
    if precision in ("bf16", "int8") and backend not in ("openvino", "onnxruntime"):
        raise InputError(f"precision {precision!r} runs on the openvino backend (int8 also on onnxruntime) with an .onnx")
    if backend == "openvino":
        return _openvino(path, device, precision, threads)
    if backend == "onnxruntime":
        if suffix != ".onnx" or precision == "bf16":
            raise InputError(f"{model}: the onnxruntime backend needs an .onnx file (export one with bsrn-export)"
                             if suffix != ".onnx" else f"{model}: BF16 runs on the openvino backend (pip install 'bsrn-edge[openvino]')")
        from .backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(_pick_onnx(path, precision, device), device=device, threads=threads)
    if backend == "tensorrt":
        return _tensorrt(path, device, precision)
    if backend == "torch":
        if not available("torch"):
            raise MissingDependencyError(
                f"{model}: checkpoints and bundled names need the optional PyTorch backend "
                f"(pip install 'bsrn-edge[export]'), or export an .onnx first with bsrn-export"
            )
        from .backends.torch import TorchBackend

        dev = str(device) if device != "auto" else ("cuda" if _cuda() else "cpu")
        prec = precision if precision != "auto" else ("fp16" if dev.startswith("cuda") else "fp32")
        return TorchBackend(str(model), device=dev, precision=prec, mode="graph" if dev.startswith("cuda") else "eager")
    raise InputError(f"unknown backend {backend!r}; choose auto, onnxruntime, openvino, tensorrt or torch")
