"""What bsrn-bench measures: :class:`BenchConfig` and the parsers of its command-line values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from bsrn_edge.datasets import find_pairs
from bsrn_edge.errors import InputError
from bsrn_edge.variants import VARIANTS, get_variant

__all__ = [
    "BACKENDS", "PRECISION", "DEFAULT_MODELS", "DEFAULT_BACKENDS", "Device", "BenchConfig",
    "parse_size", "parse_models", "parse_backends",
]

Device = Literal["cpu", "cuda"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "onnxruntime-fp16", "tensorrt", "openvino", "openvino-bf16",
                             "openvino-int8")
PRECISION: dict[str, str] = {"torch": "fp32", "onnxruntime": "fp32", "onnxruntime-fp16": "fp16", "tensorrt": "fp16",
                             "openvino": "fp32", "openvino-bf16": "bf16", "openvino-int8": "int8"}
DEFAULT_MODELS: tuple[str, ...] = ("bsrn-s-x4", "bsrn-x4", "imdn", "rfdn", "rlfn")
#: every backend but openvino-int8, whose row first needs an INT8 export (a few minutes per model)
DEFAULT_BACKENDS: tuple[str, ...] = BACKENDS[:-1]

_SIZE = re.compile(r"^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` (``256x256``, ``320x180``) or one number for a square → ``(width, height)``."""
    s = str(text).strip()
    m = _SIZE.match(s)
    if m:
        w, h = int(m[1]), int(m[2])
    elif s.isdigit():
        w = h = int(s)
    else:
        raise InputError(f"--size {text!r}: expected WIDTHxHEIGHT in LR pixels, e.g. 256x256 or 320x180")
    if w < 1 or h < 1:
        raise InputError(f"--size {text!r}: width and height must be positive, e.g. 256x256")
    return w, h


def _split(text: str | Sequence[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [t.strip() for t in items if t.strip()]


def parse_models(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated model names or aliases → canonical registry names (order kept, duplicates dropped)."""
    names = _split(text)
    if not names:
        raise InputError(f"--models is empty; choose from: {', '.join(VARIANTS)}")
    out: list[str] = []
    bad: list[str] = []
    for n in names:
        try:
            canon = get_variant(n).name
        except InputError:
            bad.append(n)
            continue
        if canon not in out:
            out.append(canon)
    if bad:
        raise InputError(f"unknown model name(s) {', '.join(map(repr, bad))}; valid names: {', '.join(VARIANTS)}")
    return tuple(out)


def parse_backends(text: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated backend names → a tuple of :data:`BACKENDS` entries (order kept)."""
    names = [n.lower() for n in _split(text)]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        got = ", ".join(map(repr, bad)) if bad else "nothing"
        raise InputError(f"unknown backend name(s) {got}; valid backends: {', '.join(BACKENDS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. ``size`` is the timing input in LR pixels, ``(width, height)``.

    ``data`` is a folder of LR/HR pairs in either layout :func:`~bsrn_edge.datasets.find_pairs` reads; None
    means the bundled Set5 ×4. ``threads`` sets both PyTorch's and ONNX Runtime's intra-op threads (None:
    PyTorch's default and ONNX Runtime's physical-core count).
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    device: Device = "cpu"
    data: Path | None = None
    size: tuple[int, int] = (256, 256)
    runs: int = 10
    warmup: int = 2
    threads: int | None = None
    cache_dir: Path | None = None

    def validate(self) -> "BenchConfig":
        """Raise :class:`InputError` naming the bad field; return self otherwise."""
        models = parse_models(self.models)
        parse_backends(self.backends)
        if self.device not in ("cpu", "cuda"):
            raise InputError(f"--device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.runs < 1:
            raise InputError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        self._check_size(models)
        if self.data is not None:
            if not Path(self.data).is_dir():
                raise InputError(f"--data {self.data}: not a directory; expected a folder of LR/HR pairs "
                                 f"(img_NNN_SRF_4_LR.png/_HR.png or DIV2K's NNNN.png with NNNNx4.png)")
            find_pairs(self.data)  # raises InputError when the folder holds no pairs at all
        return self

    def _check_size(self, models: Sequence[str]) -> None:
        need = max(VARIANTS[m].sizes.minimum for m in models)
        if min(self.size) < need:
            raise InputError(
                f"--size {self.size[0]}x{self.size[1]} is below the smallest input {need}×{need} that "
                f"{', '.join(m for m in models if VARIANTS[m].sizes.minimum == need)} accept(s); "
                f"use --size {need}x{need} or more"
            )

    @property
    def data_label(self) -> str:
        return "bundled Set5 ×4" if self.data is None else str(self.data)

    @property
    def size_label(self) -> str:
        """``"WIDTHxHEIGHT"`` of the timing input."""
        return f"{self.size[0]}x{self.size[1]}"
