"""The optional PyTorch backend: CPU here, CUDA fp16 + CUDA graphs where a GPU exists."""

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = needs_torch
torch = pytest.importorskip("torch")

from bsrn_edge.errors import InputError  # noqa: E402
from bsrn_edge.runtime.backends.torch import TorchBackend  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_fp32_matches_the_authors_structure(lr_batch):
    from bsrn_edge import load_model

    be = TorchBackend("bsrn-s-x4")
    with torch.no_grad():
        ref = load_model("bsrn-s-x4").model(torch.from_numpy(lr_batch)).numpy()
    assert np.abs(be.infer(lr_batch) - ref).max() <= 1e-5


def test_fp16_on_cpu_is_refused_with_a_hint():
    with pytest.raises(InputError, match="CUDA"):
        TorchBackend("bsrn-s-x4", precision="fp16")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("graph", [False, True])
def test_cuda_fp16_close_to_fp32(lr_batch, graph):
    fp32 = TorchBackend("bsrn-s-x4", device="cuda")
    fp16 = TorchBackend("bsrn-s-x4", device="cuda", precision="fp16", cuda_graph=graph)
    a, b = fp32.infer(lr_batch), fp16.infer(lr_batch)
    assert np.abs(a - b).max() < 0.02
    np.testing.assert_array_equal(fp16.infer(lr_batch), b)  # replay gives the same result


def test_graphs_and_compiled_kernels_only_for_the_first_few_small_shapes(lr_batch, monkeypatch):
    """A one-off large image runs eager: no graph capture or inductor compile for it (see ACCELERATED_MAX_PIXELS)."""
    import bsrn_edge.runtime.backends.torch as tb

    be = TorchBackend("bsrn-s-x4")
    monkeypatch.setattr(tb, "ACCELERATED_MAX_PIXELS", 2 * 40 * 40)
    monkeypatch.setattr(tb, "ACCELERATED_MAX_SHAPES", 2)
    compiled: list[tuple[int, ...]] = []

    def fake_compiled(t):  # stands in for torch.compile's module: records the shapes it is given
        compiled.append(tuple(t.shape))
        return be.model(t)

    be.mode, be._net = "compile", fake_compiled
    x = torch.from_numpy(lr_batch)  # 2×3×48×48: over the pixel limit
    eager = be.forward_tensor(x)
    assert compiled == []
    small = x[:, :, :40, :40]
    be.forward_tensor(small)
    be.forward_tensor(x[:1, :, :30, :30])
    be.forward_tensor(x[:1, :, :20, :20])  # a third small shape: over the shape limit, eager
    be.forward_tensor(small)
    assert compiled == [(2, 3, 40, 40), (1, 3, 30, 30), (2, 3, 40, 40)]
    np.testing.assert_array_equal(be.forward_tensor(x).numpy(), eager.numpy())
