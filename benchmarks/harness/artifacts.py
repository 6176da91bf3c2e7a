"""The bench's export cache: ONNX files (and TensorRT engines) of each model, exported once and reused
while the checkpoint and the bsrn-edge version are unchanged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bsrn_edge.cache import cache_root
from bsrn_edge.datasets import Pair
from bsrn_edge.imageio import read_rgb

if TYPE_CHECKING:  # pragma: no cover
    from bsrn_edge.checkpoint import LoadedModel

__all__ = ["default_cache_dir", "cached_export", "trt_unavailable", "ov_unavailable", "cached_engine"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where exported ONNX files are kept between runs: ``<cache root>/bench`` (:func:`bsrn_edge.cache.cache_root`)."""
    return cache_root() / "bench"


def _export_dir(cache: Path, loaded: "LoadedModel") -> Path:
    from bsrn_edge import __version__

    return cache / f"{loaded.variant.name}-{loaded.sha256[:12]}-v{__version__}"


def cached_export(loaded: "LoadedModel", cache: Path, fp16: bool, int8: bool = False) -> dict[str, Path]:
    """The cached ONNX files of ``loaded`` (``onnx``, and ``fp16_onnx`` / ``int8_onnx`` when asked), exported on a
    miss (INT8 with bsrn-export's defaults: its validation may refuse it)."""
    from bsrn_edge.export.pipeline import ExportOptions, artifact_paths, export_checkpoint

    out = _export_dir(cache, loaded)
    stem = loaded.variant.name
    paths = artifact_paths(out, stem, fp16, int8=int8)
    wanted = {k: p for k, p in paths.items() if k != "manifest"}
    if all(p.is_file() for p in wanted.values()):
        logger.info("reusing exported %s", ", ".join(str(p) for p in wanted.values()))
        return wanted
    logger.info("exporting %s to %s (fp16=%s, int8=%s); later runs reuse it", stem, out, fp16, int8)
    res = export_checkpoint(stem, out, ExportOptions(fp16=fp16, int8=int8, engine="skip", force=True), report=logger.info)
    return {k: res.files[k] for k in wanted}


def trt_unavailable(device: str) -> str | None:
    """Why the tensorrt row cannot run here, or None."""
    if device != "cuda":
        return "TensorRT runs on a CUDA GPU only; pass --device cuda"
    from bsrn_edge.export.pipeline import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


def ov_unavailable(backend: str, device: str) -> str | None:
    """Why an openvino row cannot run here, or None."""
    from bsrn_edge._lazy import available

    if device != "cpu":
        return "the openvino rows run on the CPU; pass --device cpu"
    if not available("openvino"):
        return "openvino is not installed (pip install 'bsrn-edge[openvino]')"
    from bsrn_edge.runtime.backends.openvino import native_bf16

    if backend == "openvino-bf16" and not native_bf16():
        return "this CPU has no native BF16 (AVX512-BF16 or AMX)"
    if backend == "openvino-int8" and not available("nncf"):
        return "nncf is not installed for the INT8 export (pip install 'bsrn-edge[int8]')"
    return None


def cached_engine(loaded: "LoadedModel", cache: Path, size: tuple[int, int], pairs: Sequence[Pair]) -> Path:
    """Build (or reuse) an FP16 engine whose profile covers the timing input and every LR image."""
    from bsrn_edge.export.engine_cache import EngineProfile
    from bsrn_edge.export.pipeline import build_engine_step, engine_path_for

    onnx16 = cached_export(loaded, cache, fp16=True)["fp16_onnx"]
    minimum = loaded.variant.sizes.minimum
    sides = [*size] + [s for p in pairs for s in read_rgb(p.lr).shape[:2]]
    lo = max(minimum, min(32, min(sides)))
    profile = EngineProfile(min_tile=lo, opt_tile=max(size), max_tile=max(sides), max_batch=1, opt_batch=1)
    build_engine_step(onnx16, profile.validate(minimum, "bsrn-bench"), "fp16", "require", logger.info)
    return engine_path_for(onnx16)
