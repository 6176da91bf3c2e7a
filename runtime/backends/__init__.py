"""One file per backend, behind the protocol in ``base``."""
