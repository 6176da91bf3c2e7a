"""The spandrel plugin: spandrel loads every bundled checkpoint after install(), and runs it as we do.

Most tests install into a copy of spandrel's MAIN_REGISTRY so the global registry stays untouched;
one test checks the default global install (and puts the global registry back afterwards).
"""

from __future__ import annotations

import functools
import importlib
import sys

import pytest

spandrel = pytest.importorskip("spandrel")
torch = pytest.importorskip("torch")

from bsrn_edge import CheckpointError, MissingDependencyError, load_model  # noqa: E402
from bsrn_edge.checkpoint import read_state_dict  # noqa: E402
from bsrn_edge.datasets import find_pairs  # noqa: E402
from bsrn_edge.evaluate import evaluate, torch_upscale_fn  # noqa: E402
from bsrn_edge.integrations.spandrel import ARCHITECTURES, FAMILIES, install  # noqa: E402
from bsrn_edge.variants import BUNDLED_NAMES, VARIANTS, bundled_checkpoint  # noqa: E402

OUR_IDS = {"bsrn": "BSRN", "imdn": "IMDN", "rfdn": "RFDN", "rlfn": "RLFN"}
MODULE = "bsrn_edge.integrations.spandrel"


@pytest.fixture(scope="module")
def registry():
    """A copy of spandrel's main registry with our architectures added."""
    reg = spandrel.MAIN_REGISTRY.copy()
    install(reg)
    return reg


@pytest.fixture(scope="module")
def loader(registry):
    return spandrel.ModelLoader(registry=registry)


@pytest.fixture(scope="module")
def descriptor(loader):
    """name -> the bundled checkpoint loaded through spandrel (each loaded once)."""
    return functools.cache(lambda name: loader.load_from_file(bundled_checkpoint(name)))


@pytest.fixture(scope="module")
def state_dicts():
    return {name: read_state_dict(bundled_checkpoint(name)) for name in BUNDLED_NAMES}


@pytest.fixture(scope="module")
def crop(lr_batch):
    """One real Set5 LR crop, 1×3×48×48 in [0, 1]."""
    return torch.from_numpy(lr_batch[:1].copy())


def _builtin_registry():
    """spandrel's built-in architectures only (even if something installed ours globally)."""
    reg = spandrel.ArchRegistry()
    reg.add(*(a for a in spandrel.MAIN_REGISTRY if a.architecture.id not in OUR_IDS.values()))
    return reg


def test_every_bundled_checkpoint_is_covered():
    expected = {"bsrn-x2", "bsrn-x3", "bsrn-x4", "bsrn-s-x4", "bsrn-s-x4-ntire", "imdn", "rfdn", "rlfn"}
    assert set(BUNDLED_NAMES) == expected


# -- install ------------------------------------------------------------------------------------------

def test_install_adds_one_architecture_per_family_without_clashing_ids():
    builtin_ids = {a.architecture.id for a in _builtin_registry()}
    assert not builtin_ids & set(OUR_IDS.values()), "an id clashes with a spandrel built-in"
    reg = spandrel.MAIN_REGISTRY.copy()
    before = len(reg)
    added = install(reg)
    assert sorted(a.architecture.id for a in added) == sorted(OUR_IDS.values())
    assert len(reg) == before + 4
    assert all(a in reg for a in OUR_IDS.values())


def test_install_twice_is_harmless():
    reg = spandrel.MAIN_REGISTRY.copy()
    install(reg)
    size = len(reg)
    assert install(reg) == []
    assert len(reg) == size
    with pytest.raises(spandrel.DuplicateArchitectureError):
        install(reg, ignore_duplicates=False)
    assert len(reg) == size


def test_install_rejects_a_wrong_registry_argument():
    with pytest.raises(TypeError, match="ArchRegistry"):
        install("MAIN_REGISTRY")  # type: ignore[arg-type]


def test_a_foreign_architecture_with_our_id_is_kept_and_warned_about():
    class OtherRlfn(spandrel.Architecture):
        def __init__(self):
            super().__init__(id="RLFN", detect=lambda sd: False)

        def load(self, state_dict):  # pragma: no cover - never detected
            raise AssertionError

    reg = _builtin_registry()
    reg.add(spandrel.ArchSupport.from_architecture(OtherRlfn()))
    with pytest.warns(UserWarning, match="'RLFN'"):
        added = install(reg)
    assert "RLFN" not in {a.architecture.id for a in added}
    assert isinstance(reg["RLFN"].architecture, OtherRlfn)


def test_default_install_goes_into_the_global_registry(monkeypatch):
    main = spandrel.MAIN_REGISTRY
    for attr in ("_architectures", "_ordered", "_by_id"):  # restored by monkeypatch at teardown
        monkeypatch.setattr(main, attr, getattr(main, attr))
    install()
    model = spandrel.ModelLoader().load_from_file(bundled_checkpoint("bsrn-s-x4"))
    assert (model.architecture.id, model.scale) == ("BSRN", 4)
    assert install() == []


# -- detection ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_builtin_spandrel_refuses_our_checkpoints(name):
    reg = _builtin_registry()
    assert not any(a.detect(read_state_dict(bundled_checkpoint(name))) for a in reg)
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader(registry=reg).load_from_file(bundled_checkpoint(name))


def test_detection_cross_matrix(state_dicts):
    """Each family accepts every bundled checkpoint of its architecture and rejects all others."""
    assert [a.architecture.id for a in ARCHITECTURES] == [f.id for f in FAMILIES]
    for name, sd in state_dicts.items():
        got = {a.architecture.id for a in ARCHITECTURES if a.detect(sd)}
        assert got == {OUR_IDS[VARIANTS[name].arch]}, name


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_the_loader_picks_our_architecture(registry, state_dicts, name):
    first = next(a for a in registry.architectures("detection") if a.detect(state_dicts[name]))
    assert first.architecture.id == OUR_IDS[VARIANTS[name].arch]


def _builtin_state_dicts():
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DCTLSA import DCTLSA
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.SAFMN import SAFMN
    from spandrel.architectures.SPAN import SPAN

    nets = {"SPAN": SPAN(num_in_ch=3, num_out_ch=3), "Compact": Compact(), "SAFMN": SAFMN(dim=36),
            "OmniSR": OmniSR(), "DCTLSA": DCTLSA()}
    return {arch_id: net.state_dict() for arch_id, net in nets.items()}


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # spandrel's own SAFMN/OmniSR code
def test_our_detectors_reject_similar_builtin_networks(registry):
    """Light SR networks of spandrel with similar names (fea_conv, B1.*, c1_r, upsampler.0) stay theirs."""
    for arch_id, sd in _builtin_state_dicts().items():
        assert not [f.id for f in FAMILIES if f.detect(sd)], arch_id
        first = next(a for a in registry.architectures("detection") if a.detect(sd))
        assert first.architecture.id == arch_id


# -- the descriptor -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_descriptor_describes_the_variant(descriptor, name):
    d, v = descriptor(name), VARIANTS[name]
    assert isinstance(d, spandrel.ImageModelDescriptor)
    assert d.architecture.id == OUR_IDS[v.arch]
    assert (d.purpose, d.scale, d.input_channels, d.output_channels) == ("SR", v.scale, 3, 3)
    assert d.size_requirements.minimum == v.min_size
    assert (d.size_requirements.multiple_of, d.size_requirements.square) == (1, False)
    assert d.tiling is spandrel.ModelTiling[v.tiling.upper()]
    assert (d.supports_half, d.supports_bfloat16) == (v.supports_half, v.supports_bfloat16)
    assert f"{v.channels}nf" in d.tags and f"{v.blocks}nb" in d.tags
    assert ("BSRN-S" in d.tags) == bool(v.kwargs.get("small"))
    assert not d.model.training
    assert not any(p.requires_grad for p in d.model.parameters())


def test_tiling_hints_differ_where_the_variants_do(descriptor):
    """BSRN's CCA uses whole-image statistics (tiling discouraged); BSRN-S's blocks are local."""
    assert descriptor("bsrn-x4").tiling is spandrel.ModelTiling.DISCOURAGED
    assert descriptor("bsrn-s-x4").tiling is spandrel.ModelTiling.SUPPORTED


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_output_equals_ours_on_a_real_image(descriptor, crop, name):
    d = descriptor(name)
    got = d(crop.clone())
    with torch.no_grad():
        want = load_model(name).model(crop.clone()).clamp(0, 1)
    assert got.shape == (1, 3, 48 * d.scale, 48 * d.scale)
    assert float((got - want).abs().max()) <= 1e-6
    assert float(got.std()) > 0.05  # a real picture, not a flat output


def test_psnr_y_of_bsrn_s_matches_ours(descriptor, set5_dir):
    pair = [p for p in find_pairs(set5_dir, 4) if p.name == "img_003"]
    assert len(pair) == 1
    ours = evaluate(torch_upscale_fn(load_model("bsrn-s-x4").model), pair, 4, ssim=False).psnr_y
    d = descriptor("bsrn-s-x4")
    theirs = evaluate(lambda x: d(torch.from_numpy(x)).numpy(), pair, 4, ssim=False).psnr_y
    assert theirs == pytest.approx(ours, abs=0.01)
    assert theirs > 25.0  # a working ×4 network on Set5, not noise


@pytest.mark.parametrize("name", ["bsrn-s-x4", "rfdn", "rlfn"])
def test_a_tiny_input_is_padded_by_spandrel(descriptor, crop, name):
    tiny = crop[..., :10, :12].clone()
    model = load_model(name).model
    with pytest.raises(RuntimeError), torch.no_grad():
        model(tiny)  # below ESA's 15-pixel minimum: the network alone cannot run it
    got = descriptor(name)(tiny)
    assert got.shape == (1, 3, 40, 48)
    padded = torch.nn.functional.pad(tiny, (0, 3, 0, 5), mode="reflect")  # to 15×15, as spandrel does
    with torch.no_grad():
        want = model(padded).clamp(0, 1)[..., :40, :48]
    assert float((got - want).abs().max()) <= 1e-6


def test_a_safetensors_copy_loads_too(loader, descriptor, crop, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "net_g_BSRN-S.safetensors"
    save_file({k: v.contiguous() for k, v in read_state_dict(bundled_checkpoint("bsrn-s-x4")).items()}, str(path))
    d = loader.load_from_file(path)
    assert (d.architecture.id, d.scale, d.tags) == ("BSRN", 4, descriptor("bsrn-s-x4").tags)
    assert torch.equal(d(crop.clone()), descriptor("bsrn-s-x4")(crop.clone()))


# -- bad state dicts ----------------------------------------------------------------------------------

def test_a_missing_tensor_is_named(loader, state_dicts):
    sd = dict(state_dicts["rfdn"])
    del sd["B1.c2_r.weight"]  # not one of the detection keys: spandrel still picks RFDN
    with pytest.raises(CheckpointError, match=r"Missing: B1\.c2_r\.weight"):
        loader.load_from_state_dict(sd)


def test_an_unexpected_tensor_is_named(loader, state_dicts):
    sd = dict(state_dicts["bsrn-x4"])
    sd["B1.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"Unexpected: B1\.extra\.weight"):
        loader.load_from_state_dict(sd)


def test_a_misshapen_upsampler_is_reported(loader, state_dicts):
    sd = dict(state_dicts["bsrn-s-x4"])
    sd["upsampler.upsampleOneStep.0.weight"] = torch.zeros(47, 48, 3, 3)  # 47 is not 3·scale²
    with pytest.raises(CheckpointError, match=r"shapes do not fit.*\(47, 48, 3, 3\)"):
        loader.load_from_state_dict(sd)


def test_an_unrelated_state_dict_is_still_unsupported(loader):
    with pytest.raises(spandrel.UnsupportedModelError):
        loader.load_from_state_dict({"encoder.weight": torch.zeros(4, 3, 3, 3)})


# -- without spandrel ---------------------------------------------------------------------------------

def _import_without_spandrel(monkeypatch) -> str:
    """The error message of importing the plugin while `import spandrel` fails."""
    monkeypatch.setitem(sys.modules, "spandrel", None)  # makes `import spandrel` raise ImportError
    monkeypatch.delitem(sys.modules, MODULE)
    with pytest.raises(MissingDependencyError) as info:
        importlib.import_module(MODULE)
    return str(info.value)


def test_without_spandrel_the_import_names_the_extra(monkeypatch):
    assert "pip install 'bsrn-edge[spandrel]'" in _import_without_spandrel(monkeypatch)
