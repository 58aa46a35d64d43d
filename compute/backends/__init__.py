"""Compute backends: one small interface, one module per kind of target.

Every backend offers `check()` (facts about the target), `prepare(spec,
local_blob)` (upload what the target lacks) and `launch(spec, handle)` (start
detached, return the handle), `poll(handle, offsets)` (status and new output
in one round trip; `stream` and `status` are its halves), `cancel(handle,
grace)` and `collect(handle, out)` (a tar of ./outputs and ./logs, written into the
file `out`; returns what it left out, one line each, why). Views, tasks
and the run monitor speak only to this interface.
"""

from __future__ import annotations

from importlib import import_module

from compute.backends.base import LOG_STREAMS, STREAMS, BackendError, LaunchSpec, Poll
from compute.models import ComputeKind

__all__ = ["LOG_STREAMS", "STREAMS", "BackendError", "LaunchSpec", "Poll", "backend_for"]

# Services that run pipeline steps only (as in the studio), each behind the same interface.
CLOUD_BACKENDS = {
    ComputeKind.DATABRICKS: ("compute.backends.databricks", "DatabricksBackend"),
    ComputeKind.BATCH: ("compute.backends.batch", "BatchBackend"),
    ComputeKind.DATALAKE: ("compute.backends.datalake", "DataLakeBackend"),
}
RUNNABLE_KINDS = (ComputeKind.LOCAL, ComputeKind.VM, ComputeKind.CLUSTER, ComputeKind.HDINSIGHT)


def backend_for(target, *, node=None, handle: dict | None = None):
    """The backend for a target (and, on a cluster, the node carrying the run)."""
    if target.kind == ComputeKind.LOCAL:
        from compute.backends.local import LocalBackend

        return LocalBackend()
    if target.kind == ComputeKind.VM:
        from compute.backends.vm import VmBackend

        return VmBackend(target, root=(handle or {}).get("root", ""))
    if target.kind == ComputeKind.HDINSIGHT:
        from compute.backends.hdinsight import HdInsightBackend

        return HdInsightBackend(target, root=(handle or {}).get("root", ""))
    if target.kind == ComputeKind.CLUSTER:
        from compute.backends.cluster import NodeBackend
        from compute.models import Node

        node_id = (handle or {}).get("node_id")
        if node is None and node_id is not None:
            node = Node.objects.filter(pk=int(node_id)).select_related("engine").first()
        if node is None:
            raise BackendError(f"The node that ran this run on {target.name} no longer exists.")
        return NodeBackend(target, node)
    if target.kind in CLOUD_BACKENDS:
        module, name = CLOUD_BACKENDS[target.kind]
        return getattr(import_module(module), name)(target)
    raise BackendError(
        f"Script runs on {target.get_kind_display()} targets are not supported: "
        "choose the local target, a VM, a compute cluster or an HDInsight / Spark head node."
    )
