"""What a distributed run will do, decided on the driver before Ray is touched: inputs, outputs, actors.

Inputs and outputs follow ``bsrn-upscale``'s own rule, the same on one machine: :func:`discover_inputs`
(:mod:`bsrn_edge.apps.inputs`: a folder searched recursively, or with ``--ray`` also a glob or a text file
of paths) and :func:`plan_outputs` (:func:`bsrn_edge.apps.jobs.plan_tree`: each output at its input's path
relative to the input root). Here: how many actors, and what each reserves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from bsrn_edge.errors import InputError

from ..inputs import Inputs, discover_inputs
from ..jobs import VIDEO
from ..jobs import plan_tree as plan_outputs

__all__ = ["VIDEO", "Inputs", "ActorShape", "discover_inputs", "plan_outputs", "actor_shape"]


@dataclass(frozen=True)
class ActorShape:
    """How many model copies run, and what each one reserves from Ray."""

    actors: int
    cpus: float
    gpus: float

    @property
    def threads(self) -> int | None:
        """ONNX Runtime threads of a CPU actor (its CPUs); None on a GPU actor."""
        return None if self.gpus else int(self.cpus)


def actor_shape(cluster: Mapping[str, float], device: str, actors: int | None = None,
                cpus_per_actor: int | None = None) -> ActorShape:
    """Actors for a cluster with ``cluster`` resources (``ray.cluster_resources()``).

    Where the cluster has GPUs and ``device`` is not ``"cpu"``: one GPU per actor, one actor per GPU by
    default. Otherwise CPU actors of ``cpus_per_actor`` CPUs (default 1), as many as the CPUs allow.
    ``device="cuda"`` on a cluster without GPUs is an :class:`InputError`.
    """
    gpus = int(cluster.get("GPU", 0))
    if device == "cuda" and gpus < 1:
        raise InputError("--device cuda: the Ray cluster has no GPUs; start GPU nodes, or use --device cpu")
    if device != "cpu" and gpus >= 1:
        return ActorShape(actors or gpus, float(cpus_per_actor or 1), 1.0)
    per = cpus_per_actor or 1
    return ActorShape(actors or max(1, int(cluster.get("CPU", 1)) // per), float(per), 0.0)
