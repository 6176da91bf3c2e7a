"""Reproduce REFERENCE.md §2 (PSNR/SSIM on Y, border = scale) for every bundled checkpoint.

The expected figures are the independent measurements recorded in ../shared/REFERENCE.md, which
agree with the paper's Table 5; bundled Set5 ×4 always runs, the rest only where ../shared/data is.
"""

from __future__ import annotations

import pytest
from conftest import needs_torch, shared

pytestmark = needs_torch
torch = pytest.importorskip("torch")

from bsrn_edge import load_model  # noqa: E402
from bsrn_edge.datasets import bundled_set5  # noqa: E402
from bsrn_edge.evaluate import evaluate, torch_upscale_fn  # noqa: E402

# (model, dataset, scale) -> (PSNR, SSIM), from REFERENCE.md §2
EXPECTED = {
    ("bsrn-x4", "Set5", 4): (32.35, 0.8965),
    ("bsrn-x4", "Set14", 4): (28.74, 0.7847),
    ("bsrn-x4", "B100", 4): (27.65, 0.7386),
    ("bsrn-x4", "Urban100", 4): (26.64, 0.8086),
    ("bsrn-s-x4", "Set5", 4): (32.16, 0.8949),
    ("bsrn-s-x4", "Set14", 4): (28.64, 0.7820),
    ("bsrn-s-x4", "B100", 4): (27.58, 0.7364),
    ("bsrn-s-x4", "Urban100", 4): (26.46, 0.8036),
    ("bsrn-x3", "Set5", 3): (34.45, 0.9276),
    ("bsrn-x3", "Set14", 3): (30.47, 0.8449),
    ("bsrn-x2", "Set5", 2): (38.08, 0.9608),
    ("bsrn-x2", "Set14", 2): (33.73, 0.9193),
    ("bsrn-s-x4-ntire", "Set5", 4): (32.01, 0.8927),
    ("bsrn-s-x4-ntire", "Set14", 4): (28.59, 0.7810),
    ("bsrn-s-x4-ntire", "B100", 4): (27.55, 0.7351),
    ("bsrn-s-x4-ntire", "Urban100", 4): (26.43, 0.8005),
}

_SLOW = {"B100", "Urban100"}


def _cases():
    for key in EXPECTED:
        marks = [pytest.mark.slow] if key[1] in _SLOW else []
        yield pytest.param(*key, marks=marks, id="-".join(map(str, key)))


@pytest.mark.parametrize("name,dataset,scale", list(_cases()))
def test_reproduces_reference_table(name, dataset, scale):
    if dataset == "Set5" and scale == 4:
        folder = bundled_set5()
    else:
        folder = shared(dataset, f"x{scale}")
    torch.set_num_threads(2)
    model = load_model(name).model
    scores = evaluate(torch_upscale_fn(model), folder, scale)
    psnr, ssim = EXPECTED[(name, dataset, scale)]
    # the table is rounded to 0.01 dB / 0.0001: allow that rounding plus the tolerance
    assert abs(scores.psnr_y - psnr) <= 0.01 + 0.005, f"PSNR {scores.psnr_y:.4f} vs {psnr}"
    assert abs(scores.ssim_y - ssim) <= 0.0005, f"SSIM {scores.ssim_y:.5f} vs {ssim}"
