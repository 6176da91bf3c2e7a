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


def test_a_new_shape_is_built_once_and_blocks_no_other_shape() -> None:
    """ShapeCache (both CPU backends' session caches): a thread whose shape is held does not wait for another shape's
    build; two threads asking for one new shape build it once; a failed build is retried by the next caller."""
    import threading

    from bsrn_edge.runtime.backends.base import ShapeCache

    release, started, built = threading.Event(), threading.Event(), []

    def make(shape):
        built.append(shape)
        if shape == (9,):
            started.set()
            assert release.wait(10), "the slow build was never released"
        if shape == (13,) and built.count((13,)) == 1:
            raise RuntimeError("first build of 13 fails")
        return f"item {shape}"

    cache = ShapeCache(make, size=4)
    assert cache.get((1,)) == "item (1,)"
    results: list[str] = []
    slow = [threading.Thread(target=lambda: results.append(cache.get((9,)))) for _ in range(2)]
    for t in slow:
        t.start()
    assert started.wait(10)
    assert cache.get((1,)) == "item (1,)"  # held: answered while (9,) is still being built
    assert cache.get((2,)) == "item (2,)"  # another new shape is not queued behind (9,) either
    release.set()
    for t in slow:
        t.join(10)
    assert results == ["item (9,)", "item (9,)"] and built.count((9,)) == 1
    with pytest.raises(RuntimeError, match="first build"):
        cache.get((13,))
    assert cache.get((13,)) == "item (13,)" and built.count((13,)) == 2


def test_a_build_under_way_when_the_cache_is_cleared_is_not_kept() -> None:
    """A backend's close() clears its cache while another thread compiles: that compile is returned to its caller
    but not kept, so nothing outlives the close."""
    import threading

    from bsrn_edge.runtime.backends.base import ShapeCache

    release, started = threading.Event(), threading.Event()

    def make(shape):
        started.set()
        assert release.wait(10), "the build was never released"
        return f"item {shape}"

    cache = ShapeCache(make)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(cache.get((9,))))
    t.start()
    assert started.wait(10)
    cache.clear()
    release.set()
    t.join(10)
    assert got == ["item (9,)"] and len(cache) == 0 and cache.shapes() == []
