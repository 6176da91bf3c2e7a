"""``bsrn-upscale``: :mod:`.parser` (flags), :mod:`.run` (images and videos on this machine), :mod:`.on_ray`
(``--ray``)."""

from .run import main

__all__ = ["main"]
