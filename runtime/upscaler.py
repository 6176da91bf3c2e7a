"""``Upscaler``: images and camera frames in, upscaled images out, on any backend, without PyTorch.

The Upscaler is the façade over small units, one job each: :func:`~.open.open_backend` (which backend),
:class:`~.tile_policy.TilePolicy` (memory budget → whole or tiles), :class:`~.backends.fallback.FallbackBackend`
(FP16 → FP32 on a non-finite output), :class:`~.frames.FramePipeline` and :class:`~.device_tiling.DeviceTiler`
(the device path and its out-of-memory retry), :func:`~.bands.banded_apply` (the host stitcher). What is left
here is the image layout: alpha, grey, 16-bit and BGR in and out.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import numpy as np

from bsrn_edge._lazy import available
from bsrn_edge.artifacts import sibling
from bsrn_edge.errors import InputError, NonFiniteOutputError
from bsrn_edge.pixels import check_image, pad_to_min, row_writer, to_nchw, to_pixels, window_reader

from .backends.base import Backend, DeviceBackend, pixel_layout
from .backends.fallback import FallbackBackend
from .bands import banded_apply
from .frames import FramePipeline, check_frame, device_of
from .open import BackendName, DeviceName, Precision, open_backend
from .tile_policy import TilePolicy

__all__ = ["Upscaler", "open_backend", "BackendName", "ChannelOrder", "NonFiniteOutputError", "Progress"]

log = logging.getLogger(__name__)

ChannelOrder = Literal["rgb", "bgr"]
#: ``progress(done, total)``: tiles run so far of an image's total, called as each batch of tiles finishes
Progress = Callable[[int, int], None]


class Upscaler:
    """Upscale images with a BSRN model on ONNX Runtime, OpenVINO, TensorRT or PyTorch.

    ``backend="auto"`` (the default) runs an ``.onnx`` on the CPU engine measured fastest for it here
    (ONNX Runtime FP32 unless OpenVINO is installed and clearly faster: :mod:`~bsrn_edge.runtime.choose`), an
    ``.engine`` on TensorRT and a checkpoint on PyTorch. ``device`` / ``precision`` choose where and how any
    backend kind runs (see :func:`open_backend`). On a GPU, frames stay on the device from the uint8 upload to
    the uint8 download (:class:`~bsrn_edge.runtime.frames.FramePipeline`), and large images are tiled and
    blended on the device when PyTorch is installed (any GPU backend with a uint8-I/O model, or PyTorch itself).

    ``tile``: ``"auto"`` runs whole images whose activations fit the memory budget (``memory_mb`` on the
    host; half the GPU's free memory on a GPU) and tiles the rest with the model's recommended tile
    (smaller when the budget or an engine's profile requires); an int forces that LR tile side; 0 or
    ``None`` never tiles. ``overlap`` is in LR pixels. Tiles of equal size go ``batch`` at a time. ``slots``:
    frames in flight in :meth:`stream` on a device path. ``threads``: see :func:`open_backend`.

    ``model`` is a file or bundled name, or an already open :class:`Backend`.

    Pixels are RGB (RGBA, grey) in and out, as Pillow and imageio give them. ``channel_order="bgr"``
    takes and returns BGR(A) instead, the order of OpenCV's ``cv2.imread`` and ``VideoCapture``; without
    it a BGR array comes out with red and blue swapped (nothing in the pixels can tell the two apart).

    A network output with NaN or infinity is never returned as an image: an FP16 model falls back to
    the FP32 artifact beside it when there is one (with a warning), otherwise
    :class:`NonFiniteOutputError` names the model and the input size.

    The object keeps no per-call state: one instance can serve several threads at once.
    """

    def __init__(self, model: str | Path | Backend, backend: BackendName = "auto", *, tile: int | Literal["auto"] | None = "auto",
                 overlap: int | None = None, batch: int = 1, memory_mb: int = 768, device: DeviceName | str = "auto",
                 precision: Precision | str = "auto", slots: int = 3, threads: int | None = None,
                 channel_order: ChannelOrder = "rgb"):
        if channel_order not in ("rgb", "bgr"):
            raise InputError(f"channel_order must be 'rgb' or 'bgr' (OpenCV's order), got {channel_order!r}")
        self.channel_order = channel_order
        self.backend: Backend = model if isinstance(model, Backend) else open_backend(model, backend, device, precision, threads)
        self.meta = self.backend.meta
        self.scale = self.meta.scale
        self.sizes = self.meta.sizes
        self._pixels = pixel_layout(self.meta)
        self._device = device_of(self.backend)
        on_gpu = self._device is not None and self._device.kind == "cuda"
        self.policy = TilePolicy(self.meta, self.backend.tile_limits, tile=tile, overlap=overlap, batch=batch,
                                 max_batch=self.backend.max_batch, memory_mb=memory_mb,
                                 half_on_gpu=on_gpu and self.meta.precision == "fp16",
                                 free_memory=self._device.free_memory if on_gpu else None, backend_name=self.backend.name)
        self._net = FallbackBackend(self.backend, self._find_fallback(model),
                                    lambda path: open_backend(path, "onnxruntime", "cpu"))
        self._frames = (FramePipeline(self.backend, slots, model=self.meta.variant, fallback=self._net.recover_frame)
                        if self._device is not None and isinstance(self.backend, DeviceBackend) else None)
        self._tiler = None
        if on_gpu and (hasattr(self.backend, "forward_tensor") or available("torch")):
            from .device_tiling import DeviceTiler

            self._tiler = DeviceTiler(self.backend, nonfinite=self._net.nonfinite)
        self._local = threading.local()
        log.info("bsrn-edge: %s on %s", self.meta.variant, self.backend.name)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def tile(self) -> int | Literal["auto"] | None:
        return self.policy.tile

    @property
    def overlap(self) -> int:
        return self.policy.overlap

    @property
    def batch(self) -> int:
        return self.policy.batch

    @property
    def memory_mb(self) -> int:
        return self.policy.memory_mb

    def _find_fallback(self, model: object) -> Path | None:
        """The FP32 float .onnx beside an FP16 .onnx, when there is one."""
        if self.meta.precision != "fp16" or not isinstance(model, (str, Path)) or Path(model).suffix != ".onnx":
            return None
        path = getattr(self.backend, "path", Path(model))
        fp32 = sibling(path, precision="fp32", pixels="float")
        return fp32 if fp32.is_file() else None

    def _float_infer(self, x: np.ndarray) -> np.ndarray:
        """Float N×3×h×w in [0, 1] → float N×3×sh×sw, whatever the model's pixel I/O; never non-finite."""
        if self._pixels == "uint8":
            return to_nchw(self._net.infer(to_pixels(x)))  # uint8 N×sh×sw×3 → float
        return self._net.infer(x)

    def tile_for(self, height: int, width: int) -> int | None:
        """The LR tile side used for an image of this size (None: the whole image in one run); see
        :class:`~.tile_policy.TilePolicy`."""
        return self.policy.tile_for(height, width)

    # -- images --------------------------------------------------------------------------------
    def upscale(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Upscale one image; returns the same layout and dtype at ×scale.

        Large images are tiled and streamed into the output row band by row band, so memory beyond
        the input and output arrays is bounded by the tile (see ``memory_mb``). ``progress(done, total)``
        is called as tiles finish (an image with alpha counts the alpha plane's tiles too).
        """
        a = check_image(image)
        h, w = a.shape[:2]
        out = np.empty((h * self.scale, w * self.scale, *a.shape[2:]), a.dtype)
        planes = ["rgb", "alpha"] if a.ndim == 3 and a.shape[2] == 4 else ["rgb"]
        rgb = self._as_rgb(a)
        for k, plane in enumerate(planes):
            self._run_plane(rgb, plane, out, _plane_progress(progress, k, len(planes)))
        if self.channel_order == "bgr" and out.ndim == 3:
            out[..., :3] = out[..., 2::-1]  # back to the caller's order (numpy copies the overlapping source)
        return out

    def _as_rgb(self, a: np.ndarray) -> np.ndarray:
        """``a`` in RGB(A) order: a free view for channel_order="rgb", reordered for "bgr"."""
        if self.channel_order == "rgb" or a.ndim != 3 or a.shape[2] < 3:
            return a
        return a[..., ::-1] if a.shape[2] == 3 else a[..., [2, 1, 0, 3]]

    def _run_plane(self, a: np.ndarray, plane: str, out: np.ndarray, progress: Progress | None = None) -> None:
        h, w = a.shape[:2]
        lo = self.backend.tile_limits[0]
        crop = (h * self.scale, w * self.scale)
        if h < lo or w < lo:  # tiny images: mirror-pad (a small copy), crop on write
            rgb = window_reader(a, plane)(0, h, 0, w).transpose(1, 2, 0)
            src = np.ascontiguousarray(pad_to_min(rgb, lo)[0])
            plane_src = "rgb"
        else:
            src, plane_src = a, plane
        ph, pw = src.shape[:2]
        tile = self.policy.tile_for(ph, pw)
        if self._tiler is not None:
            try:
                self._tiler.run_planned(src, plane_src, out, plane, crop, tile, self.policy, progress)
                return
            except NonFiniteOutputError:
                if self._net.fp32_path is None:
                    raise
                log.warning("%s: a tile was not finite on %s; this plane again on the host path, which falls back "
                            "to %s", self.meta.variant, self.backend.name, self._net.fp32_path.name)
        banded_apply(self._float_infer, window_reader(src, plane_src), self.policy.plan(ph, pw, tile),
                     row_writer(out, plane, crop), batch=self.policy.batch, progress=progress)

    # -- camera frames -------------------------------------------------------------------------
    def _frame_buffers(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        st = self._local
        if getattr(st, "shape", None) != shape:
            h, w = shape[:2]
            st.x = np.empty((1, 3, h, w), np.float32)
            st.y = np.empty((1, 3, h * self.scale, w * self.scale), np.float32)
            st.shape = shape
        return st.x, st.y

    def _check_frame(self, frame: np.ndarray, out: np.ndarray | None) -> tuple[int, int, int]:
        check_frame(frame)
        want = (frame.shape[0] * self.scale, frame.shape[1] * self.scale, 3)
        if out is not None and (out.shape != want or out.dtype != np.uint8):
            raise InputError(f"out must be a {want} uint8 array, got {out.shape} {out.dtype}")
        return want

    def upscale_into(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Upscale an H×W×3 uint8 frame into ``out`` (sH×sW×3 uint8), reusing this thread's buffers.

        Frames at least the model's minimum and within the memory budget run whole with no per-frame
        allocation (on a device path: uint8 up, uint8 down, no float work on the host); larger frames
        fall back to tiling.
        """
        want = self._check_frame(frame, out)
        h, w = frame.shape[:2]
        if not self.policy.whole(h, w):
            out[...] = self.upscale(frame)
            return out
        src, dst = self._as_rgb(frame), self._as_rgb(out)  # views: BGR costs no extra pass
        if self._frames is not None:
            self._frames.run(src, dst)
            return out
        if self._pixels == "uint8":  # a uint8-I/O model without a device path: its pixels straight in and out
            self._net.infer_into(src[None], dst[None])
            return out
        x, y = self._frame_buffers(frame.shape)
        to_nchw(src, out=x)
        self._net.infer_into(x, y)
        row_writer(dst, "rgb", want[:2])(0, want[0], y[0].transpose(1, 2, 0))
        return out

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Upscale a sequence of equal-size H×W×3 uint8 frames, in order.

        On a device path up to ``slots`` frames are in flight (upload, network and download overlap).
        Each yielded array is a reused output buffer: it stays valid until you ask for the next frame;
        copy it to keep it.
        """
        it = iter(frames)
        first = next(it, None)
        if first is None:
            return
        self._check_frame(first, None)

        def chained() -> Iterator[np.ndarray]:
            yield first
            yield from it

        if self._frames is not None and self.policy.whole(*first.shape[:2]):
            if self.channel_order == "rgb":
                yield from self._frames.stream(self._whole_frames(chained()))
                return
            bgr: np.ndarray | None = None  # one reused buffer, contiguous so OpenCV can draw on it
            for rgb in self._frames.stream(self._as_rgb(f) for f in self._whole_frames(chained())):
                if bgr is None or bgr.shape != rgb.shape:
                    bgr = np.empty_like(rgb)
                np.copyto(bgr, rgb[..., ::-1])
                yield bgr
            return
        out: np.ndarray | None = None
        for frame in chained():
            want = self._check_frame(frame, None)
            if out is None or out.shape != want:
                out = np.empty(want, np.uint8)
            yield self.upscale_into(frame, out)

    def _whole_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames``, each checked to run whole on the device path (a later frame of another size may not)."""
        for frame in frames:
            check_frame(frame)
            if not self.policy.whole(*frame.shape[:2]):
                raise InputError(f"stream(): a {frame.shape[1]}×{frame.shape[0]} frame is too large to run whole here "
                                 f"({self.backend.name}, memory budget or engine profile); upscale() tiles it")
            yield frame

    def close(self) -> None:
        """Free the backend's sessions, contexts and buffers (and the FP32 fallback's); ``with Upscaler(...)`` calls it."""
        self._net.close()

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _plane_progress(progress: Progress | None, k: int, planes: int) -> Progress | None:
    """``progress`` for plane ``k`` of ``planes``: the tiles of the planes before it counted as done."""
    if progress is None or planes == 1:
        return progress
    return lambda done, total: progress(k * total + done, planes * total)
