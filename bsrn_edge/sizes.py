"""What input sizes a network accepts and which tile sides suit it: one small typed value, one home.

Every size check and every tile snap in bsrn-edge reads a :class:`SizeRequirements` (the runtime from
an artifact's metadata, export and the bench from the variant registry), never a constant of its own.
Torch-free and numpy-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

__all__ = ["SizeRequirements", "ESA_ALIGNMENT", "ESA_OFFSET"]

#: ESA's pooling step in LR pixels: a stride-2 conv followed by a stride-3 max-pool.
ESA_ALIGNMENT = 6
#: With a side of ``6k + 3`` ESA's stride-2 3×3 conv and 7×7 stride-3 pool cover the window exactly.
ESA_OFFSET = 3


@dataclass(frozen=True)
class SizeRequirements:
    """Input-size rules of one network.

    ``minimum``: the smallest side it accepts (ESA needs 15). ``alignment``: tiles start on multiples of
    it (ESA's pooling grid). Tile sides are snapped to ``alignment·k + offset``, the sides whose pooling
    grid ends exactly at the window edge.
    """

    minimum: int
    alignment: int = ESA_ALIGNMENT
    offset: int = ESA_OFFSET

    def __post_init__(self) -> None:
        if self.minimum < 1 or self.alignment < 1 or not 0 <= self.offset < self.alignment:
            raise InputError(f"invalid size requirements {self!r}: need minimum ≥ 1, alignment ≥ 1, 0 ≤ offset < alignment")

    # -- spandrel's names, for users of both (spandrel.SizeRequirements): the network takes any size
    # from the minimum up; ``alignment`` is where tiles should start, not a constraint on the input.
    @property
    def multiple_of(self) -> int:
        """Input sides need not be a multiple of anything (spandrel's ``multiple_of``): 1."""
        return 1

    @property
    def square(self) -> bool:
        """Inputs need not be square (spandrel's ``square``)."""
        return False

    @property
    def none(self) -> bool:
        """True when any input size runs (spandrel's ``none``)."""
        return self.minimum <= 1

    def get_padding(self, width: int, height: int) -> tuple[int, int]:
        """(pad_width, pad_height) that makes a ``width × height`` input acceptable: spandrel's method, with
        spandrel's argument order (width first). Pad at the right and bottom; crop the output back."""
        return max(0, self.minimum - width), max(0, self.minimum - height)

    def accepts(self, height: int, width: int) -> bool:
        """True when a ``height × width`` input can be run as it is."""
        return min(height, width) >= self.minimum

    def check(self, width: int, height: int) -> bool:
        """spandrel's ``check``: True when a ``width × height`` input needs no padding (width first, as there)."""
        return self.get_padding(width, height) == (0, 0)

    def require(self, height: int, width: int, what: str = "input") -> None:
        """Raise :class:`InputError` unless ``accepts``; the message says how to fix it."""
        if not self.accepts(height, width):
            raise InputError(
                f"{what} is {height}×{width}, smaller than the network's minimum of {self.minimum}×{self.minimum}; "
                f"pad it to at least {self.minimum} pixels per side (Upscaler does this for you) and crop the output"
            )

    def snap_tile(self, side: int) -> int:
        """The largest ``alignment·k + offset`` not above ``side``; ``side`` itself when that would go below
        the minimum (or below ``offset``)."""
        snapped = side - (side - self.offset) % self.alignment
        return snapped if snapped >= max(self.minimum, self.offset, 1) else side

    def snap_down(self, side: int, step: int = 1) -> int:
        """``snap_tile(side)`` made ``step`` grid steps smaller (never below the minimum)."""
        return max(self.minimum, self.snap_tile(side) - step * self.alignment)
