"""``Upscaler``: images and camera frames in, upscaled images out, on any backend, without PyTorch."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from bsrn_edge._lazy import available
from bsrn_edge.artifacts import parse_artifact, sibling
from bsrn_edge.errors import InputError
from bsrn_edge.pixels import check_image, pad_to_min, row_writer, to_nchw, to_pixels, window_reader

from .backends.base import Backend, pixel_layout
from .bands import banded_apply
from .frames import FramePipeline, NonFiniteOutputError, check_frame, device_of
from .tiling import DEFAULT_OVERLAP, TilePlan, plan_tiles

__all__ = ["Upscaler", "open_backend", "BackendName", "ChannelOrder", "NonFiniteOutputError"]

log = logging.getLogger(__name__)

BackendName = Literal["auto", "onnxruntime", "tensorrt", "torch"]
DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "fp16"]
ChannelOrder = Literal["rgb", "bgr"]
# live feature maps per LR pixel and channel, measured as ONNX Runtime's peak RSS increase
# (bsrn-bench): ≈15 for BSRN-S (48 channels), ≈30 for BSRN (64 channels); rounded up
_ACT_MAPS_SMALL, _ACT_MAPS = 16, 32
#: share of the GPU's free memory that tile="auto" plans for (the rest: allocator slack, other users)
_GPU_BUDGET_SHARE = 0.5


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


class Upscaler:
    """Upscale images with a BSRN model on ONNX Runtime (default), TensorRT or PyTorch.

    ``device`` / ``precision`` choose where and how any backend kind runs (see :func:`open_backend`).
    On a GPU, frames stay on the device from the uint8 upload to the uint8 download
    (:class:`~bsrn_edge.runtime.frames.FramePipeline`), and large images are tiled and blended on the
    device when the backend is PyTorch.

    ``tile``: ``"auto"`` runs whole images whose activations fit the memory budget (``memory_mb`` on the
    host; half the GPU's free memory on a GPU) and tiles the rest with the model's recommended tile
    (smaller when the budget or an engine's profile requires); an int forces that LR tile side; ``None``
    never tiles. ``overlap`` is in LR pixels. Tiles of equal size go ``batch`` at a time. ``slots``:
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
        if batch < 1:
            raise InputError(f"batch must be ≥ 1, got {batch}")
        if isinstance(tile, int) and not isinstance(tile, bool) and tile < 1:
            raise InputError(f"tile must be a positive LR side, 'auto' or None, got {tile}")
        if overlap is not None and overlap < 0:
            raise InputError(f"overlap must be 0 or more LR pixels, got {overlap}")
        self.backend: Backend = model if isinstance(model, Backend) else open_backend(model, backend, device, precision, threads)
        self.meta = self.backend.meta
        self.scale = self.meta.scale
        self.sizes = self.meta.sizes
        self.tile = tile
        self.overlap = DEFAULT_OVERLAP if overlap is None else overlap
        lo, hi = self.backend.tile_limits
        if isinstance(tile, int) and not isinstance(tile, bool) and (tile < lo or (hi and tile > hi)):
            raise InputError(f"tile {tile}: {self.meta.variant} on {self.backend.name} takes LR tiles of "
                             f"{f'{lo}…{hi}' if hi else f'at least {lo}'} pixels")
        self.batch = batch if not self.backend.max_batch else min(batch, self.backend.max_batch)
        self.memory_mb = memory_mb
        self._pixels = pixel_layout(self.meta)
        self._device = device_of(self.backend)
        self._fallback_path = self._find_fallback(model)
        self._fallback: Backend | None = None
        self._fallback_lock = threading.Lock()
        self._frames = (FramePipeline(self.backend, slots, model=self.meta.variant, fallback=self._frame_fallback)
                        if self._device is not None else None)
        self._tiler = None
        if self._on_gpu and (hasattr(self.backend, "forward_tensor") or available("torch")):
            from .device_tiling import DeviceTiler

            self._tiler = DeviceTiler(self.backend, nonfinite=self._nonfinite)
        self._local = threading.local()
        self._whole_sizes: dict[tuple[int, int], bool] = {}
        log.info("bsrn-edge: %s on %s", self.meta.variant, self.backend.name)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- non-finite outputs --------------------------------------------------------------------
    def _find_fallback(self, model: object) -> Path | None:
        if self.meta.precision != "fp16" or not isinstance(model, (str, Path)) or Path(model).suffix != ".onnx":
            return None
        path = getattr(self.backend, "path", Path(model))
        fp32 = sibling(path, precision="fp32", pixels="float")
        return fp32 if fp32.is_file() else None

    def _fp32(self) -> Backend | None:
        if self._fallback_path is None:
            return None
        with self._fallback_lock:
            if self._fallback is None:
                log.warning("%s: FP16 output was not finite; falling back to %s", self.meta.variant, self._fallback_path)
                self._fallback = open_backend(self._fallback_path, "onnxruntime", "cpu")
            return self._fallback

    def _nonfinite(self, shape: tuple[int, ...]) -> NonFiniteOutputError:
        return NonFiniteOutputError(
            f"{self.meta.variant} ({self.backend.name}, {self.meta.precision}): the network produced NaN or infinite "
            f"values for a {'×'.join(map(str, shape))} input; nothing was written. Check the checkpoint, or use the "
            f"FP32 model{' (an FP16 model may overflow on this content)' if self.meta.precision == 'fp16' else ''}")

    def _float_infer(self, x: np.ndarray) -> np.ndarray:
        """Float N×3×h×w in [0, 1] → float N×3×sh×sw, whatever the model's pixel I/O; never non-finite."""
        try:
            if self._pixels == "uint8":
                return to_nchw(self.backend.infer(to_pixels(x)))  # uint8 N×sh×sw×3 → float
            y = self.backend.infer(x)
            if np.isfinite(y).all():
                return y
        except NonFiniteOutputError:  # a uint8 graph's own flag
            pass
        return self._fallback_infer(x)

    def _fallback_infer(self, x: np.ndarray) -> np.ndarray:
        """The primary network's output was not finite: the FP32 artifact's output, or the error."""
        fp32 = self._fp32()
        y = fp32.infer(x) if fp32 is not None else None
        if y is None or not np.isfinite(y).all():
            raise self._nonfinite(tuple(x.shape))
        return y

    def _frame_fallback(self, frame: np.ndarray, out: np.ndarray) -> None:
        y = self._fallback_infer(to_nchw(frame))
        row_writer(out, "rgb", out.shape[:2])(0, out.shape[0], y[0].transpose(1, 2, 0))

    # -- sizing --------------------------------------------------------------------------------
    def _act_bytes(self, pixels: int) -> int:
        maps = _ACT_MAPS_SMALL if self.meta.channels <= 48 else _ACT_MAPS
        width = 2 if self.meta.precision == "fp16" and self._on_gpu else 4
        return pixels * width * max(self.meta.channels, 3) * maps

    @property
    def _on_gpu(self) -> bool:
        return self._device is not None and self._device.kind == "cuda"

    def _budget(self) -> int:
        if self._on_gpu:
            return int(self._device.free_memory() * _GPU_BUDGET_SHARE)
        return self.memory_mb * (1 << 20)

    def tile_for(self, height: int, width: int) -> int | None:
        """The LR tile side used for an image of this size (None: the whole image in one run).

        ``tile="auto"``: whole when the network's activations fit the budget; otherwise the variant's
        recommended tile, made smaller if its activations plus the stitching band would not fit (and
        never above an engine's maximum).
        """
        lo, hi = self.backend.tile_limits
        if self.tile is None:
            return None if not hi or max(height, width) <= hi else hi
        if self.tile != "auto":
            return int(self.tile)
        budget = self._budget()
        if self._act_bytes(height * width) <= budget and (not hi or max(height, width) <= hi):
            return None
        band_per_row = self.scale * width * self.scale * 3 * 4  # float32 band bytes per LR row of tile
        side = self.sizes.snap_tile(min(hi or self.meta.tile, self.meta.tile))
        while side > lo and self._act_bytes(side * side * self.batch) + side * band_per_row > budget:
            side = self.sizes.snap_down(side)
        return max(lo, min(side, hi) if hi else side)

    def _plan(self, ph: int, pw: int, tile: int | None) -> TilePlan:
        lo = self.backend.tile_limits[0]
        if tile is None or (ph <= tile and pw <= tile):  # one window: the exact whole-image result
            return plan_tiles(ph, pw, scale=self.scale, tile=max(ph, pw, lo), overlap=0, min_size=lo, snap=False)
        overlap = min(self.overlap, self.sizes.snap_tile(tile) // 2)  # the plan snaps the side to 6k + 3
        return plan_tiles(ph, pw, scale=self.scale, tile=tile, overlap=overlap, min_size=lo)

    # -- images --------------------------------------------------------------------------------
    def upscale(self, image: np.ndarray) -> np.ndarray:
        """Upscale one image; returns the same layout and dtype at ×scale.

        Large images are tiled and streamed into the output row band by row band, so memory beyond
        the input and output arrays is bounded by the tile (see ``memory_mb``).
        """
        a = check_image(image)
        h, w = a.shape[:2]
        out = np.empty((h * self.scale, w * self.scale, *a.shape[2:]), a.dtype)
        planes = ["rgb", "alpha"] if a.ndim == 3 and a.shape[2] == 4 else ["rgb"]
        rgb = self._as_rgb(a)
        for plane in planes:
            self._run_plane(rgb, plane, out)
        if self.channel_order == "bgr" and out.ndim == 3:
            out[..., :3] = out[..., 2::-1]  # back to the caller's order (numpy copies the overlapping source)
        return out

    def _as_rgb(self, a: np.ndarray) -> np.ndarray:
        """``a`` in RGB(A) order: a free view for channel_order="rgb", reordered for "bgr"."""
        if self.channel_order == "rgb" or a.ndim != 3 or a.shape[2] < 3:
            return a
        return a[..., ::-1] if a.shape[2] == 3 else a[..., [2, 1, 0, 3]]

    def _run_plane(self, a: np.ndarray, plane: str, out: np.ndarray) -> None:
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
        tile = self.tile_for(ph, pw)
        if self._tiler is not None:
            self._run_on_device(src, plane_src, out, plane, crop, tile)
            return
        banded_apply(self._float_infer, window_reader(src, plane_src), self._plan(ph, pw, tile),
                     row_writer(out, plane, crop), batch=self.batch)

    def _run_on_device(self, src: np.ndarray, plane_src: str, out: np.ndarray, plane: str,
                       crop: tuple[int, int], tile: int | None) -> None:
        from .device_tiling import is_out_of_memory

        ph, pw = src.shape[:2]
        try:
            self._tiler.run(src, plane_src, out, self._plan(ph, pw, tile), crop, self.batch, plane)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(exc):
                raise
            smaller = self.sizes.snap_tile(max(self.backend.tile_limits[0], (tile or max(ph, pw)) // 2))
            log.warning("%s: out of GPU memory with %s; retrying once with %d-pixel tiles",
                        self.meta.variant, f"{tile}-pixel tiles" if tile else "the whole image", smaller)
            self._tiler.torch.cuda.empty_cache()
            self._tiler.run(src, plane_src, out, self._plan(ph, pw, smaller), crop, self.batch, plane)

    # -- camera frames -------------------------------------------------------------------------
    def _whole(self, h: int, w: int) -> bool:
        """Whether frames of this size run whole; decided once per size (on a GPU ``tile_for`` asks the driver for
        free memory, which a camera loop should not do per frame, nor flip between paths as it changes)."""
        whole = self._whole_sizes.get((h, w))
        if whole is None:
            whole = self._whole_sizes[(h, w)] = min(h, w) >= self.backend.tile_limits[0] and self.tile_for(h, w) is None
        return whole

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
        if not self._whole(h, w):
            out[...] = self.upscale(frame)
            return out
        src, dst = self._as_rgb(frame), self._as_rgb(out)  # views: BGR costs no extra pass
        if self._frames is not None:
            self._frames.run(src, dst)
            return out
        x, y = self._frame_buffers(frame.shape)
        to_nchw(src, out=x)
        self.backend.infer_into(x, y)
        if not np.isfinite(y).all():
            y = self._fallback_infer(x)
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

        if self._frames is not None and self._whole(*first.shape[:2]):
            if self.channel_order == "rgb":
                yield from self._frames.stream(chained())
                return
            bgr: np.ndarray | None = None  # one reused buffer, contiguous so OpenCV can draw on it
            for rgb in self._frames.stream(self._as_rgb(f) for f in chained()):
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

    def close(self) -> None:
        self.backend.close()
        if self._fallback is not None:
            self._fallback.close()

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

