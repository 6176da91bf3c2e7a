"""Lazy import of optional heavy dependencies, failing with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module name -> (pip extra, what it is used for)
_HINTS: dict[str, tuple[str, str]] = {
    "torch": ("export", "loading checkpoints, exporting and the PyTorch backend"),
    "onnx": ("export", "reading and writing ONNX files"),
    "onnxsim": ("export", "simplifying ONNX graphs"),
    "onnxruntime": ("cpu", "the ONNX Runtime backend (use the 'gpu' extra for onnxruntime-gpu)"),
    "tensorrt": ("tensorrt", "building and running TensorRT engines"),
    "openvino": ("openvino", "the OpenVINO backend (CPU with BF16/INT8, Intel GPU and NPU)"),
    "nncf": ("int8", "INT8 quantisation at export (bsrn-export --int8)"),
    "pycuda": ("tensorrt", "CUDA buffers for the TensorRT backend"),
    "safetensors": ("export", "reading .safetensors checkpoints"),
    "PIL": ("cpu", "reading and writing image files (Pillow)"),
    "av": ("video", "reading and writing video files (PyAV, FFmpeg's libraries)"),
    "cv2": ("camera", "camera capture in examples/camera_app.py (OpenCV)"),
    "ray": ("ray", "running bsrn-upscale on a Ray cluster (Ray Data)"),
    "tifffile": ("formats", "reading and writing TIFF files"),
    "imagecodecs": ("formats", "fast 16-bit PNG and compressed TIFF codecs"),
    "spandrel": ("spandrel", "registering bsrn-edge's architectures with spandrel (chaiNNer, ComfyUI)"),
}


def require(name: str) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        extra, purpose = _HINTS.get(top, ("", "this feature"))
        hint = f"pip install 'bsrn-edge[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(
            f"{top} is needed for {purpose} but could not be imported ({exc}). Install it with: {hint}"
        ) from exc


def available(name: str) -> bool:
    """True when ``name`` imports cleanly (never raises)."""
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True
