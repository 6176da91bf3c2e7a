"""ShapeSessions alone: one ONNX Runtime session per input shape, the least recently used dropped first."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_ort, needs_torch

pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture


def test_one_session_per_shape_fixed_to_it_and_least_recently_used_dropped(bsrn_s_export, lr_images) -> None:
    from bsrn_edge.runtime.backends.ort_sessions import ShapeSessions

    cache = ShapeSessions(bsrn_s_export.files["onnx"], {0: "batch", 2: "height", 3: "width"}, size=2, threads=1)
    a, b, c = (1, 3, 40, 56), (1, 3, 33, 21), (1, 3, 17, 64)
    first = cache.get(a)
    assert cache.get(a) is first and len(cache) == 1
    x = np.ascontiguousarray(lr_images[0][:40, :56].transpose(2, 0, 1)[None], dtype=np.float32) / 255
    name = first.get_inputs()[0].name
    assert first.run(None, {name: x})[0].shape == (1, 3, 160, 224)
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # the dimensions are fixed: another size is refused
        first.run(None, {name: x[:, :, :39]})
    cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)  # so b goes
    assert cache.shapes() == [a, c] and cache.get(a) is first
    cache.clear()
    assert len(cache) == 0
