"""BF16 at export: the PSNR-Y that OpenVINO's BF16 inference loses against its own FP32 on real images (Set5 and
the first B100 images), recorded in the FP32 graph's metadata (:data:`~bsrn_edge.meta.BF16_LOSS`) so that
``backend="auto"`` may run BF16 on a CPU with native BF16 when the loss is within
:data:`~bsrn_edge.meta.BF16_MAX_LOSS_DB`.

Only a CPU with native BF16 can measure it: elsewhere OpenVINO would silently compute FP32 and the loss would read
zero, so nothing is recorded and ``auto`` never picks BF16 for that export.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bsrn_edge._lazy import available
from bsrn_edge.hostinfo import cpu_isa, cpu_model, package_version
from bsrn_edge.meta import BF16_MAX_LOSS_DB

from .validate import openvino_psnr

__all__ = ["bf16_check"]


def bf16_check(model_bytes: bytes, sets: dict[str, tuple[list[np.ndarray], list]], scale: int) -> dict[str, Any]:
    """The manifest's ``bf16`` record: PSNR-Y per set in FP32 and BF16 and the worse loss (``loss_db``), or why not measured."""
    if not available("openvino"):
        return {"measured": False, "reason": "OpenVINO is not installed (pip install 'bsrn-edge[openvino]')"}
    from bsrn_edge.runtime.backends.openvino import native_bf16

    machine = {"cpu": cpu_model(), "isa": cpu_isa(), "openvino": package_version("openvino")}
    if not native_bf16():
        return {"measured": False, "reason": "this CPU has no native BF16 (AVX512-BF16 or AMX)", **machine}
    fp32, bf16 = (openvino_psnr(model_bytes, sets, scale, p) for p in ("fp32", "bf16"))
    per_set = {name: {"fp32": fp32[name], "bf16": bf16[name], "loss_db": fp32[name] - bf16[name]} for name in sets}
    loss = max(v["loss_db"] for v in per_set.values())
    return {"measured": True, "loss_db": loss, "budget_db": BF16_MAX_LOSS_DB, "within_budget": loss <= BF16_MAX_LOSS_DB,
            "sets": per_set, "images": {name: len(xs) for name, (xs, _) in sets.items()}, **machine}
