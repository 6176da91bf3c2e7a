"""Where bsrn-edge keeps caches (exported ONNX for the bench, TensorRT engines, ONNX Runtime's TensorRT
engine cache, the engine ``backend="auto"`` measured fastest): one root for all."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["cache_root", "record_key", "read_record", "write_record"]

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$BSRN_EDGE_CACHE``, else ``$XDG_CACHE_HOME/bsrn-edge`` (``~/.cache/bsrn-edge``)."""
    base = os.environ.get("BSRN_EDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"), "bsrn-edge")  # an empty variable is unset
    return Path(base)


def record_key(**facts: Any) -> str:
    """A short digest of ``facts`` (JSON-serialisable values): equal facts, equal key."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _record_path(kind: str, key: str) -> Path:
    return cache_root() / kind / f"{key}.json"


def read_record(kind: str, key: str) -> dict[str, Any] | None:
    """The JSON record ``kind``/``key`` under the cache root, or None (absent or unreadable)."""
    try:
        data = json.loads(_record_path(kind, key).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(kind: str, key: str, record: dict[str, Any]) -> None:
    """Write the record atomically (a reader never sees half of it); a cache that cannot be written is only logged."""
    path = _record_path(kind, key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1)
        os.replace(tmp, path)
        tmp = None
    except (OSError, TypeError, ValueError) as exc:  # TypeError/ValueError: a value JSON cannot hold
        log.warning("could not cache %s in %s (%s); it will be measured again next time", kind, path.parent, exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
