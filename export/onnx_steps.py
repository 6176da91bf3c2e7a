"""ONNX export steps, each a small named function (torch and onnx imported where used)."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

from bsrn_edge._lazy import require
from bsrn_edge.meta import ModelMeta

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from bsrn_edge.checkpoint import LoadedModel

__all__ = ["DEFAULT_OPSET", "onnx_from_model", "simplify_onnx", "set_metadata", "set_prop", "op_counts", "linear_leftovers"]

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def onnx_from_model(loaded: "LoadedModel", *, opset: int = DEFAULT_OPSET, sample_size: int = 64,
                    deploy: bool = True, split_concat: bool = True) -> "onnx.ModelProto":
    """Export the deploy form of ``loaded`` (``deploy=False``: the authors' structure) with dynamic batch, height and width.

    ``split_concat`` is passed to :func:`~bsrn_edge.models.deploy.to_deploy`.

    Uses the TorchScript exporter, which handles ESA's shape arithmetic for any size ≥ the
    model's minimum; the sample only fixes the channel count.
    """
    torch = require("torch")
    onnx = require("onnx")
    from bsrn_edge.models.deploy import to_deploy

    model = (to_deploy(loaded.model, split_concat=split_concat) if deploy else loaded.model).cpu().float()
    size = max(sample_size, loaded.min_size)
    sample = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        torch.onnx.export(
            model,
            (sample,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
            },
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def simplify_onnx(model: "onnx.ModelProto", *, keep_gelu: bool = True) -> "onnx.ModelProto":
    """Fold constants and remove redundant nodes with onnxsim, keeping dynamic shapes.

    onnxsim folds a scalar Mul that feeds a single Conv into that Conv's weights. For GELU's trailing
    ×0.5 this breaks the Div-Erf-Add-Mul-Mul pattern that ONNX Runtime fuses into one Gelu kernel,
    leaving four NCHW passes and two layout reorders behind every GELU with a single consumer (each
    block's c3_r GELU, and ESA's). ``keep_gelu`` (the default) skips that fold; it costs nothing on
    any runtime. ``keep_gelu=False`` is there to measure the difference.
    """
    onnxsim = require("onnxsim")
    skipped = ["fuse_preceding_mul_into_conv"] if keep_gelu else None
    simplified, ok = onnxsim.simplify(model, skipped_optimizers=skipped)
    if not ok:  # pragma: no cover - onnxsim validates by running both graphs
        from bsrn_edge.errors import ValidationError

        raise ValidationError("onnxsim could not validate the simplified graph against the original")
    return simplified


def set_metadata(model: "onnx.ModelProto", meta: ModelMeta) -> "onnx.ModelProto":
    """Write ``meta`` into ``metadata_props`` (replacing earlier bsrn_edge keys)."""
    props = meta.to_props()
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "bsrn-edge"
    model.producer_version = meta.exporter_version
    return model


def set_prop(model: "onnx.ModelProto", key: str, value: str) -> "onnx.ModelProto":
    """Set one ``metadata_props`` entry (replacing an earlier one of that key)."""
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return model
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value
    return model


def op_counts(model: "onnx.ModelProto") -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def linear_leftovers(model: "onnx.ModelProto") -> int:
    """Number of MatMul/Gemm nodes fed by a Transpose (what a naive Linear export leaves)."""
    producers: dict[str, Any] = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            if any(producers.get(i) is not None and producers[i].op_type == "Transpose" for i in n.input):
                count += 1
    return count
