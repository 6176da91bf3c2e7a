"""Reading a deployed artifact's metadata without PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

from bsrn_edge._lazy import available, require
from bsrn_edge.errors import InputError

__all__ = ["read_onnx_props", "read_engine_props"]


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, via onnx when installed, else ONNX Runtime, else OpenVINO."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such ONNX file")
    if not available("onnx") and not available("onnxruntime") and available("openvino"):
        from .backends.openvino import onnx_props

        return onnx_props(p)
    if available("onnx"):
        onnx = require("onnx")
        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
            raise InputError(f"{p}: not a readable ONNX file ({exc})") from exc
        return {e.key: e.value for e in model.metadata_props}
    ort = require("onnxruntime")
    try:
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{p}: not a readable ONNX file ({exc})") from exc
    return dict(sess.get_modelmeta().custom_metadata_map)


def read_engine_props(path: str | Path) -> dict[str, str]:
    """The metadata of an engine, from the ``<engine>.meta.json`` sidecar written beside it."""
    side = Path(str(path) + ".meta.json")
    if not side.is_file():
        raise InputError(f"{path}: engine metadata sidecar {side.name} is missing; rebuild with bsrn-export --onnx")
    return {str(k): str(v) for k, v in json.loads(side.read_text()).items()}
