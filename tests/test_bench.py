"""bsrn-bench: JSON keys and types, PSNR equal to evaluate(), csv/md parse, argument errors, DIV2K naming,
a failing backend, the TensorRT note, the memory measurement against a known allocation, the timing loop
against a scripted clock, and /proc/cpuinfo parsing. Tiny runs only (--runs 1, 64×64); no timed asserts."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import needs_ort, needs_torch

pytestmark = [needs_torch, needs_ort]

from bsrn_edge import hostinfo  # noqa: E402
from bsrn_edge._lazy import available  # noqa: E402
from bsrn_edge.bench import (  # noqa: E402
    BenchRow,
    bench_input,
    cpu_peak_rss_increase_mb,
    cuda_event_clock,
    parse_size,
    rows_to_markdown,
    time_calls,
)
from bsrn_edge.bench import run as bench_run  # noqa: E402
from bsrn_edge.bench.cli import main  # noqa: E402
from bsrn_edge.datasets import bundled_set5, find_pairs  # noqa: E402
from bsrn_edge.errors import InputError  # noqa: E402

KEYS = ("model", "backend", "precision", "device", "psnr_y", "psnr_rgb", "params_m", "flops_g",
        "multiadds_720p_g", "acts_m", "convs", "mem_mb", "runtime_ms_median", "runtime_ms_mean")
TINY = ["--models", "bsrn-s-x4", "--runs", "1", "--warmup", "0", "--size", "64x64"]
PAIR_NAMES = ("img_002", "img_003")  # the two smallest bundled Set5 pairs


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def set5_pairs(names: tuple[str, ...] = PAIR_NAMES):
    return [p for p in find_pairs(bundled_set5(), 4) if p.name in names]


def torch_scores(data):
    from bsrn_edge import load_model
    from bsrn_edge.evaluate import evaluate, torch_upscale_fn

    return evaluate(torch_upscale_fn(load_model("bsrn-s-x4").model), data, 4, ssim=False)


@pytest.fixture(scope="module")
def two_pairs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("two_pairs")
    for p in set5_pairs():
        shutil.copy(p.lr, d / p.lr.name)
        shutil.copy(p.hr, d / p.hr.name)
    return d


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench_cache")


@pytest.fixture(scope="module")
def json_run(two_pairs, cache):
    rc, out, err = run_cli(*TINY, "--backends", "torch,onnxruntime", "--data", str(two_pairs),
                           "--cache-dir", str(cache), "--format", "json")
    return rc, json.loads(out), err


def test_json_keys_and_types(json_run):
    rc, rows, err = json_run
    assert rc == 0, err
    assert isinstance(rows, list) and [(r["model"], r["backend"]) for r in rows] == [
        ("bsrn-s-x4", "torch"), ("bsrn-s-x4", "onnxruntime")]
    for r in rows:
        assert set(KEYS) <= set(r)
        assert r["status"] == "ok" and r["precision"] == "fp32" and r["device"] == "cpu" and r["images"] == 2
        for k in ("psnr_y", "psnr_rgb", "params_m", "flops_g", "multiadds_720p_g", "acts_m", "mem_mb",
                  "runtime_ms_median", "runtime_ms_mean"):
            assert isinstance(r[k], float) and math.isfinite(r[k]), k
        assert isinstance(r["convs"], int) and r["convs"] == 43
        assert r["runtime_ms_median"] > 0 and r["runtime_ms_mean"] > 0  # mem_mb: see the known-allocation test
        # complexity is the network's whatever the backend; published figures ride along. 0.156 M params,
        # 9.50 G FLOPs and 43 convs are the NTIRE 2022 report's row (REFERENCE.md §3); 9.43 G is the plain
        # MAC count that REFERENCE.md §3 gives for the authors' structure (the NTIRE counter adds biases)
        assert r["params_m"] == pytest.approx(0.156, abs=5e-4) and r["params_m_published"] == pytest.approx(0.156)
        assert r["flops_g"] == pytest.approx(9.43, abs=0.01) and r["flops_g_published"] == pytest.approx(9.50)
    assert rows[0]["flops_g"] == rows[1]["flops_g"] and rows[0]["acts_m"] == rows[1]["acts_m"]
    assert "machine:" in err and "threads:" in err  # the json header goes to stderr


def test_psnr_equals_evaluate(json_run, two_pairs):
    _, rows, _ = json_run
    ref = torch_scores(two_pairs)
    torch_row, ort_row = rows
    assert torch_row["psnr_y"] == pytest.approx(ref.psnr_y, abs=1e-9)
    assert torch_row["psnr_rgb"] == pytest.approx(ref.psnr_rgb, abs=1e-9)
    # the ONNX deploy form is the same network up to float rounding
    assert ort_row["psnr_y"] == pytest.approx(ref.psnr_y, abs=0.01)
    assert ort_row["psnr_rgb"] == pytest.approx(ref.psnr_rgb, abs=0.01)


def test_markdown_parses(json_run):
    _, rows, _ = json_run
    text = rows_to_markdown([BenchRow(**r) for r in rows], ["machine: test box", "a -- b"])
    lines = text.splitlines()
    assert lines[0] == "<!-- machine: test box -->" and lines[1] == "<!-- a - b -->"
    table = [ln for ln in lines if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
    assert len(cells) == 2 + len(rows) and len({len(c) for c in cells}) == 1
    assert cells[0][0] == "Model" and "Runtime median [ms]" in cells[0]
    head = cells[0]
    assert cells[2][head.index("Params [M]")] == "0.156 (0.156)"
    assert cells[2][head.index("#Conv")] == "43 (43)"


def test_failing_backend_gives_a_row_note_and_csv_parses(two_pairs, cache, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated backend failure")

    monkeypatch.setattr(bench_run, "OrtRunner", boom)
    out_file = tmp_path / "bench.csv"
    rc, out, err = run_cli(*TINY, "--backends", "onnxruntime,torch", "--data", str(two_pairs),
                           "--cache-dir", str(cache), "--format", "csv", "--out", str(out_file))
    assert rc == 1 and out == ""
    assert "bsrn-s-x4/onnxruntime" in err and "simulated backend failure" in err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert [r["backend"] for r in rows] == ["onnxruntime", "torch"]
    failed, ok = rows
    assert failed["status"] == "failed" and "simulated backend failure" in failed["note"]
    assert failed["runtime_ms_median"] == "" and failed["params_m"] != ""  # complexity is still the model's
    assert ok["status"] == "ok" and float(ok["psnr_y"]) > 25 and int(ok["convs"]) == 43
    assert set(KEYS) <= set(rows[0])


def test_data_accepts_div2k_naming(tmp_path):
    pair = set5_pairs(("img_002",))[0]
    shutil.copy(pair.hr, tmp_path / "0801.png")
    shutil.copy(pair.lr, tmp_path / "0801x4.png")
    rc, out, err = run_cli(*TINY, "--backends", "torch", "--data", str(tmp_path), "--format", "json")
    assert rc == 0, err
    (row,) = json.loads(out)
    ref = torch_scores([pair])
    assert row["images"] == 1 and row["psnr_y"] == pytest.approx(ref.psnr_y, abs=1e-9)


@pytest.mark.skipif(available("tensorrt"), reason="TensorRT is installed here: the row would run, not skip")
def test_tensorrt_absent_gives_a_note_not_a_crash():
    rc, out, err = run_cli(*TINY, "--backends", "tensorrt", "--format", "json")
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "skipped" and "TensorRT" in row["note"] and row["runtime_ms_median"] is None
    assert "bsrn-s-x4/tensorrt" in err and "TensorRT" in err


@pytest.mark.skipif(not available("openvino"), reason="openvino not installed (extra 'openvino')")
def test_openvino_rows_beside_onnx_runtime_with_the_cpu_flags_in_the_header(two_pairs, cache, json_run):
    from bsrn_edge.runtime.backends.openvino import native_bf16

    rc, out, err = run_cli(*TINY, "--backends", "openvino,openvino-bf16", "--data", str(two_pairs),
                           "--cache-dir", str(cache), "--format", "json")
    assert rc == 0, err
    fp32, bf16 = json.loads(out)
    ort_row = json_run[1][1]
    assert (fp32["backend"], fp32["precision"], fp32["status"]) == ("openvino", "fp32", "ok")
    assert fp32["psnr_y"] == pytest.approx(ort_row["psnr_y"], abs=1e-4)  # the same FP32 network, another engine
    if native_bf16():
        assert (bf16["precision"], bf16["status"]) == ("bf16", "ok")
        assert 0 < abs(bf16["psnr_y"] - fp32["psnr_y"]) <= 0.1  # BF16 runs, a few hundredths of a dB off
    else:
        assert bf16["status"] == "skipped" and "native BF16" in bf16["note"]
    assert f"({hostinfo.cpu_isa()})" in err and "openvino" in err.split("versions:")[1].splitlines()[0]


def test_openvino_rows_say_why_they_cannot_run(monkeypatch):
    import bsrn_edge._lazy as lazy
    from bsrn_edge.bench.artifacts import ov_unavailable

    assert "--device cpu" in ov_unavailable("openvino", "cuda")
    monkeypatch.setattr(lazy, "available", lambda name: name != "openvino")
    assert ov_unavailable("openvino-bf16", "cpu") == "openvino is not installed (pip install 'bsrn-edge[openvino]')"
    monkeypatch.setattr(lazy, "available", lambda name: name != "nncf")
    if available("openvino"):
        assert "bsrn-edge[int8]" in ov_unavailable("openvino-int8", "cpu")
        assert ov_unavailable("openvino", "cpu") is None


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--size", "256by256"], "WIDTHxHEIGHT"),
        (["--size", "8x8"], "use --size 15x15 or more"),
        (["--models", "bsrn-s-x4,esrgan"], "valid names: bsrn-x2"),
        (["--backends", "torch,ncnn"], "valid backends: torch, onnxruntime, onnxruntime-fp16, tensorrt, openvino, "
                                        "openvino-bf16, openvino-int8"),
        (["--data", "/nonexistent/bench-data"], "not a directory"),
        (["--runs", "0"], "--runs must be at least 1"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(argv, expected):
    rc, out, err = run_cli(*argv)
    assert rc == 2 and out == ""
    assert "bsrn-bench: error:" in err and expected in err


def test_empty_data_dir_and_console_entry_point(tmp_path):
    rc, _, err = run_cli("--data", str(tmp_path))
    assert rc == 2 and "found no LR/HR pairs" in err
    proc = subprocess.run([sys.executable, "-m", "bsrn_edge.bench.cli", "--backends", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "valid backends" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "bsrn_edge.bench.cli", "--device", "tpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_bench_input_is_a_real_image_mirrored_to_size():
    x = bench_input((100, 40))
    assert x.shape == (1, 3, 40, 100) and x.dtype == np.float32
    assert np.array_equal(x, bench_input((100, 40)))
    assert np.array_equal(bench_input((300, 300))[..., :128, :128], bench_input((128, 128)))
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05


def _touch_mb(n: int):
    """A call that allocates ``n`` MiB, writes every page of it, and frees it before returning."""
    def call() -> int:
        a = np.ones(n * 2**20, np.uint8)
        return int(a[::4096].sum())  # every page written by ones(), read back here

    return call


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the exact VmHWM method needs Linux /proc")
def test_cpu_peak_rss_reports_a_known_allocation():
    mb, note = cpu_peak_rss_increase_mb(_touch_mb(96))
    assert note == ""  # the exact method, not the ru_maxrss lower bound
    # 96 MiB touched inside the call (freed before it returns): the peak counts it, plus a little interpreter noise
    assert 96 * 0.95 <= mb <= 96 + 16, mb
    idle, _ = cpu_peak_rss_increase_mb(lambda: None)
    assert idle < 8, idle  # nothing allocated: the peak was reset just before the call


def test_time_calls_warms_up_then_times_each_call_with_its_clock():
    calls: list[str] = []
    ticks = iter([5.0, 1.0, 3.0, 100.0])  # a scripted clock: one reading per timed call

    def fn() -> None:
        calls.append("fn")

    def clock(f) -> float:  # type: ignore[no-untyped-def]
        calls.append("tick")
        f()
        return next(ticks)

    t = time_calls(fn, runs=4, warmup=2, clock=clock)
    assert calls == ["fn", "fn"] + ["tick", "fn"] * 4  # warm-up untimed, then each run timed once
    assert t.times_ms == (5.0, 1.0, 3.0, 100.0)
    # hand-computed: median of {1, 3, 5, 100} = (3 + 5) / 2; mean = 109 / 4; nearest-rank p95 of 4 = the largest
    assert (t.median, t.mean, t.p95) == (4.0, 27.25, 100.0)
    with pytest.raises(ValueError, match="runs >= 1"):
        time_calls(fn, runs=0)


def test_cuda_event_clock_records_around_the_call_and_synchronises():
    log: list[str] = []

    names = iter(["start", "end"])  # cuda_event_clock makes its two events in this order

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing
            self.name = next(names)

        def record(self) -> None:
            log.append(f"record {self.name}")

        def elapsed_time(self, other: "Event") -> float:
            log.append(f"elapsed {self.name}->{other.name}")
            return 2.5

    fake_torch = SimpleNamespace(cuda=SimpleNamespace(Event=Event, synchronize=lambda: log.append("synchronize")))
    t = time_calls(lambda: log.append("forward"), runs=1, warmup=0, clock=cuda_event_clock(fake_torch))
    assert t.times_ms == (2.5,)
    assert log == ["record start", "forward", "record end", "synchronize", "elapsed start->end"]


def test_physical_cores_counts_core_ids_not_hyperthreads(tmp_path, monkeypatch):
    # two sockets × two cores × two hyper-threads: 8 logical CPUs, 4 physical cores (counted by hand)
    blocks = [f"processor\t: {i}\nmodel name\t: Test CPU 9000\nphysical id\t: {i // 4}\ncore id\t\t: {i % 2}\n"
              for i in range(8)]
    fake = tmp_path / "cpuinfo"
    fake.write_text("\n".join(blocks) + "\n")
    monkeypatch.setattr(hostinfo, "_CPUINFO", str(fake))
    monkeypatch.setattr(hostinfo, "usable_cores", lambda: 8)
    assert hostinfo.physical_cores() == 4 and hostinfo.cpu_model() == "Test CPU 9000"
    monkeypatch.setattr(hostinfo, "usable_cores", lambda: 3)  # affinity caps it
    assert hostinfo.physical_cores() == 3
    monkeypatch.setattr(hostinfo, "_CPUINFO", str(tmp_path / "absent"))
    assert hostinfo.physical_cores() == 3 and hostinfo.cpu_model()  # no file: the usable cores
    arm = tmp_path / "arm"  # an ARM board's cpuinfo names processors, not cores (no hyper-threads)
    arm.write_text("".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n" for i in range(4)))
    monkeypatch.setattr(hostinfo, "_CPUINFO", str(arm))
    monkeypatch.setattr(hostinfo, "usable_cores", lambda: 4)
    assert hostinfo.physical_cores() == 4  # not half of them


def test_cpu_flags_and_the_isa_that_decides_the_kernels(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"  # an x86 line as Linux writes it (abridged), then an ARM one
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile hypervisor\n\n")
    monkeypatch.setattr(hostinfo, "_CPUINFO", str(fake))
    assert "amx_tile" in hostinfo.cpu_flags() and "sse2" in hostinfo.cpu_flags()
    assert hostinfo.cpu_isa() == "avx2 fma avx512f avx512_bf16 amx_bf16"  # hostinfo.ISA_FLAGS order, others left out
    fake.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp bf16 i8mm sve\n\n")
    assert hostinfo.cpu_isa() == "asimd asimddp sve bf16 i8mm"
    monkeypatch.setattr(hostinfo, "_CPUINFO", str(tmp_path / "absent"))
    assert hostinfo.cpu_flags() == frozenset() and hostinfo.cpu_isa().startswith("none of")


def test_parse_size():
    assert parse_size("320x180") == (320, 180) and parse_size("64") == (64, 64) and parse_size("64×48") == (64, 48)
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        parse_size("0x")


def test_make_docs_keeps_text_outside_the_markers():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "make_docs.py"
    spec = importlib.util.spec_from_file_location("make_docs", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = f"# Benchmarks\n\nintro\n\n{mod.START}\nold table\n{mod.END}\n\n## GPU (by hand)\nkept\n"
    new = mod.splice(page, f"{mod.START}\nnew table\n{mod.END}")
    assert new == f"# Benchmarks\n\nintro\n\n{mod.START}\nnew table\n{mod.END}\n\n## GPU (by hand)\nkept\n"
    assert mod.splice(new, f"{mod.START}\nnew table\n{mod.END}") == new
    assert mod.splice("# page\n", "S") == "# page\n\nS\n"  # no markers yet: appended
    with pytest.raises(Exception, match="markers are damaged"):
        mod.splice(f"{mod.END}\n{mod.START}\n", "S")
