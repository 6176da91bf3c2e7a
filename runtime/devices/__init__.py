"""Device buffers and streams behind one small protocol (:class:`~.base.Device`).

``HostDevice`` (numpy; ONNX Runtime on the CPU), ``TorchDevice`` (PyTorch tensors on the CPU or a CUDA
GPU) and ``PycudaDevice`` (pycuda, for TensorRT without PyTorch). Each is imported lazily.
"""

from .base import Device, device_pointer

__all__ = ["Device", "device_pointer"]
