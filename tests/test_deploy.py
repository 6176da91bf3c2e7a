"""The deploy form computes the same function as the authors' structure, on real images."""

import pytest
from conftest import needs_torch

pytestmark = needs_torch
torch = pytest.importorskip("torch")

from bsrn_edge import load_model  # noqa: E402
from bsrn_edge.evaluate import to_nchw  # noqa: E402
from bsrn_edge.models.deploy import to_deploy  # noqa: E402
from bsrn_edge.models.layers import ChannelLinear, SplitPointwise  # noqa: E402


@pytest.mark.parametrize("name", ["bsrn-x2", "bsrn-x3", "bsrn-x4", "bsrn-s-x4", "bsrn-s-x4-ntire"])
def test_deploy_matches_original_on_real_images(name, lr_images):
    original = load_model(name).model
    deploy = to_deploy(original)
    assert not any(isinstance(m, ChannelLinear) for m in deploy.modules())
    assert deploy.fea_conv.pw.in_channels == 3
    assert not any(n.endswith(".cw") for n, _ in deploy.named_parameters())
    assert isinstance(deploy.c1, SplitPointwise) and isinstance(deploy.B1.c5, SplitPointwise)
    with torch.no_grad():
        for img in lr_images[:3]:
            x = torch.from_numpy(to_nchw(img))
            diff = (original(x) - deploy(x)).abs().max().item()
            assert diff <= 1e-5, f"{name}: max abs diff {diff}"


def test_deploy_leaves_the_original_untouched():
    m = load_model("bsrn-s-x4").model
    before = {k: v.clone() for k, v in m.state_dict().items()}
    to_deploy(m)
    after = m.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_split_pointwise_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="cannot split"):
        SplitPointwise(torch.nn.Conv2d(8, 4, 3), [4, 4])
    with pytest.raises(ValueError, match="cannot split"):
        SplitPointwise(torch.nn.Conv2d(8, 4, 1), [4, 3])
