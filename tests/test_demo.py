"""bsrn-demo, the README's headline command, end to end: export request, upscaled file, bench table.

The export step reuses the session's BSRN-S export (``bsrn_s_export``, FP32 + FP16, the same
``export_checkpoint`` the demo calls) instead of exporting a second time; the test checks that the
demo asks for exactly that export. Steps 2 and 3 run for real with one timed run per row.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import pytest
from conftest import needs_ort, needs_torch
from PIL import Image

pytestmark = [needs_torch, needs_ort]

from bsrn_edge.bench.demo import main  # noqa: E402
from bsrn_edge.datasets import bundled_set5, find_pairs  # noqa: E402

# BSRN-S ×4 on Set5, Y channel, border 4: the paper's Table 5 (../shared/REFERENCE.md §2). The FP16 ONNX
# loses nothing measurable on real images (REFERENCE.md §5), so every row must show it.
PAPER_SET5_Y = 32.16
ROW = re.compile(r"^\| (?P<label>[^|]+?) \| (?P<psnr>[\d.]+) \| (?P<ms>\d+) \| (?P<speedup>[\d.]+)× \|$")


@pytest.fixture(scope="module")
def demo_run(bsrn_s_export, tmp_path_factory):
    """One in-process ``bsrn-demo --runs 1`` with the export step served by the session's export."""
    import bsrn_edge.export.pipeline as pipeline

    out = tmp_path_factory.mktemp("demo_out")
    asked: list[tuple] = []

    def reuse_export(ckpt, out_dir, opts, report=print):  # type: ignore[no-untyped-def]
        asked.append((ckpt, out_dir, opts.fp16, opts.force))
        return bsrn_s_export

    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "export_checkpoint", reuse_export)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(["--out", str(out), "--runs", "1"])
    finally:
        mp.undo()
    return rc, stdout.getvalue(), stderr.getvalue(), out, asked


@pytest.mark.slow
def test_demo_asks_for_the_fp16_export_into_its_out_folder(demo_run):
    rc, text, err, out, asked = demo_run
    assert rc == 0, err
    assert asked == [("bsrn-s-x4", out, True, True)]
    assert text.splitlines()[0] == "== 1. export bsrn-s-x4"
    assert "bsrn-s-x4.onnx: max |ONNX-PyTorch|" in text and "bsrn-s-x4.fp16.onnx: max |ONNX-PyTorch|" in text


@pytest.mark.slow
def test_demo_writes_the_upscaled_image_at_four_times_the_size(demo_run):
    rc, text, err, out, _ = demo_run
    assert rc == 0, err
    pair = find_pairs(bundled_set5(), 4)[2]
    with Image.open(pair.lr) as lr, Image.open(out / f"{pair.name}_x4.png") as sr:
        assert sr.size == (lr.size[0] * 4, lr.size[1] * 4) and sr.mode == "RGB"
    assert f"→ {out / f'{pair.name}_x4.png'}" in text


@pytest.mark.slow
def test_demo_table_shows_the_papers_set5_figure_for_every_backend(demo_run):
    rc, text, err, _, _ = demo_run
    assert rc == 0, err
    rows = [m.groupdict() for m in map(ROW.match, text.splitlines()) if m]
    assert [r["label"] for r in rows] == ["PyTorch fp32 eager", "ONNX Runtime fp32", "ONNX Runtime fp16"]
    for r in rows:
        assert float(r["psnr"]) == pytest.approx(PAPER_SET5_Y, abs=0.01), r
        assert int(r["ms"]) > 0
    assert rows[0]["speedup"] == "1.00"  # PyTorch against itself
    assert "| bsrn-s-x4 backend | Set5 PSNR-Y [dB] | 320×180→1280×720 median [ms] |" in text


def test_console_entry_point_refuses_zero_runs():
    proc = subprocess.run([sys.executable, "-m", "bsrn_edge.bench.demo", "--runs", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--runs must be at least 1" in proc.stderr
