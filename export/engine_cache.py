"""Engine profiles and cache keys: everything about TensorRT engines that needs no TensorRT."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bsrn_edge.cache import cache_root  # re-exported: the one cache root
from bsrn_edge.errors import InputError

__all__ = ["EngineProfile", "EngineKey", "engine_key", "sidecar_matches", "cache_root", "default_cache_dir"]


@dataclass(frozen=True)
class EngineProfile:
    """One optimization profile: square LR tile sides and batch sizes (min ≤ opt ≤ max)."""

    min_tile: int
    opt_tile: int
    max_tile: int
    max_batch: int = 4
    opt_batch: int = 1

    def validate(self, min_size: int, source: str = "profile") -> "EngineProfile":
        """Raise :class:`InputError` unless the bounds are ordered and at least the model minimum."""
        if self.min_tile < min_size:
            raise InputError(
                f"{source}: --min-tile {self.min_tile} is below the model's minimum input size {min_size} "
                f"(ESA needs {min_size}×{min_size}); use --min-tile {min_size} or more"
            )
        if not (self.min_tile <= self.opt_tile <= self.max_tile):
            raise InputError(
                f"{source}: tile bounds must satisfy min ≤ opt ≤ max, got {self.min_tile} ≤ {self.opt_tile} ≤ {self.max_tile}"
            )
        if not (1 <= self.opt_batch <= self.max_batch):
            raise InputError(f"{source}: batch bounds must satisfy 1 ≤ opt ≤ max, got opt {self.opt_batch}, max {self.max_batch}")
        return self

    def shapes(self, pixels: str = "float") -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) input shapes for ``IOptimizationProfile.set_shape``: N×3×H×W for float pixel
        I/O, N×H×W×3 for uint8 pixel I/O (``ModelMeta.pixels``)."""
        if pixels not in ("float", "uint8"):
            raise InputError(f"pixels={pixels!r}: expected 'float' (N×3×H×W) or 'uint8' (N×H×W×3)")
        bounds = ((1, self.min_tile), (self.opt_batch, self.opt_tile), (self.max_batch, self.max_tile))
        if pixels == "uint8":
            return tuple((n, t, t, 3) for n, t in bounds)
        return tuple((n, 3, t, t) for n, t in bounds)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; a change in any field means a rebuild."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: EngineProfile

    @property
    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def file_name(self, stem: str) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower() or "gpu"
        return f"{stem}.{self.precision}.{gpu}-sm{self.compute_capability.replace('.', '')}.trt{self.tensorrt_version}.{self.digest}.engine"

    def to_json(self) -> str:
        return json.dumps({"key": asdict(self), "digest": self.digest}, indent=2, sort_keys=True)


def engine_key(onnx_bytes: bytes, trt_version: str, gpu_name: str, cc: tuple[int, int] | str, precision: str,
               profile: EngineProfile) -> EngineKey:
    cc_s = cc if isinstance(cc, str) else f"{cc[0]}.{cc[1]}"
    return EngineKey(hashlib.sha256(onnx_bytes).hexdigest(), trt_version, gpu_name, cc_s, precision, profile)


def sidecar_matches(sidecar: Path, key: EngineKey) -> bool:
    """True when an existing engine's JSON sidecar was written for exactly this key."""
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("digest") == key.digest


def default_cache_dir() -> Path:
    """Where built engines and the timing cache are kept."""
    return cache_root() / "engines"
