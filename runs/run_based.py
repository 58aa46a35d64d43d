"""Run-based compute: a managed cluster created for one run and deleted once the run ends.

As with `target: amlcompute` in an `az ml` runconfig, a run can ask for a new
cluster of a VM size instead of naming a target. The cluster is an ordinary
one (its page shows it, its nodes scale from zero), marked `run_based` in its
config; when its run has ended and let go of its nodes, it is deleted, unless
the run asked to retain it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from compute.cluster.services import cluster_create, cluster_delete
from compute.models import ComputeKind, ComputeState, ComputeTarget
from runs.models import FINAL_STATUSES, Run

# The target name that asks for run-based compute, as in `az ml` runconfig files.
RUN_BASED_TARGET = "amlcompute"


@dataclass
class RunBasedSpec:
    vm_size: str
    vm_priority: str = "dedicated"
    max_nodes: int = 1
    retain: bool = False


def run_based_cluster_create(*, workspace, user, spec: RunBasedSpec, node_count: int):
    """A new cluster for one run, scaling from zero to what the run needs."""
    target = cluster_create(
        workspace=workspace,
        user=user,
        name=f"run-{secrets.token_hex(4)}",
        vm_size=spec.vm_size,
        vm_priority=spec.vm_priority,
        min_nodes=0,
        max_nodes=max(spec.max_nodes, node_count),
        idle_seconds_before_scaledown=0,
    )
    target.config["run_based"] = True
    target.config["retain"] = spec.retain
    ComputeTarget.objects.filter(pk=target.pk).update(config=target.config)
    return target


def run_based_cluster_release(*, run) -> None:
    """Delete the run's run-based cluster once the run has ended (unless it is retained)."""
    target = run.target
    if (
        target is None
        or target.kind != ComputeKind.CLUSTER
        or not target.config.get("run_based")
        or target.config.get("retain")
        or target.state == ComputeState.DELETING
        or run.status not in FINAL_STATUSES
    ):
        return
    if Run.objects.filter(target=target).exclude(status__in=FINAL_STATUSES).exists():
        return
    cluster_delete(target=target, user=run.submitted_by)
