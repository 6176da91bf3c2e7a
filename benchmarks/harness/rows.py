"""The bench's row schema: one :class:`BenchRow` per model × backend × precision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BenchRow", "JSON_KEYS"]

# Keys every JSON/CSV row carries (the NTIRE columns); more fields follow them.
JSON_KEYS: tuple[str, ...] = (
    "model", "backend", "precision", "device", "psnr_y", "psnr_rgb", "params_m", "flops_g",
    "multiadds_720p_g", "acts_m", "convs", "mem_mb", "runtime_ms_median", "runtime_ms_mean",
)


@dataclass
class BenchRow:
    """One model × backend × precision. Complexity fields are the network's, whatever the backend.

    ``status`` is ``"ok"``, ``"skipped"`` (backend absent here; not an error) or ``"failed"``; ``note``
    says why, or adds a caveat. Measurements that could not be made are None.
    """

    model: str
    backend: str
    precision: str
    device: str
    psnr_y: float | None = None
    psnr_rgb: float | None = None
    params_m: float | None = None
    flops_g: float | None = None
    multiadds_720p_g: float | None = None
    acts_m: float | None = None
    convs: int | None = None
    mem_mb: float | None = None
    runtime_ms_median: float | None = None
    runtime_ms_mean: float | None = None
    params_m_published: float | None = None
    flops_g_published: float | None = None
    multiadds_720p_g_published: float | None = None
    acts_m_published: float | None = None
    convs_published: int | None = None
    mem_mb_published: float | None = None
    scale: int | None = None
    images: int = 0
    size: str = ""
    runs: int = 0
    warmup: int = 0
    status: str = "ok"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_note(self, *notes: str) -> None:
        """Append the non-empty ``notes`` to :attr:`note`, separated by ``"; "``."""
        self.note = "; ".join(n for n in (self.note, *notes) if n)
