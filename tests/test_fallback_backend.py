"""FallbackBackend alone: a primary network whose output is or is not finite, an FP32 network beside it.

Both networks here are stand-ins whose outputs are known exactly (pixel replication ×2 of a real Set5
crop), so each test can say which of the two produced what came out."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bsrn_edge.errors import NonFiniteOutputError
from bsrn_edge.meta import ModelMeta
from bsrn_edge.pixels import quantize, to_nchw
from bsrn_edge.runtime.backends.base import Backend
from bsrn_edge.runtime.backends.fallback import FallbackBackend

META = ModelMeta(variant="bsrn-s-x2-test", arch="bsrn", scale=2, channels=48, min_size=1, tile=195, overlap=48,
                 checkpoint_sha256="", exporter_version="test", precision="fp16")


def replicate(x: np.ndarray) -> np.ndarray:
    """×2 by pixel replication on N×3×H×W."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


class Net:
    """A Backend: ×2 replication, optionally poisoned with NaN, in float or uint8 pixel I/O."""

    def __init__(self, meta: ModelMeta, poisoned: bool = False, flag: bool = False):
        self.name, self.meta, self.tile_limits, self.max_batch = "stand-in", meta, (1, 0), 0
        self.poisoned, self.flag, self.calls, self.closed = poisoned, flag, 0, False

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.meta.pixels == "uint8":  # N×H×W×3 uint8 → N×2H×2W×3 uint8, or the graph's own flag
            if self.flag:
                raise NonFiniteOutputError("flag set")
            return x.repeat(2, axis=1).repeat(2, axis=2)
        y = replicate(x).astype(np.float32)
        if self.poisoned:
            y[0, 0, 0, 0] = np.nan
        return y

    def infer_into(self, x: np.ndarray, out: np.ndarray) -> None:
        out[...] = self.infer(x)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def crop(lr_images: list[np.ndarray]) -> np.ndarray:
    return to_nchw(lr_images[2][8:40, 12:44])  # 1×3×32×32 float in [0, 1]


def test_stand_ins_are_backends() -> None:
    assert isinstance(Net(META), Backend) and isinstance(FallbackBackend(Net(META)), Backend)


def test_a_finite_output_never_opens_the_fallback(crop: np.ndarray) -> None:
    opened: list[Path] = []
    fb = FallbackBackend(Net(META), Path("m.onnx"), lambda p: opened.append(p) or Net(META))  # type: ignore[func-returns-value]
    np.testing.assert_array_equal(fb.infer(crop), replicate(crop))
    assert opened == [] and fb.name == "stand-in" and fb.meta is META


def test_a_non_finite_output_is_replaced_by_the_fp32_network_opened_once(crop: np.ndarray, caplog) -> None:
    fp32 = Net(replace(META, precision="fp32"))
    opened: list[Path] = []

    def opener(path: Path) -> Net:
        opened.append(path)
        return fp32

    fb = FallbackBackend(Net(META, poisoned=True), Path("m.onnx"), opener)
    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=fb.infer, args=(crop,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert opened == [Path("m.onnx")] and fp32.calls == 4 and "falling back to m.onnx" in caplog.text
    out = np.empty((1, 3, 64, 64), np.float32)
    fb.infer_into(crop, out)
    np.testing.assert_array_equal(out, replicate(crop))  # infer_into replaces the poisoned output too
    fb.close()
    assert fp32.closed and fb.primary.closed  # type: ignore[attr-defined]


def test_without_a_fallback_the_error_names_the_model_and_size(crop: np.ndarray) -> None:
    fb = FallbackBackend(Net(META, poisoned=True))
    with pytest.raises(NonFiniteOutputError, match=r"bsrn-s-x2-test \(stand-in, fp16\).*1×3×32×32.*FP16 model may overflow"):
        fb.infer(crop)
    still_bad = FallbackBackend(Net(META, poisoned=True), Path("m.onnx"), lambda p: Net(META, poisoned=True))
    with pytest.raises(NonFiniteOutputError):  # the FP32 network fails too: no image
        still_bad.infer(crop)


def test_a_uint8_graphs_flag_falls_back_to_float_and_converts(crop: np.ndarray) -> None:
    u8 = replace(META, pixels="uint8")
    fb = FallbackBackend(Net(u8, flag=True), Path("m.onnx"), lambda p: Net(replace(META, precision="fp32")))
    pixels = quantize(crop).transpose(0, 2, 3, 1)  # what a uint8-I/O graph takes
    want = quantize(replicate(to_nchw(pixels[0]))).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(fb.infer(pixels), want)
    frame_out = np.empty((64, 64, 3), np.uint8)
    fb.recover_frame(pixels[0], frame_out)  # the frame pipeline's fallback: the same pixels
    np.testing.assert_array_equal(frame_out, want[0])
