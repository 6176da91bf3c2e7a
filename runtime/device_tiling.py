"""Large images on a GPU with PyTorch: tiles cut from a device-resident image and blended on the device.

The input image is uploaded once in its own dtype (uint8: a quarter of float32); tiles are read,
normalised, run and blended by :func:`~bsrn_edge.runtime.bands.banded_apply` with PyTorch array ops,
and each finished block of rows comes down once, already converted to the caller's dtype for RGB
(uint8 / uint16); grey and float outputs come down as float and are converted by the host writer.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bsrn_edge.pixels import DTYPES, row_writer

from .backends.base import nonfinite_error
from .bands import banded_apply
from .tiling import TilePlan

if TYPE_CHECKING:
    from .tile_policy import TilePolicy

__all__ = ["TorchOps", "DeviceTiler", "is_out_of_memory"]

log = logging.getLogger(__name__)


class TorchOps:
    """:class:`~bsrn_edge.runtime.bands.ArrayOps` on PyTorch tensors of one device (float32 band)."""

    def __init__(self, torch: Any, device: Any):
        self.torch, self.dev = torch, device

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self.torch.float32, device=self.dev)

    def stack(self, arrays: list[Any]) -> Any:
        return self.torch.stack(arrays)

    def weights(self, w: np.ndarray) -> Any:
        return self.torch.from_numpy(w).to(self.dev, non_blocking=True)

    def hwc(self, chw: Any) -> Any:
        return chw.permute(1, 2, 0)

    def shift(self, band: Any, start: int, count: int) -> None:
        band[:, :count] = band[:, start:start + count].clone()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error from PyTorch (or a backend that reports one)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class DeviceTiler:
    """Runs a :class:`TilePlan` over one image plane on the device, blending with PyTorch.

    With the PyTorch backend the network runs on float tiles (``forward_tensor``). With any other
    :class:`~bsrn_edge.runtime.backends.base.DeviceBackend` (ONNX Runtime CUDA, TensorRT with a uint8-I/O
    model) tiles go through ``run_device`` as uint8 and come back as uint8, converted to float on the
    device for blending (PyTorch must be installed for the blending; without it the host stitcher runs).
    """

    def __init__(self, backend: Any, nonfinite: Callable[[tuple[int, ...]], Exception] | None = None):
        from bsrn_edge._lazy import require

        self.backend = backend
        self.torch = torch = require("torch")
        self.tensor_net = hasattr(backend, "forward_tensor")
        if self.tensor_net:
            self.dev = backend.dev
        else:
            dev = backend.device
            self.dev = torch.device("cuda", dev.index) if dev.kind == "cuda" else torch.device("cpu")
        self.ops = TorchOps(torch, self.dev)
        # the error to raise when a batch's output holds NaN or inf (given the batch's input shape)
        self.nonfinite = nonfinite or (lambda shape: nonfinite_error(backend.name, shape))
        self._local = threading.local()  # run_device's stream, one per thread (a backend keys its flag on it)

    def _reader(self, img: Any, plane: str, peak: float, is_float: bool) -> Callable[[int, int, int, int], Any]:
        torch = self.torch

        def read(y0: int, y1: int, x0: int, x1: int) -> Any:
            w = img[y0:y1, x0:x1]
            if w.ndim == 2:
                w = w[..., None]
            w = w[..., 3:4] if plane == "alpha" else w[..., :3]
            f = w.to(torch.float32).div_(peak)
            if is_float:
                f.clamp_(0.0, 1.0)
            return f.expand(-1, -1, 3).permute(2, 0, 1) if f.shape[2] == 1 else f.permute(2, 0, 1)

        return read

    def _tensor_infer(self, x: Any) -> Any:
        torch, backend = self.torch, self.backend
        with backend._lock, backend.device_stream(None), torch.inference_mode():
            y = backend.forward_tensor(x).float().clone()
        if not bool(y.isfinite().all()):
            raise self.nonfinite(tuple(x.shape))
        return y

    def _pixel_infer(self, x: Any) -> Any:
        """Float N×3×h×w tiles → uint8 through ``run_device`` → float N×3×sh×sw, all on the device."""
        torch, backend = self.torch, self.backend
        n, _, h, w = x.shape
        s = backend.meta.scale
        u8 = x.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        out = torch.empty((n, h * s, w * s, 3), dtype=torch.uint8, device=self.dev)
        dev = backend.device
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = dev.stream()
        if self.dev.type == "cuda":
            torch.cuda.current_stream(self.dev).synchronize()  # the tiles are cut on PyTorch's stream
        finite = backend.run_device(u8, out, stream)
        dev.wait(dev.record(stream))
        if finite is not None and not bool(finite):
            raise self.nonfinite(tuple(x.shape))
        return out.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)

    def _writer(self, out: np.ndarray, plane: str, crop: tuple[int, int]) -> Callable[[int, int, Any], None]:
        torch = self.torch
        fast = out.dtype in (np.uint8, np.uint16) and out.ndim == 3 and out.shape[2] in (3, 4) and plane == "rgb"
        if not fast:
            host = row_writer(out, plane, crop)
            return lambda y0, y1, block: host(y0, y1, block.float().cpu().numpy())
        peak = float(DTYPES[out.dtype])
        h, w = crop
        tdtype = torch.uint8 if out.dtype == np.uint8 else torch.int32

        def write(y0: int, y1: int, block: Any) -> None:
            y1c = min(y1, h)
            if y1c <= y0:
                return
            # converted and made row-major on the device, so the host does one plain copy (a strided
            # numpy assignment of a 16000×12000 block took 1.0 s on an H200's host, the copy 0.05 s)
            q = block[: y1c - y0, :w].mul(peak).round_().clamp_(0.0, peak).to(tdtype).contiguous()
            dst = out[y0:y1c, :, :3]
            if tdtype == torch.uint8:
                torch.from_numpy(dst).copy_(q)  # straight from the device into the caller's array
            else:
                dst[...] = q.cpu().numpy()

        return write

    def run(self, a: np.ndarray, plane: str, out: np.ndarray, plan: TilePlan, crop: tuple[int, int], batch: int,
            out_plane: str | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        """Upscale plane ``plane`` of the H×W[×C] image ``a`` into plane ``out_plane`` (default: the same) of
        ``out``; rows and columns beyond ``crop`` are dropped. ``progress(done, total)`` hears of the tiles."""
        torch = self.torch
        src = np.require(a if a.dtype != np.uint16 else a.astype(np.int32), requirements=["C", "W"])  # no uint16 in torch
        img = torch.from_numpy(src).to(self.dev)
        read = self._reader(img, plane, float(DTYPES[a.dtype]), a.dtype == np.float32)
        infer = self._tensor_infer if self.tensor_net else self._pixel_infer
        banded_apply(infer, read, plan, self._writer(out, out_plane or plane, crop), batch=batch, ops=self.ops,
                     progress=progress)

    def run_planned(self, a: np.ndarray, plane: str, out: np.ndarray, out_plane: str, crop: tuple[int, int],
                    tile: int | None, policy: TilePolicy, progress: Callable[[int, int], None] | None = None) -> None:
        """:meth:`run` with ``policy``'s plan for ``tile``; out of GPU memory, once more with half the tile."""
        ph, pw = a.shape[:2]
        try:
            self.run(a, plane, out, policy.plan(ph, pw, tile), crop, policy.batch, out_plane, progress=progress)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(exc):
                raise
            smaller = policy.smaller(tile, ph, pw)
            log.warning("%s: out of GPU memory with %s; retrying once with %d-pixel tiles", policy.meta.variant,
                        f"{tile}-pixel tiles" if tile else "the whole image", smaller)
            self.torch.cuda.empty_cache()
            self.run(a, plane, out, policy.plan(ph, pw, smaller), crop, policy.batch, out_plane, progress=progress)
