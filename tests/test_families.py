"""One object per architecture family: our detector, the registry and the spandrel adapter agree with it."""

from __future__ import annotations

import pytest
from conftest import needs_torch

from bsrn_edge.variants import BUNDLED_NAMES, VARIANTS, bundled_checkpoint

pytestmark = needs_torch


@pytest.fixture(scope="module")
def state_dicts() -> dict[str, dict]:
    from bsrn_edge.checkpoint import read_state_dict

    return {name: read_state_dict(bundled_checkpoint(name)) for name in BUNDLED_NAMES}


def test_each_bundled_checkpoint_is_its_familys_and_no_others(state_dicts: dict[str, dict]) -> None:
    from bsrn_edge.models.registry import ARCHS

    for name, sd in state_dicts.items():
        variant = VARIANTS[name]
        found = {arch: fam.detect(sd) for arch, fam in ARCHS.items() if fam.keys(sd)}
        assert list(found) == [variant.arch], name  # the name test alone already tells the families apart
        assert found[variant.arch] == variant.kwargs, name  # and the shapes give the registry's hyper-parameters


def test_the_registry_takes_its_size_rules_from_the_families() -> None:
    from bsrn_edge.models.registry import ARCHS

    for v in VARIANTS.values():
        assert v.min_size == ARCHS[v.arch].min_size, v.name
        assert v.sizes == ARCHS[v.arch].sizes


def test_spandrels_key_test_is_derived_from_ours(state_dicts: dict[str, dict]) -> None:
    pytest.importorskip("spandrel")
    from bsrn_edge.integrations.spandrel import ARCHITECTURES
    from bsrn_edge.models.registry import FAMILIES

    by_id = {support.architecture.id: support for support in ARCHITECTURES}
    assert [f.id for f in FAMILIES] == list(by_id)
    for name, sd in state_dicts.items():
        for family in FAMILIES:
            assert bool(by_id[family.id].detect(sd)) == family.keys(sd), (name, family.id)
    # RLFN's names are a subset of RFDN's: only our exclusions keep spandrel from taking RFDN as RLFN
    assert not by_id["RLFN"].detect(state_dicts["rfdn"])
