"""The metadata written into exported ONNX files (``metadata_props``) and engine sidecars.

Torch-free: the runtime reads these fields instead of guessing scale and size limits.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING, Mapping

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .sizes import SizeRequirements

__all__ = ["ModelMeta", "META_PREFIX", "NONFINITE_OUTPUT", "BF16_LOSS", "BF16_MAX_LOSS_DB", "INT8_LOSS", "INT8_MAX_LOSS_DB"]

META_PREFIX = "bsrn_edge."
#: The second output of a uint8-I/O graph: float32 1×1×1×1, 1.0 when any value of the network's float
#: output was NaN or infinite (the uint8 image is then garbage), else 0.0.
NONFINITE_OUTPUT = "nonfinite"
#: FP32 graphs' metadata key for the PSNR-Y that OpenVINO BF16 lost against OpenVINO FP32 at export (dB, the worse of
#: Set5 and B100); absent where the exporting CPU had no native BF16. ``backend="auto"`` considers BF16 only
#: when it is at most :data:`BF16_MAX_LOSS_DB`.
BF16_LOSS = META_PREFIX + "bf16_loss_db"
BF16_MAX_LOSS_DB = 0.03
#: INT8 graphs' metadata key for the PSNR-Y lost against FP32 at export (dB); ``bsrn-export --int8`` refuses more
#: than its ``--max-loss-db``, whose default is :data:`INT8_MAX_LOSS_DB`, and ``backend="auto"`` considers an INT8
#: sibling only within that default (one exported with a larger budget runs when asked for by name only).
INT8_LOSS = META_PREFIX + "int8_loss_db"
INT8_MAX_LOSS_DB = 0.1


@dataclass(frozen=True)
class ModelMeta:
    """What a deployed artifact needs to be run correctly."""

    variant: str
    arch: str
    scale: int
    channels: int
    min_size: int
    tile: int
    overlap: int
    checkpoint_sha256: str
    exporter_version: str
    precision: str = "fp32"  # fp32 | fp16 | int8
    io_dtype: str = "float32"  # float32 | float16
    input_range: float = 1.0
    #: the graph's pixel I/O: "float" = N×3×H×W float in [0, 1] (``io_dtype``); "uint8" = N×H×W×3 uint8 RGB
    #: in and N×sH×sW×3 uint8 out, with normalisation, layout, clamp, round-half-to-even and cast in the graph
    pixels: str = "float"

    @property
    def sizes(self) -> "SizeRequirements":
        """The network's input-size rules (minimum side, ESA tile grid)."""
        from .sizes import SizeRequirements

        return SizeRequirements(self.min_size)

    def to_props(self) -> dict[str, str]:
        """Flat string map for ONNX ``metadata_props``."""
        return {META_PREFIX + k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "<model>") -> "ModelMeta":
        """Parse ``metadata_props``; a file exported by another tool gets an error that says so."""
        values: dict[str, object] = {}
        missing = []
        for f in fields(cls):
            key = META_PREFIX + f.name
            if key not in props:
                if f.default is MISSING:
                    missing.append(key)
                continue
            raw = props[key]
            try:
                values[f.name] = int(raw) if f.type in ("int", int) else float(raw) if f.type in ("float", float) else raw
            except ValueError as exc:
                raise InputError(f"{source}: metadata {key}={raw!r} is not a valid {f.type}") from exc
        if missing:
            raise InputError(
                f"{source}: not exported by bsrn-export (metadata keys missing: {', '.join(missing)}). "
                f"Export the checkpoint with `bsrn-export --ckpt ...`, or pass scale/min_size explicitly."
            )
        return cls(**values)  # type: ignore[arg-type]
