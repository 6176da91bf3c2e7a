"""``backend="auto"``: picking from timings (fake ones, so the pick is known), measuring once and caching the pick by
CPU, flags, engine versions and model; with one engine nothing is measured; --backend/--precision override it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_openvino, needs_ort, needs_torch, run_upscale, save_image

from bsrn_edge.cache import cache_root
from bsrn_edge.errors import InputError
from bsrn_edge.runtime import choose

ORT, OV32, BF16, INT8 = ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8")


def test_pick_needs_another_engine_to_be_clearly_faster_than_the_default():
    (b, p), why = choose.pick({ORT: 0.400, OV32: 0.380, BF16: 0.200}, 195)
    assert (b, p) == BF16 and why.startswith("auto picked openvino bf16, 2.00× onnxruntime fp32: openvino bf16 200 ms")
    assert "195×195 tile" in why
    assert choose.pick({ORT: 0.400, OV32: 0.370}, 64)[0] == ORT  # 0.370 × 1.1 = 0.407 > 0.400: within noise
    assert choose.pick({ORT: 0.400, OV32: 0.360}, 64)[0] == OV32  # 0.360 × 1.1 = 0.396 < 0.400
    (b, p), why = choose.pick({ORT: 0.400, INT8: 0.390}, 64)
    assert (b, p) == ORT and why.startswith("auto kept onnxruntime fp32, no other engine was 1.1× faster")
    assert choose.pick({OV32: 0.3, BF16: 0.2}, 64)[0] == BF16  # no ONNX Runtime: the fastest


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A model file, a cache root of its own, two engines 'installed', fake candidates and fake timings that count
    their calls."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not parsed: the candidates and timings are fakes")
    calls: list[list] = []
    state = {"medians": {ORT: 0.40, OV32: 0.38, BF16: 0.19}}

    def time_engines(path, engines, threads):
        calls.append(list(engines))
        return {e: state["medians"][e] for e in engines}, 195

    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BSRN_EDGE_ENGINES")  # the suite limits auto to ONNX Runtime (conftest)
    monkeypatch.setattr(choose, "package_version", lambda m: "9.9")
    monkeypatch.setattr(choose, "candidates", lambda path: list(state["medians"]))
    monkeypatch.setattr(choose, "_time_engines", time_engines)
    choose._choose.cache_clear()
    yield model, calls, state
    choose._choose.cache_clear()


def test_auto_measures_once_and_then_reads_the_cache(fake, tmp_path, monkeypatch):
    model, calls, state = fake
    b, p, why = choose.choose(model)
    assert (b, p) == BF16 and len(calls) == 1 and calls[0] == [ORT, OV32, BF16]
    records = list(cache_root().glob("engine-choice/*.json"))
    assert len(records) == 1
    saved = json.loads(records[0].read_text())
    assert (saved["backend"], saved["precision"], saved["why"]) == ("openvino", "bf16", why)
    assert saved["medians_s"] == {"onnxruntime fp32": 0.40, "openvino fp32": 0.38, "openvino bf16": 0.19}

    assert choose.choose(model)[2] == why and len(calls) == 1  # the process remembers it
    choose._choose.cache_clear()
    state["medians"] = {ORT: 0.1, OV32: 0.5, BF16: 0.5}  # a new measurement would now pick ONNX Runtime
    b, p, why2 = choose.choose(model)
    assert (b, p) == BF16 and why2 == why + "; cached" and len(calls) == 1  # read from the cache, not measured


@pytest.mark.parametrize("change", ["model", "cpu flags", "engine version", "threads"])
def test_the_cache_key_holds_the_model_the_cpu_and_the_engines(fake, monkeypatch, change):
    model, calls, state = fake
    choose.choose(model)
    choose._choose.cache_clear()
    if change == "model":
        model.write_bytes(b"another model")
    elif change == "cpu flags":
        monkeypatch.setattr(choose, "cpu_isa", lambda: "avx2 fma avx512f avx512_bf16 amx_bf16")
    elif change == "engine version":
        monkeypatch.setattr(choose, "package_version", lambda m: "10.0" if m == "openvino" else "9.9")
    choose.choose(model, threads=1 if change == "threads" else None)
    assert len(calls) == 2  # measured again
    assert len(list(cache_root().glob("engine-choice/*.json"))) == 2


def test_one_engine_installed_measures_nothing(fake, monkeypatch):
    model, calls, state = fake
    monkeypatch.setattr(choose, "package_version", lambda m: "absent" if m == "openvino" else "1.32")
    monkeypatch.setattr(choose, "candidates", lambda path: [ORT])
    assert choose.choose(model) == ("onnxruntime", "fp32", "auto: onnxruntime fp32, the only engine here")
    choose._choose.cache_clear()
    monkeypatch.setattr(choose, "package_version", lambda m: "absent" if m == "onnxruntime" else "2026.4")
    monkeypatch.setattr(choose, "candidates", lambda path: [OV32, BF16, INT8])
    assert choose.choose(model)[:2] == BF16  # OpenVINO alone: BF16 where validated and native, unmeasured
    assert calls == [] and not list(cache_root().glob("engine-choice/*.json"))


@needs_ort
@needs_torch
def test_the_engines_variable_limits_what_auto_considers(bsrn_s_export, monkeypatch):
    from bsrn_edge._lazy import available

    path = bsrn_s_export.files["onnx"]
    monkeypatch.setenv("BSRN_EDGE_ENGINES", "onnxruntime")  # what the suite runs with (conftest)
    assert choose.candidates(path) == [ORT]
    monkeypatch.setenv("BSRN_EDGE_ENGINES", "openvino")
    engines = choose.candidates(path)
    assert all(b == "openvino" for b, _ in engines) and engines[:1] == ([OV32] if available("openvino") else [])
    monkeypatch.setenv("BSRN_EDGE_ENGINES", "openvino, onnxruntime")
    assert choose.candidates(path)[:2] == ([ORT, OV32] if available("openvino") else [ORT])


@needs_ort
@needs_torch
def test_backend_or_precision_given_means_no_measuring(bsrn_s_export, monkeypatch):
    from bsrn_edge.runtime.open import open_backend

    def refuse(*a, **k):
        raise AssertionError("auto measured although the caller chose")

    monkeypatch.setattr(choose, "choose", refuse)
    path = bsrn_s_export.files["onnx"]
    assert open_backend(path, "onnxruntime").name == "onnxruntime-cpu"
    assert open_backend(path, "auto", precision="fp32").name == "onnxruntime-cpu"
    assert open_backend(path, "auto", precision="fp16").name == "onnxruntime-cpu-fp16"
    assert not hasattr(open_backend(path, "onnxruntime"), "choice")
    with pytest.raises(InputError, match="precision must be"):
        open_backend(path, "auto", precision="int4")


@needs_openvino
@needs_ort
@needs_torch
def test_auto_on_real_engines_picks_caches_and_shows_in_the_header(bsrn_s_export, tmp_path, lr_images, monkeypatch, capsys):
    """The real candidates and timings of this machine: whatever wins must be one of them, timed once, cached, and
    named in bsrn-upscale's header."""
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BSRN_EDGE_ENGINES")
    choose._choose.cache_clear()
    timed = []
    real_time = choose._time_engines
    monkeypatch.setattr(choose, "_time_engines", lambda *a: timed.append(a[1]) or real_time(*a))
    path = tmp_path / "m.onnx"
    path.write_bytes(bsrn_s_export.files["onnx"].read_bytes())
    engines = choose.candidates(path)
    assert engines[:2] == [ORT, OV32]
    src = save_image(lr_images[1], tmp_path / "in.png")
    assert run_upscale("-i", src, "-o", tmp_path / "out.png", "-m", path) == 0
    header = capsys.readouterr().err.splitlines()[0]
    b, p, why = choose.choose(path)
    assert timed == [engines] and f"({why})" in header and why.startswith(("auto picked", "auto kept"))
    assert f"{b} {p}" in why and (b, p) in engines
    choose._choose.cache_clear()
    assert choose.choose(path)[2] == why + "; cached" and len(timed) == 1
    choose._choose.cache_clear()
    from PIL import Image

    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (lr_images[1].shape[0] * 4, lr_images[1].shape[1] * 4, 3)


def test_a_damaged_cached_choice_is_measured_again(fake):
    model, calls, state = fake
    choose.choose(model)
    record = next(cache_root().glob("engine-choice/*.json"))
    record.write_text(json.dumps({"backend": "openvino"}))  # hand-edited, or from another version: not usable
    choose._choose.cache_clear()
    assert choose.choose(model)[:2] == BF16 and len(calls) == 2


def test_engines_that_fail_while_timed_are_dropped_and_a_lone_survivor_is_not_cached(tmp_path, monkeypatch):
    """An engine that opens but fails on its first run (OpenVINO compiles then) is left out; with one engine left
    there is nothing to compare, so it runs and nothing is written to the cache."""
    import bsrn_edge.runtime.open as opener

    class Net:
        def __init__(self, fails: bool):
            self.fails, self.closed = fails, False
            self.meta = type("M", (), {"tile": 8, "pixels": "float"})()

        def infer(self, x):
            if self.fails:
                raise RuntimeError("cannot compile")
            return x

        def close(self):
            self.closed = True

    nets = {"onnxruntime": Net(False), "openvino": Net(True)}
    monkeypatch.setattr(opener, "open_backend", lambda path, backend, *a: nets[backend])
    medians, tile = choose._time_engines(tmp_path / "m.onnx", [ORT, OV32], None)
    assert list(medians) == [ORT] and tile == 8 and all(n.closed for n in nets.values())
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    monkeypatch.setenv("BSRN_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BSRN_EDGE_ENGINES")
    monkeypatch.setattr(choose, "package_version", lambda m: "9.9")
    monkeypatch.setattr(choose, "candidates", lambda path: [ORT, OV32])
    choose._choose.cache_clear()
    b, p, why = choose.choose(model)
    choose._choose.cache_clear()
    assert (b, p) == ORT and "only engine that ran" in why and not list((tmp_path / "cache").rglob("*.json"))


def test_an_int8_sibling_is_a_candidate_only_within_the_default_budget(tmp_path, monkeypatch):
    """A .int8.onnx exported with a looser --max-loss-db than the default never runs unasked."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    from onnx import TensorProto, helper

    from bsrn_edge.meta import INT8_LOSS, INT8_MAX_LOSS_DB

    def write(path, props):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
        helper.set_model_props(model, props)
        onnx.save(model, str(path))

    monkeypatch.delenv("BSRN_EDGE_ENGINES")
    write(tmp_path / "m.onnx", {})
    write(tmp_path / "m.int8.onnx", {INT8_LOSS: f"{5 * INT8_MAX_LOSS_DB}"})
    assert INT8 not in choose.candidates(tmp_path / "m.onnx")
    write(tmp_path / "m.int8.onnx", {INT8_LOSS: f"{INT8_MAX_LOSS_DB * 0.8}"})
    assert INT8 in choose.candidates(tmp_path / "m.onnx")
