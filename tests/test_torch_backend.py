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
