"""``python -m bsrn_edge.apps.upscale``: the same as ``bsrn-upscale``."""

from .run import main

raise SystemExit(main())
