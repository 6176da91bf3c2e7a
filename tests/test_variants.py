import pytest

from bsrn_edge import InputError, get_variant
from bsrn_edge.variants import BUNDLED_NAMES, VARIANTS, bundled_checkpoint


def test_bundled_names_are_the_five_checkpoints():
    for name in ("bsrn-x2", "bsrn-x3", "bsrn-x4", "bsrn-s-x4", "bsrn-s-x4-ntire"):
        assert name in BUNDLED_NAMES
        assert bundled_checkpoint(name).is_file()


def test_variant_fields():
    v = get_variant("bsrn-s-x4")
    assert (v.scale, v.channels, v.blocks, v.min_size) == (4, 48, 5, 15)
    assert v.licence == "MIT" and "CVPRW 2022" in v.origin
    assert get_variant("BSRN-X3").scale == 3
    assert get_variant("bsrn-s") is v


def test_unknown_name_lists_known_ones():
    with pytest.raises(InputError, match="bsrn-s-x4"):
        get_variant("esrgan")


def test_variants_are_frozen():
    v = VARIANTS["bsrn-x4"]
    with pytest.raises(AttributeError):
        v.scale = 2  # type: ignore[misc]


def test_licence_ships_with_weights():
    d = bundled_checkpoint("bsrn-x4").parent
    assert "MIT License" in (d / "LICENSE").read_text()
