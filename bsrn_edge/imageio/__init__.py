"""Image files, the one home: reading, writing, 16-bit PNG, TIFF and atomic writes.

Used by the command lines, video, export and the Ray workers alike; the embeddable runtime
(``bsrn_edge.runtime``) never imports it: it takes and returns arrays.

- :func:`read_image` → :class:`Picture` (orientation applied, ICC and EXIF kept); :func:`read_rgb` for
  plain 8-bit RGB (datasets, calibration).
- :func:`write_image`: PNG 8/16-bit, JPEG, WebP, TIFF, always atomic.
- :func:`atomic_file` / :func:`atomic_path` / :func:`write_atomic`: any file, written to a hidden temporary and renamed, never through
  a symbolic link; :class:`RunLock` and :func:`remove_partials`: runs sharing a folder keep their temporaries.
"""

from .atomic import (
    RunLock,
    atomic_file,
    atomic_path,
    is_partial,
    open_nofollow,
    partial_path,
    remove_partials,
    run_token,
    set_run_token,
    write_atomic,
)
from .files import read_image, read_rgb, write_image
from .formats import (
    FORMATS_HINT,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    OUTPUT_FORMATS,
    Picture,
    holds_16_bit,
    holds_alpha,
    output_ext,
    output_format,
)
from .png16 import apply_orientation

__all__ = [
    "FORMATS_HINT",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "OUTPUT_FORMATS",
    "Picture",
    "RunLock",
    "apply_orientation",
    "atomic_file",
    "atomic_path",
    "holds_16_bit",
    "holds_alpha",
    "is_partial",
    "open_nofollow",
    "output_ext",
    "output_format",
    "partial_path",
    "read_image",
    "read_rgb",
    "remove_partials",
    "run_token",
    "set_run_token",
    "write_atomic",
    "write_image",
]
