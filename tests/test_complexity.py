"""Complexity counts against the published NTIRE 2022 / BSRN-paper figures and torch's own FLOP counter."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bsrn_edge import InputError, load_model  # noqa: E402
from bsrn_edge.complexity import PUBLISHED, count_complexity  # noqa: E402

# Published rows, copied from the NTIRE 2022 Efficient SR report and the BSRN paper (never from our code):
# params [M], FLOPs [G] on a 256×256 LR input, activations [M], #conv. BSRN-S, IMDN and RFDN are in
# ../shared/REFERENCE.md §3; RLFN is the report's team04 (ByteESR) row.
NTIRE_ROWS = {
    "bsrn-s-x4": (0.156, 9.50, 65.76, 43),
    "imdn": (0.894, 58.53, 154.14, 43),
    "rfdn": (0.433, 27.10, 112.03, 64),
    "rlfn": (0.317, 19.70, 80.05, 39),
}
# BSRN paper, Table 5: Multi-Adds [G] for a 1280×720 output.
PAPER_MULTIADDS = {"bsrn-s-x4": 8.3, "bsrn-x4": 19.4}


@pytest.fixture(scope="module")
def counts():
    """``macs`` counts (with Multi-Adds) for each model, computed once."""
    return {name: count_complexity(load_model(name).model) for name in (*NTIRE_ROWS, "bsrn-x4")}


@pytest.mark.parametrize("name", sorted(NTIRE_ROWS))
def test_params_and_convs_match_exactly(counts, name):
    params, _, _, convs = NTIRE_ROWS[name]
    assert round(counts[name].params / 1e6, 3) == params
    assert counts[name].convs == convs


@pytest.mark.parametrize("name", sorted(NTIRE_ROWS))
def test_activations_match(counts, name):
    acts = NTIRE_ROWS[name][2]
    assert counts[name].acts == pytest.approx(acts * 1e6, rel=0.005)
    assert round(counts[name].acts / 1e6, 2) == acts  # in fact exact to the published digits


@pytest.mark.parametrize("name", sorted(NTIRE_ROWS))
def test_flops_within_one_percent(counts, name):
    flops = NTIRE_ROWS[name][1]
    assert counts[name].flops == pytest.approx(flops * 1e9, rel=0.01)
    assert counts[name].flops < flops * 1e9  # plain MACs: the published counters add a little on top


@pytest.mark.parametrize("name", sorted(NTIRE_ROWS))
def test_published_flops_reproduced_under_the_counter_that_made_them(name):
    flops = NTIRE_ROWS[name][1]
    convention = PUBLISHED[name].convention
    c = count_complexity(load_model(name).model, convention=convention, multiadds_720p=False)
    assert round(c.flops / 1e9, 2) == flops, f"{name} under {convention}: {c.flops / 1e9:.4f} G"


@pytest.mark.parametrize("name", sorted(PAPER_MULTIADDS))
def test_multiadds_720p(counts, name):
    paper = PAPER_MULTIADDS[name] * 1e9
    assert counts[name].multiadds_720p == pytest.approx(paper, rel=0.012)
    c = count_complexity(load_model(name).model, convention="conv_bias")
    assert round(c.multiadds_720p / 1e9, 1) == PAPER_MULTIADDS[name]


def test_published_table_holds_the_published_rows():
    for name, (params, flops, acts, convs) in NTIRE_ROWS.items():
        row = PUBLISHED[name]
        assert (row.params, row.flops, row.acts, row.convs) == pytest.approx((params * 1e6, flops * 1e9, acts * 1e6, convs))
    for name, madds in PAPER_MULTIADDS.items():
        assert PUBLISHED[name].multiadds_720p == pytest.approx(madds * 1e9)


@pytest.mark.parametrize("name", ["bsrn-s-x4", "rfdn"])
def test_flops_agree_with_torch_flop_counter(lr_batch, name):
    """torch counts 2 FLOPs per MAC for conv, addmm, mm and bmm; BSRN-S exercises its Linear layers."""
    torch.set_num_threads(2)
    model = load_model(name).model
    x = torch.from_numpy(np.ascontiguousarray(lr_batch))  # 2×3×48×48 crops of Set5
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    ours = count_complexity(model, tuple(x.shape), multiadds_720p=False)
    assert counter.get_total_flops() == 2 * ours.flops


class _Toy(nn.Module):
    """A conv module, a grouped functional conv and a Linear over channels: MACs known by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Parameter(torch.ones(8, 2, 3, 3))
        self.lin = nn.Linear(8, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = nn.functional.conv2d(y, self.dw, stride=2, groups=4)  # 8 → 8 channels, 10×10 → 4×4
        return self.lin(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_hand_counted_toy():
    c = count_complexity(_Toy(), (1, 3, 10, 10), convention="ntire")
    conv = 8 * 10 * 10 * 27
    grouped = 8 * 4 * 4 * (2 * 9)
    linear = 4 * 4 * 4 * 8
    relu = 8 * 10 * 10
    assert c.flops == conv + grouped + linear + relu
    assert (c.acts, c.convs, c.params) == (800 + 128, 2, 8 * 27 + 8 + 8 * 18 + 32)
    assert c.multiadds_720p is None  # the output is smaller than the input: no upscale factor
    assert count_complexity(_Toy(), (1, 3, 10, 10)).flops == conv + grouped + linear


class _NoMeta(nn.Module):
    """Reads a value (impossible on the meta device), so the counter must fall back to a real pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if float(y.abs().sum()) < 0:
            y = -y
        return self.shuffle(y)


def test_falls_back_to_a_real_pass():
    c = count_complexity(_NoMeta(), (1, 3, 16, 16))
    assert c.flops == 12 * 16 * 16 * 27
    assert c.multiadds_720p == 12 * 360 * 640 * 27  # ×2: a 640×360 input gives 1280×720


def test_bad_arguments_are_refused():
    with pytest.raises(InputError, match="four positive ints"):
        count_complexity(_Toy(), (3, 64, 64))
    with pytest.raises(InputError, match="convention"):
        count_complexity(_Toy(), convention="thop")  # type: ignore[arg-type]
