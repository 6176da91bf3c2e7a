"""Checkpoint loading: bundled names, detection round-trips, and clear errors for bad files."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import SHARED_WEIGHTS, needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")

from bsrn_edge import CheckpointError, load_model  # noqa: E402
from bsrn_edge.checkpoint import build_model, detect_variant  # noqa: E402
from bsrn_edge.variants import VARIANTS  # noqa: E402

# The authors' parameter counts (../shared/REFERENCE.md §1; BSRN-S 156,288 is also the paper's 0.156 M);
# the NTIRE team18 entry has the BSRN-S layout.
PARAMS = {"bsrn-x2": 331_628, "bsrn-x3": 340_283, "bsrn-x4": 352_400, "bsrn-s-x4": 156_288, "bsrn-s-x4-ntire": 156_288}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_bundled_checkpoints_load_by_name(name):
    m = load_model(name)
    assert m.name == name
    assert m.num_params == PARAMS[name]
    assert m.scale == int(name.split("-x")[1][0])
    assert m.min_size == 15
    assert not m.model.training


def test_team18_file_is_told_apart_from_the_authors_bsrn_s():
    path = SHARED_WEIGHTS / "NTIRE2022_ESR" / "team18_bsrn.pth"
    if not path.is_file():
        pytest.skip("../shared/weights absent")
    assert load_model(str(path)).name == "bsrn-s-x4-ntire"


def _random_model(name: str):
    torch.manual_seed(zlib.crc32(name.encode()))  # str hash() is salted per process: not reproducible
    model = build_model(VARIANTS[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.mark.parametrize("name", sorted(VARIANTS))  # every architecture: BSRN, BSRN-S and the baselines
@pytest.mark.parametrize("wrap", ["bare", "params", "params_ema", "state_dict+module", "safetensors"])
def test_random_model_round_trips(tmp_path, lr_batch, name, wrap):
    model = _random_model(name)
    sd = model.state_dict()
    path = tmp_path / ("m.safetensors" if wrap == "safetensors" else "m.pth")
    if wrap == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    elif wrap == "bare":
        torch.save(sd, path)
    elif wrap == "params":
        torch.save({"params": sd}, path)
    elif wrap == "params_ema":
        junk = {k: torch.zeros_like(v) for k, v in sd.items()}
        torch.save({"params": junk, "params_ema": sd}, path)  # EMA weights win
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    loaded = load_model(str(path))
    assert loaded.variant.kwargs == VARIANTS[name].kwargs
    # random weights match no bundled hash, so the first entry with this configuration names it
    want = next(v.name for v in VARIANTS.values() if v.arch == VARIANTS[name].arch and v.kwargs == VARIANTS[name].kwargs)
    assert loaded.name == want
    x = torch.from_numpy(lr_batch[:1, :, :24, :24])
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_unregistered_configuration_gets_its_own_descriptor(tmp_path):
    from bsrn_edge.models.bsrn import BSRN

    model = BSRN(channels=32, blocks=3, scale=2, small=False)
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    loaded = load_model(str(tmp_path / "tiny.pth"))
    assert (loaded.scale, loaded.variant.channels, loaded.variant.blocks) == (2, 32, 3)
    assert loaded.variant.checkpoint is None


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(str(tmp_path / "nope.pth"))


def test_unknown_name():
    with pytest.raises(CheckpointError, match="known names"):
        load_model("swinir-x4")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth.*empty"):
        load_model(str(p))


def test_truncated_file(tmp_path):
    src = load_model("bsrn-s-x4").source
    p = tmp_path / "cut.pth"
    p.write_bytes(open(src, "rb").read()[:5000])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated"):
        load_model(str(p))


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pth"
    p.write_text("hello, I am a text file")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_model(str(p))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    p = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "payload": _Evil()}, p)
    with pytest.raises(CheckpointError, match="evil.pth.*refused"):
        load_model(str(p))
    assert "must never run" not in capsys.readouterr().out


def test_other_architecture_is_named(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3))
    torch.save(net.state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth.*matches no known architecture"):
        load_model(str(tmp_path / "other.pth"))


def test_near_miss_lists_missing_and_unexpected_keys(tmp_path):
    sd = dict(load_model("bsrn-s-x4").model.state_dict())
    sd.pop("B2.c5.bias")
    sd["B2.extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "near.pth")
    with pytest.raises(CheckpointError, match=r"near.pth.*Missing: B2\.c5\.bias.*Unexpected: B2\.extra\.weight"):
        load_model(str(tmp_path / "near.pth"))


def test_detect_reads_shapes_not_names_of_files():
    sd = load_model("bsrn-x3").model.state_dict()
    assert detect_variant(sd).name == "bsrn-x3"
    assert np.isclose(sum(v.numel() for v in sd.values()), PARAMS["bsrn-x3"])


# -- the loaded model as a descriptor (spandrel's calling convention) ---------------------------
def _tensor(img: np.ndarray):  # H×W×3 uint8 → 1×3×H×W float in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float() / 255.0


def test_loaded_model_is_callable_like_a_descriptor(lr_images):
    m = load_model("bsrn-s-x4")
    x = _tensor(lr_images[0][:40, :52])
    with torch.no_grad():
        want = m.model(x).clamp(0, 1)
    got = m(x)
    assert got.shape == (1, 3, 160, 208)
    assert torch.equal(got, want)
    assert (m.scale, m.input_channels, m.output_channels, m.purpose) == (4, 3, 3, "SR")
    assert m.size_requirements.minimum == 15 and m.size_requirements.multiple_of == 1
    assert m.size_requirements.get_padding(12, 7) == (3, 8)  # spandrel's order: width first
    assert m.size_requirements.get_padding(40, 52) == (0, 0)
    assert m.supports_half and m.supports_bfloat16
    assert (m.dtype, m.device.type) == (torch.float32, "cpu")


def test_tiling_hint_follows_the_architecture():
    assert load_model("bsrn-x2").tiling == "discouraged"  # CCA: whole-input channel statistics
    assert load_model("bsrn-s-x4").tiling == "supported"  # no CCA in BSRN-S
    assert load_model("rfdn").tiling == "supported"


def test_small_inputs_are_padded_and_cropped_as_the_runtime_does(lr_images):
    from bsrn_edge.runtime import Upscaler

    tiny = np.ascontiguousarray(lr_images[1][20:30, 30:42])  # 10×12, below BSRN-S's 15-pixel minimum
    m = load_model("bsrn-s-x4")
    out = m(_tensor(tiny))
    assert out.shape == (1, 3, 40, 48)
    mine = (out[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    runtime = Upscaler("bsrn-s-x4", device="cpu").upscale(tiny)
    assert np.abs(mine.astype(int) - runtime.astype(int)).max() <= 1


def test_half_precision_through_the_descriptor(lr_images):
    m = load_model("bsrn-s-x4")
    x = _tensor(lr_images[2][:32, :32])
    ref = m(x)
    m.half()
    assert m.dtype == torch.float16
    out = m(x.half()).float()
    m.float()
    mse = float(((out - ref) ** 2).mean())
    assert 10 * np.log10(1.0 / mse) > 45.0  # FP16 on a real image: no overflow, close to FP32


def test_descriptor_rejects_what_is_not_an_rgb_batch():
    m = load_model("bsrn-s-x4")
    with pytest.raises(Exception, match=r"N×3×H×W"):
        m(torch.zeros(3, 20, 20))
    with pytest.raises(Exception, match=r"N×3×H×W"):
        m(torch.zeros(1, 4, 20, 20))


def test_descriptor_names_a_spandrel_user_expects():
    m = load_model("bsrn-s-x4")
    assert (m.architecture.id, m.architecture.name) == ("BSRN", "BSRN")
    assert m.tags == ["BSRN-S", "48nf", "5nb"] and load_model("rfdn").tags == ["50nf", "4nb"]
    req = m.size_requirements
    assert req.check(15, 15) is True and req.check(20, 14) is False  # spandrel's check: (width, height) → bool
    with pytest.raises(Exception, match="smaller than the network's minimum"):
        req.require(14, 20)  # ours raises, with how to fix it
    assert m.train().model.training and not m.eval().model.training
    assert m.bfloat16().dtype == torch.bfloat16 and m.float().dtype == torch.float32
