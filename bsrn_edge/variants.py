"""The registry of model variants. Variants are data: adding one is one entry here.

This module imports neither torch nor onnxruntime, so the runtime can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from .errors import InputError
from .sizes import SizeRequirements

__all__ = ["Variant", "VARIANTS", "get_variant", "bundled_checkpoint", "BUNDLED_NAMES", "Tiling"]

Arch = Literal["bsrn", "imdn", "rfdn", "rlfn"]
#: Whether cutting an image into tiles suits the network (spandrel's ModelTiling, by name):
#: "supported"; "discouraged" (global statistics, such as CCA's per-channel mean and deviation, make a
#: tiled output differ from the whole-image one: run whole when memory allows); "internal".
Tiling = Literal["supported", "discouraged", "internal"]


@dataclass(frozen=True)
class Variant:
    """Everything a tool needs to know about one trained network, without loading it.

    ``config`` holds the constructor arguments of the architecture's module; the other fields are
    facts about the weights (scale, origin, licence) and how to run them (size limit, tiling advice).
    """

    name: str
    arch: Arch
    scale: int
    config: tuple[tuple[str, object], ...]
    min_size: int
    # The range the trained network was fed (RFDN, RLFN: 255). The loaded torch module rescales inside its
    # forward, so callers (and exported graphs) always take and return RGB in [0, 1].
    input_range: float = 1.0
    licence: str = "MIT"
    origin: str = ""
    checkpoint: str | None = None  # file name under bsrn_edge/weights when bundled
    tile: int = 195  # recommended LR tile side (6k + 3, see runtime/tiling.py)
    overlap: int = 48  # recommended LR overlap
    aliases: tuple[str, ...] = field(default=())
    tiling: Tiling = "supported"
    # checked on Set5 LR against FP32: FP16 59–61 dB, BF16 49–54 dB on every bundled network
    supports_half: bool = True
    supports_bfloat16: bool = True

    @property
    def kwargs(self) -> dict[str, object]:
        return dict(self.config)

    @property
    def channels(self) -> int:
        return _int(self.kwargs["channels"])

    @property
    def sizes(self) -> SizeRequirements:
        """The network's input-size rules (minimum side, ESA tile grid)."""
        return SizeRequirements(self.min_size)

    @property
    def blocks(self) -> int:
        return _int(self.kwargs["blocks"])

    @property
    def tags(self) -> list[str]:
        """Size tags in spandrel's style: features and blocks (``48nf``, ``5nb``), "BSRN-S" first for the small BSRN."""
        tags = [f"{self.channels}nf", f"{self.blocks}nb"]
        return ["BSRN-S", *tags] if self.arch == "bsrn" and self.kwargs.get("small") else tags

    @property
    def family(self) -> str:
        """The architecture's name as spandrel's registry knows it once the plugin is installed (BSRN, IMDN, …)."""
        return self.arch.upper()


def _int(value: object) -> int:
    """A whole-number hyper-parameter of ``config`` (ints by construction: the registry and the detectors write them)."""
    if not isinstance(value, int):
        raise TypeError(f"expected an int hyper-parameter, got {value!r}")
    return value


_AUTHORS = "Li et al., 'Blueprint Separable Residual Network for Efficient Image Super-Resolution', CVPRW 2022"
_NTIRE = "NTIRE 2022 Efficient SR challenge (github.com/ofsoundof/NTIRE2022_ESR, MIT, see LICENSE.NTIRE2022_ESR)"
# ESA: a 3×3 stride-2 unpadded conv then a 7×7 stride-3 max-pool need (H - 3) // 2 + 1 >= 7, i.e. H >= 15.
_ESA_MIN = 15


def _bsrn(scale: int, ckpt: str) -> Variant:
    return Variant(
        name=f"bsrn-x{scale}",
        arch="bsrn",
        scale=scale,
        config=(("channels", 64), ("blocks", 8), ("scale", scale), ("small", False)),
        min_size=15,
        tiling="discouraged",  # CCA: per-channel mean and deviation over the whole input
        origin=f"{_AUTHORS}; authors' checkpoint {ckpt}",
        checkpoint=ckpt,
    )


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _bsrn(2, "net_g_BSRN_x2.pth"),
        _bsrn(3, "net_g_BSRN_x3.pth"),
        _bsrn(4, "net_g_BSRN_x4.pth"),
        Variant(
            name="bsrn-s-x4",
            arch="bsrn",
            scale=4,
            config=(("channels", 48), ("blocks", 5), ("scale", 4), ("small", True)),
            min_size=15,  # BSRN-S has no CCA (a learnt channel weight instead): ESA is local, tiles suit it
            origin=f"{_AUTHORS}; authors' BSRN-S checkpoint net_g_BSRN-S.pth",
            checkpoint="net_g_BSRN-S.pth",
            aliases=("bsrn-s",),
        ),
        Variant(
            name="bsrn-s-x4-ntire",
            arch="bsrn",
            scale=4,
            config=(("channels", 48), ("blocks", 5), ("scale", 4), ("small", True)),
            min_size=15,
            origin="NTIRE 2022 Efficient SR challenge, team 18 (XPixel) entry team18_bsrn.pth",
            checkpoint="team18_bsrn.pth",
        ),
        Variant(
            name="imdn",
            arch="imdn",
            scale=4,
            config=(("channels", 64), ("blocks", 8), ("scale", 4)),
            min_size=1,  # 3×3 convs with padding only: any size runs
            origin=f"Hui et al., 'Lightweight Image Super-Resolution with Information Multi-distillation "
            f"Network', ACM MM 2019; baseline checkpoint imdn_baseline.pth of the {_NTIRE}",
            checkpoint="imdn_baseline.pth",
            aliases=("imdn-x4",),
        ),
        Variant(
            name="rfdn",
            arch="rfdn",
            scale=4,
            config=(("channels", 50), ("blocks", 4), ("esa_channels", 12), ("scale", 4)),
            min_size=_ESA_MIN,
            input_range=255.0,
            origin=f"Liu et al., 'Residual Feature Distillation Network for Lightweight Image "
            f"Super-Resolution', ECCVW 2020; baseline checkpoint rfdn_baseline.pth of the {_NTIRE}",
            checkpoint="rfdn_baseline.pth",
            aliases=("rfdn-x4",),
        ),
        Variant(
            name="rlfn",
            arch="rlfn",
            scale=4,
            config=(("channels", 46), ("mid_channels", 48), ("blocks", 4), ("esa_channels", 16), ("scale", 4)),
            min_size=_ESA_MIN,
            input_range=255.0,  # the challenge's test script feeds team04's RLFN [0, 255]
            origin=f"Kong et al., 'Residual Local Feature Network for Efficient Super-Resolution', "
            f"CVPRW 2022; runtime-track winner team04_rlfn.pth of the {_NTIRE}",
            checkpoint="team04_rlfn.pth",
            aliases=("rlfn-x4", "rlfn-ntire"),
        ),
    )
}

BUNDLED_NAMES: tuple[str, ...] = tuple(n for n, v in VARIANTS.items() if v.checkpoint)


def get_variant(name: str) -> Variant:
    """Look a variant up by name or alias; the error lists the known names."""
    key = name.strip().lower()
    if key in VARIANTS:
        return VARIANTS[key]
    for v in VARIANTS.values():
        if key in v.aliases:
            return v
    raise InputError(f"unknown model name {name!r}; known names: {', '.join(sorted(VARIANTS))}")


def weights_dir() -> Path:
    return Path(str(resources.files("bsrn_edge") / "weights"))


def bundled_checkpoint(name: str) -> Path:
    """Path of a bundled checkpoint by variant name (``bsrn-s-x4`` …)."""
    v = get_variant(name)
    if v.checkpoint is None:
        raise InputError(f"model {v.name!r} has no bundled checkpoint; pass a checkpoint file instead")
    path = weights_dir() / v.checkpoint
    if not path.is_file():
        raise InputError(f"bundled checkpoint {path} is missing; reinstall bsrn-edge")
    return path
