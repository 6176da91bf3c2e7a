"""ONNX Runtime's GPU execution providers: which to ask for, their options, and a check that ORT kept them.

``user_compute_stream`` reaches both GPU providers from Python from onnxruntime-gpu 1.18.0 (PRs #19229, #20168),
hence the ``gpu`` extra's floor. A provider that fails to start (a rejected option, no TensorRT libraries) makes
``InferenceSession`` print "EP Error ..." and retry with fallback providers and *no options*;
``get_providers()`` / ``get_provider_options()`` tell what was registered (decimal strings, booleans "0"/"1").
A dropped option is an error naming it: work would run on a stream the device path does not wait for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
from pathlib import Path
from typing import Any, NamedTuple

from bsrn_edge._lazy import require
from bsrn_edge.errors import MissingDependencyError
from bsrn_edge.meta import ModelMeta

__all__ = ["GPU_PROVIDERS", "TRT_MAX_SIDE", "TRT_MAX_BATCH", "providers_for", "provider_options", "open_session"]

log = logging.getLogger(__name__)
_STDOUT_LOCK = threading.Lock()

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: the TensorRT provider's engine profile: LR sides from the model's minimum to this, batch up to TRT_MAX_BATCH;
#: the tile policy keeps every run inside it (larger images are tiled), so the engine is built once
TRT_MAX_SIDE, TRT_MAX_BATCH = 1280, 1
_INPUT = "input"  # bsrn-export's input name (export/onnx_steps.py)
#: options ORT reports back in get_provider_options() (its ToProviderOptions), so a value we set can be compared
_REPORTED = {"TensorrtExecutionProvider": ("device_id", "user_compute_stream", "trt_fp16_enable"),
             "CUDAExecutionProvider": ("device_id", "user_compute_stream")}


def providers_for(device: str) -> list[str]:
    """The providers to ask for: the GPU ones this build has for 'auto'/'cuda[:N]', then the CPU (ORT's fallback)."""
    ort = require("onnxruntime")
    have = set(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = list(GPU_PROVIDERS) if device in ("auto", "cuda") or device.startswith("cuda:") else [device]
    return [p for p in wanted if p in have] + ["CPUExecutionProvider"]


def trt_profile(meta: ModelMeta) -> dict[str, str]:
    """``trt_profile_min/opt/max_shapes`` ("input:1x3x32x32"): the model's minimum, its recommended tile, the maximum."""
    lo, hi = meta.min_size, max(meta.min_size, TRT_MAX_SIDE)
    sides = {"min": (1, lo), "opt": (1, min(max(lo, meta.tile), hi)), "max": (TRT_MAX_BATCH, hi)}
    dims = "{n}x{s}x{s}x3" if meta.pixels == "uint8" else "{n}x3x{s}x{s}"
    return {f"trt_profile_{k}_shapes": f"{_INPUT}:" + dims.format(n=n, s=s) for k, (n, s) in sides.items()}


def provider_options(providers: list[str], model: Path, meta: ModelMeta, stream_handle: int = 0,
                     device_id: int = 0) -> list[dict[str, str]]:
    """Options per provider. Both GPU providers run on ``stream_handle`` (when non-zero). TensorRT: an engine cache
    folder and a timing cache (a new process reuses the engine instead of building it for minutes), FP16 only for
    an FP16 model, and one profile covering every shape the tile policy feeds it."""
    opts: list[dict[str, str]] = []
    for p in providers:
        o: dict[str, str] = {}
        if p in GPU_PROVIDERS:
            o["device_id"] = str(device_id)
            if stream_handle:
                o["user_compute_stream"] = str(stream_handle)
        if p == "TensorrtExecutionProvider":
            o.update({"trt_fp16_enable": str(meta.precision == "fp16"), **trt_profile(meta), **_engine_cache(model)})
        opts.append(o)
    return opts


def _engine_cache(model: Path) -> dict[str, str]:
    """The TensorRT provider's engine and timing caches, in a folder of this model's own bytes (a re-exported file
    of the same name never meets a stale engine); none where the cache root cannot be written (a read-only system)."""
    from bsrn_edge.cache import cache_root
    from bsrn_edge.checkpoint import sha256_file

    folder = cache_root() / "ort-trt" / f"{model.stem}-{sha256_file(model)[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("%s: no TensorRT engine cache (%s); the engine is built in every new process", folder, exc.strerror)
        return {}
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(folder)}


def _norm(value: object) -> str:
    return {"true": "1", "false": "0"}.get(str(value).lower(), str(value))


class Dropped(NamedTuple):
    """A GPU provider ORT did not start, or an option of one it did not keep (``option`` None: the provider itself)."""

    provider: str
    option: str | None
    text: str


def dropped(session: Any, providers: list[str], options: list[dict[str, str]], printed: str = "") -> Dropped | None:
    """What ORT did not keep of ``providers`` / ``options``, or None; ``printed`` is what ORT printed meanwhile."""
    got, kept = session.get_providers(), session.get_provider_options()
    for p, asked in zip(providers, options):
        if p not in GPU_PROVIDERS:
            continue
        if p not in got:
            named = re.search(r"(?:Invalid TensorRT EP option|Unknown provider option):?\s*\"?(\w+)", printed)
            option = named.group(1) if named else None
            return Dropped(p, option, f"ONNX Runtime could not start {p}{f' with its option {option}' if option else ''} "
                                      f"and fell back to {', '.join(got)}")
        for key in _REPORTED[p]:
            if key in asked and _norm(kept.get(p, {}).get(key)) != _norm(asked[key]):
                return Dropped(p, key, f"ONNX Runtime dropped the {p} option {key}={asked[key]} "
                                       f"(it reports {kept.get(p, {}).get(key)!r})")
    return None


def _create(path: Path, session_options: Any, providers: list[str], options: list[dict[str, str]]) -> tuple[Any, str]:
    ort = require("onnxruntime")
    printed = io.StringIO()
    # ORT prints its "EP Error" fallback notice, it does not warn; sys.stdout is the process's, so one thread at a time
    with _STDOUT_LOCK, contextlib.redirect_stdout(printed):
        session = ort.InferenceSession(str(path), session_options, providers=providers, provider_options=options)
    if printed.getvalue().strip():
        log.warning("ONNX Runtime: %s", " ".join(printed.getvalue().split()))
    return session, printed.getvalue()


def open_session(path: Path, session_options: Any, providers: list[str], options: list[dict[str, str]],
                 gpu_required: bool) -> Any:
    """A session with the providers and options asked for. Without TensorRT's libraries the TensorRT provider is left
    out (a warning) and CUDA is tried alone; a GPU provider or option dropped otherwise is a
    :class:`MissingDependencyError` naming it, unless no GPU was required and none came up (then the CPU serves)."""
    session, printed = _create(path, session_options, providers, options)
    problem = dropped(session, providers, options, printed)
    if problem and problem.provider == "TensorrtExecutionProvider" and problem.option is None:
        log.warning("%s: TensorRT execution provider unavailable (%s); trying CUDA alone", path, problem.text)
        providers, options = providers[1:], options[1:]
        session, printed = _create(path, session_options, providers, options)
        problem = dropped(session, providers, options, printed)
    on_gpu = bool(set(session.get_providers()) & set(GPU_PROVIDERS))
    if problem and problem.option is None and not on_gpu and not gpu_required:
        log.warning("%s: %s; running on the CPU", path, problem.text)
        return session
    if problem:
        raise MissingDependencyError(f"{path}: {problem.text}. The device path needs onnxruntime-gpu >= 1.18 (the first "
                                     "release with user_compute_stream for both GPU providers): "
                                     "pip install 'bsrn-edge[gpu]'")
    if on_gpu and hasattr(session, "disable_fallback"):
        session.disable_fallback()  # a GPU failure at run time is an error, not a silent rerun on the CPU
    return session
