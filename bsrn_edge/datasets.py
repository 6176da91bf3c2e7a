"""Discovery of LR/HR image pairs (torch-free).

Two layouts are understood:
- ``../shared/data`` style: ``img_NNN_SRF_s_LR.png`` beside ``img_NNN_SRF_s_HR.png``;
- DIV2K style: ``NNNN.png`` (HR) with ``NNNNx4.png`` (LR), in one folder or in ``*_HR``/``*_LR_bicubic/X4`` folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from .errors import InputError
from .imageio import IMAGE_EXTENSIONS

__all__ = ["Pair", "find_pairs", "bundled_set5", "shared_data_dir"]

_SRF = re.compile(r"^(?P<stem>.+)_SRF_(?P<scale>\d+)_LR\.(?P<ext>png|bmp|jpg|jpeg|tif|tiff)$", re.I)
_DIV2K_LR = re.compile(r"^(?P<stem>\d+)x(?P<scale>\d+)\.(?P<ext>png|bmp|jpg|jpeg)$", re.I)


@dataclass(frozen=True)
class Pair:
    name: str
    lr: Path
    hr: Path
    scale: int


def find_pairs(folder: str | Path, scale: int | None = None) -> list[Pair]:
    """All LR/HR pairs under ``folder`` (recursively), sorted by name; optionally one scale only."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; expected a folder of LR/HR image pairs")
    pairs: list[Pair] = []
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    by_name = {p.name.lower(): p for p in files}
    for p in files:
        m = _SRF.match(p.name)
        if m:
            hr = p.with_name(f"{m['stem']}_SRF_{m['scale']}_HR.{m['ext']}")
            if hr.is_file():
                pairs.append(Pair(m["stem"], p, hr, int(m["scale"])))
            continue
        m = _DIV2K_LR.match(p.name)
        if m:
            hr_name = f"{m['stem']}.{m['ext']}".lower()
            hr = p.with_name(hr_name)
            if not hr.is_file():
                # DIV2K folders: DIV2K_valid_LR_bicubic/X4/0801x4.png ↔ DIV2K_valid_HR/0801.png
                cands = [q for q in files if q.name.lower() == hr_name and q != p]
                hr = cands[0] if cands else by_name.get(hr_name, hr)
            if hr.is_file():
                pairs.append(Pair(m["stem"], p, hr, int(m["scale"])))
    if scale is not None:
        pairs = [q for q in pairs if q.scale == scale]
    if not pairs:
        want = f" at ×{scale}" if scale else ""
        raise InputError(
            f"{root}: found no LR/HR pairs{want}. Expected img_NNN_SRF_s_LR.png/_HR.png files or DIV2K's "
            f"NNNN.png with NNNNx{scale or 4}.png"
        )
    return sorted(pairs, key=lambda q: (q.scale, q.name))


def bundled_set5() -> Path:
    """The Set5 ×4 LR/HR pairs shipped with the package."""
    return Path(str(resources.files("bsrn_edge") / "data" / "Set5" / "x4"))


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project checkout, if present (developer machines and CI)."""
    here = Path(__file__).resolve().parent.parent
    cand = here.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def bundled_arrays(scale: int) -> list[tuple[str, "np.ndarray", "np.ndarray"]]:
    """(name, LR, HR) uint8 arrays from the bundled Set5 at any scale.

    ×4 uses the bundled MATLAB-bicubic LR images; other scales crop the HR to a multiple of the
    scale and downscale it with Pillow's bicubic (fine for comparing two backends, not for
    comparing with published PSNR).
    """
    import numpy as np

    from ._lazy import require
    from .imageio import read_rgb

    Image = require("PIL.Image")
    out = []
    for p in find_pairs(bundled_set5(), 4):
        hr = read_rgb(p.hr)
        if scale == 4:
            out.append((p.name, read_rgb(p.lr), hr))
            continue
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = np.ascontiguousarray(hr[:h, :w])
        lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))
        out.append((p.name, lr, hr))
    return out
