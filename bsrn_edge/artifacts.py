"""How exported artifacts are named: one rule shared by the exporter (which writes them) and the
runtime (which finds the FP32 / FP16 / INT8 / uint8-I/O sibling of a file it was given).

``<stem>.onnx`` (FP32, float I/O), ``<stem>.fp16.onnx``, ``<stem>.u8.onnx`` (FP32, uint8 pixel I/O),
``<stem>.fp16.u8.onnx``, ``<stem>.int8.onnx`` (INT8 QDQ, ``bsrn-export --int8``); engines replace ``.onnx`` by
``.engine`` and always carry the precision (``<stem>.fp32.engine``, ``<stem>.fp16.u8.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import InputError

__all__ = ["ArtifactName", "artifact_name", "parse_artifact", "sibling"]

Precision = Literal["fp32", "fp16", "int8"]
Pixels = Literal["float", "uint8"]
_KINDS = ("onnx", "engine")


@dataclass(frozen=True)
class ArtifactName:
    stem: str
    precision: Precision = "fp32"
    pixels: Pixels = "float"
    kind: Literal["onnx", "engine"] = "onnx"

    @property
    def file_name(self) -> str:
        parts = [self.stem]
        if self.precision != "fp32" or self.kind == "engine":
            parts.append(self.precision)
        if self.pixels == "uint8":
            parts.append("u8")
        return ".".join(parts) + "." + self.kind


def artifact_name(stem: str, *, precision: str = "fp32", pixels: str = "float", kind: str = "onnx") -> str:
    """The file name of one artifact of ``stem``."""
    if precision not in ("fp32", "fp16", "int8") or pixels not in ("float", "uint8") or kind not in _KINDS:
        raise InputError(f"no artifact for precision={precision!r}, pixels={pixels!r}, kind={kind!r}; "
                         "use fp32/fp16/int8, float/uint8, onnx/engine")
    return ArtifactName(stem, precision, pixels, kind).file_name  # type: ignore[arg-type]


def parse_artifact(path: str | Path) -> ArtifactName:
    """Split a file name written by bsrn-export into stem, precision, pixel I/O and kind."""
    name = Path(path).name
    kind = next((k for k in _KINDS if name.endswith("." + k)), None)
    if kind is None:
        raise InputError(f"{path}: not an .onnx or .engine file")
    parts = name[: -len(kind) - 1].split(".")
    pixels = "float"
    precision = "fp32"
    if len(parts) > 1 and parts[-1] == "u8":
        pixels = "uint8"
        parts.pop()
    if len(parts) > 1 and parts[-1] in ("fp16", "fp32", "int8"):
        precision = parts.pop()
    return ArtifactName(".".join(parts), precision, pixels, kind)  # type: ignore[arg-type]


def sibling(path: str | Path, *, precision: str | None = None, pixels: str | None = None,
            kind: str | None = None) -> Path:
    """The path of the artifact beside ``path`` that differs only in the given fields (it may not exist)."""
    a = parse_artifact(path)
    name = artifact_name(a.stem, precision=precision or a.precision, pixels=pixels or a.pixels, kind=kind or a.kind)
    return Path(path).with_name(name)
