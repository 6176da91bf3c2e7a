"""bsrn_edge.apps.distributed: upscale a collection on a Ray cluster (``bsrn-upscale --ray``; extra ``[ray]``).

:mod:`.plan` and :mod:`.manifest` decide inputs, outputs and what a re-run skips, without Ray;
:mod:`.ray_job` runs the jobs on Ray Data (imported lazily); the command line is :mod:`bsrn_edge.apps.upscale.on_ray`.
"""

from .manifest import MANIFEST_NAME, Entry, read_manifest, resume
from .plan import VIDEO, ActorShape, Inputs, actor_shape, discover_inputs, plan_outputs
from .ray_job import UpscaleActor, WorkerOptions, connect, run_on_ray

__all__ = ["MANIFEST_NAME", "Entry", "read_manifest", "resume", "VIDEO", "ActorShape", "Inputs", "actor_shape",
           "discover_inputs", "plan_outputs", "UpscaleActor", "WorkerOptions", "connect", "run_on_ray"]
