"""bsrn_edge.apps: the applications built on the runtime and the export.

- :mod:`.upscale`: ``bsrn-upscale`` (argument parsing, the runner, ``--ray``);
- :mod:`.jobs` and :mod:`.batch`: the batch-job model shared by ``bsrn-upscale`` and the Ray workers;
- :mod:`.video`: video files (PyAV);
- :mod:`.distributed`: a collection on a Ray cluster (Ray Data);
- :mod:`.export_cli`: ``bsrn-export``;
- :mod:`.args`: what both command lines share (exit codes, argparse types).

Nothing below this package imports it.
"""
