"""``Upscaler``: images and camera frames in, upscaled images out, on any backend, without PyTorch."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from bsrn_edge._lazy import available
from bsrn_edge.errors import InputError

from .backends.base import Backend
from .bands import banded_apply
from bsrn_edge.pixels import check_image, pad_to_min, row_writer, window_reader
from .tiling import DEFAULT_OVERLAP, esa_tile, plan_tiles

__all__ = ["Upscaler", "open_backend", "BackendName"]

log = logging.getLogger(__name__)

BackendName = Literal["auto", "onnxruntime", "tensorrt", "torch"]
# live float32 feature maps per LR pixel and channel, measured as ONNX Runtime's peak RSS increase
# (bsrn-bench): ≈15 for BSRN-S (48 channels), ≈30 for BSRN (64 channels); rounded up
_ACT_MAPS_SMALL, _ACT_MAPS = 16, 32


def open_backend(model: str | Path, backend: BackendName = "auto", device: str = "auto") -> Backend:
    """Open ``model`` (.onnx, .engine, checkpoint file or bundled name) with the requested backend."""
    path = Path(model)
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = "onnxruntime" if suffix == ".onnx" else "tensorrt" if suffix == ".engine" else "torch"
    if backend == "onnxruntime":
        if suffix != ".onnx":
            raise InputError(f"{model}: the onnxruntime backend needs an .onnx file (export one with bsrn-export)")
        from .backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device="cpu" if device == "cpu" else "auto")
    if backend == "tensorrt":
        if suffix != ".engine":
            raise InputError(f"{model}: the tensorrt backend needs an .engine file (bsrn-export --onnx FILE --engine)")
        from .backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    if backend == "torch":
        if not available("torch"):
            raise InputError(
                f"{model}: checkpoints and bundled names need the optional PyTorch backend "
                f"(pip install 'bsrn-edge[export]'), or export an .onnx first with bsrn-export"
            )
        from .backends.torch import TorchBackend

        dev = device if device != "auto" else ("cuda" if _cuda() else "cpu")
        return TorchBackend(str(model), device=dev)
    raise InputError(f"unknown backend {backend!r}; choose auto, onnxruntime, tensorrt or torch")


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class Upscaler:
    """Upscale images with a BSRN model on ONNX Runtime (default), TensorRT or PyTorch.

    ``tile``: ``"auto"`` runs whole images whose activations fit ``memory_mb`` and tiles the rest
    with the model's recommended tile (smaller when that budget or an engine's profile requires);
    an int forces that LR tile side; ``None`` never tiles. ``overlap`` is in LR pixels. Tiles of equal size go ``batch`` at a time.

    ``model`` is a file or bundled name (opened with ``backend`` on ``device``), or an already open
    :class:`Backend` (e.g. ``OnnxRuntimeBackend(path, threads=1)``) when its options need setting.

    The object keeps no per-call state: one instance can serve several threads at once.
    """

    def __init__(self, model: str | Path | Backend, backend: BackendName = "auto", *, tile: int | Literal["auto"] | None = "auto",
                 overlap: int | None = None, batch: int = 1, memory_mb: int = 768, device: str = "auto"):
        if batch < 1:
            raise InputError(f"batch must be ≥ 1, got {batch}")
        if isinstance(tile, int) and not isinstance(tile, bool) and tile < 1:
            raise InputError(f"tile must be a positive LR side, 'auto' or None, got {tile}")
        self.backend: Backend = model if isinstance(model, Backend) else open_backend(model, backend, device)
        self.meta = self.backend.meta
        self.scale = self.meta.scale
        self.tile = tile
        self.overlap = DEFAULT_OVERLAP if overlap is None else overlap
        self.batch = batch if not self.backend.max_batch else min(batch, self.backend.max_batch)
        self.memory_mb = memory_mb
        self._local = threading.local()
        log.info("bsrn-edge: %s on %s", self.meta.variant, self.backend.name)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- sizing --------------------------------------------------------------------------------
    def _act_bytes(self, pixels: int) -> int:
        maps = _ACT_MAPS_SMALL if self.meta.channels <= 48 else _ACT_MAPS
        return pixels * 4 * max(self.meta.channels, 3) * maps

    def tile_for(self, height: int, width: int) -> int | None:
        """The LR tile side used for an image of this size (None: the whole image in one run).

        ``tile="auto"``: whole when the network's activations fit ``memory_mb``; otherwise the
        variant's recommended tile, made smaller if its activations plus the stitching band would not
        fit ``memory_mb`` (and never above an engine's maximum).
        """
        lo, hi = self.backend.tile_limits
        if self.tile is None:
            return None if not hi or max(height, width) <= hi else hi
        if self.tile != "auto":
            return int(self.tile)
        budget = self.memory_mb * (1 << 20)
        if self._act_bytes(height * width) <= budget and (not hi or max(height, width) <= hi):
            return None
        band_per_row = self.scale * width * self.scale * 3 * 4  # float32 band bytes per LR row of tile
        cap = min(hi or self.meta.tile, self.meta.tile)
        side = 6 * ((cap - 3) // 6) + 3  # 6k + 3 keeps ESA's pooling grid whole (see tiling)
        while side > lo and self._act_bytes(side * side * self.batch) + side * band_per_row > budget:
            side -= 6
        return max(lo, min(side, hi) if hi else side)

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
        for plane in planes:
            self._run_plane(a, plane, out)
        return out

    def _run_plane(self, a: np.ndarray, plane: str, out: np.ndarray) -> None:
        h, w = a.shape[:2]
        lo = self.backend.tile_limits[0]
        if h < lo or w < lo:  # tiny images: mirror-pad (a small copy), crop on write
            rgb = window_reader(a, plane)(0, h, 0, w).transpose(1, 2, 0)
            padded, _ = pad_to_min(rgb, lo)
            src = np.ascontiguousarray(padded)
            read = window_reader(src, "rgb")
        else:
            src, read = a, window_reader(a, plane)
        ph, pw = src.shape[:2]
        tile = self.tile_for(ph, pw)
        if tile is None or (ph <= tile and pw <= tile):  # one window: the exact whole-image result
            plan = plan_tiles(ph, pw, scale=self.scale, tile=max(ph, pw, lo), overlap=0, min_size=lo, snap=False)
        else:
            overlap = min(self.overlap, esa_tile(tile, lo) // 2)  # the plan snaps the side to 6k + 3
            plan = plan_tiles(ph, pw, scale=self.scale, tile=tile, overlap=overlap, min_size=lo)
        banded_apply(self.backend.infer, read, plan, row_writer(out, plane, (h * self.scale, w * self.scale)),
                     batch=self.batch)

    # -- camera frames -------------------------------------------------------------------------
    def _frame_buffers(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        st = self._local
        if getattr(st, "shape", None) != shape:
            h, w = shape[:2]
            st.x = np.empty((1, 3, h, w), np.float32)
            st.y = np.empty((1, 3, h * self.scale, w * self.scale), np.float32)
            st.shape = shape
        return st.x, st.y

    def upscale_into(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Upscale an H×W×3 uint8 frame into ``out`` (sH×sW×3 uint8), reusing this thread's buffers.

        Frames at least the model's minimum and within the memory budget run whole with no per-frame
        allocation of network buffers; larger frames fall back to tiling.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"upscale_into takes H×W×3 uint8 frames, got {frame.shape} {frame.dtype}; use upscale()")
        want = (frame.shape[0] * self.scale, frame.shape[1] * self.scale, 3)
        if out.shape != want or out.dtype != np.uint8:
            raise InputError(f"out must be a {want} uint8 array, got {out.shape} {out.dtype}")
        h, w = frame.shape[:2]
        if min(h, w) < self.backend.tile_limits[0] or self.tile_for(h, w) is not None:
            out[...] = self.upscale(frame)
            return out
        x, y = self._frame_buffers(frame.shape)
        np.divide(frame.transpose(2, 0, 1)[None], np.float32(255.0), out=x)
        self.backend.infer_into(x, y)
        row_writer(out, "rgb", want[:2])(0, want[0], y[0].transpose(1, 2, 0))
        return out

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Upscale a sequence of equal-size uint8 frames; yields ONE reused output buffer (copy to keep)."""
        out: np.ndarray | None = None
        for frame in frames:
            want = (frame.shape[0] * self.scale, frame.shape[1] * self.scale, 3)
            if out is None or out.shape != want:
                out = np.empty(want, np.uint8)
            yield self.upscale_into(frame, out)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
