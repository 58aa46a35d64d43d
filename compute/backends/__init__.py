"""Compute backends: one small interface, one module per kind of target.

Every backend is a `Backend` (base.py): `ensure_root()` (reach the target),
`prepare(spec)` (upload what the target lacks, return the handle) and
`launch(spec, handle)` (start detached, return the handle), `poll(handle,
offsets)` (status and new output in one round trip), `cancel(handle, grace)`,
`collect(handle, out, refused)` (a tar of ./outputs and ./logs, written into
the file `out`; returns what it left out, one line each, why), `cleanup(handle)`
and `free_port()`. Each family of kinds has its typed handle (`PosixHandle`,
`CloudHandle`), stored as JSON in `Run.handle` and read back with `handle_load`.
The run services and the run monitor speak only to this interface.
"""

from __future__ import annotations

from typing import Any

from compute.backends.base import (
    LOG_STREAMS,
    STREAMS,
    Backend,
    BackendError,
    CloudHandle,
    Handle,
    LaunchSpec,
    Poll,
    PosixHandle,
)
from compute.backends.batch import BatchBackend
from compute.backends.cloud import CloudBackend
from compute.backends.cluster import NodeBackend
from compute.backends.databricks import DatabricksBackend
from compute.backends.datalake import DataLakeBackend
from compute.backends.hdinsight import HdInsightBackend
from compute.backends.local import LocalBackend
from compute.backends.vm import VmBackend
from compute.models import ComputeKind, ComputeTarget, Node

__all__ = [
    "LOG_STREAMS",
    "STREAMS",
    "Backend",
    "BackendError",
    "CloudHandle",
    "Handle",
    "LaunchSpec",
    "Poll",
    "PosixHandle",
    "backend_for",
    "handle_load",
]

# Services that run pipeline steps only (as in the studio), each behind the same interface.
CLOUD_BACKENDS: dict[str, type[CloudBackend]] = {
    ComputeKind.DATABRICKS: DatabricksBackend,
    ComputeKind.BATCH: BatchBackend,
    ComputeKind.DATALAKE: DataLakeBackend,
}
RUNNABLE_KINDS = (ComputeKind.LOCAL, ComputeKind.VM, ComputeKind.CLUSTER, ComputeKind.HDINSIGHT)


def handle_load(kind: str, data: dict[str, Any] | None) -> Handle | None:
    """The typed handle of a run on a target of `kind`, from its JSON (None: not prepared)."""
    if not data:
        return None
    if kind in CLOUD_BACKENDS:
        return CloudHandle.from_dict(data)
    return PosixHandle.from_dict(data)


def backend_for(
    target: ComputeTarget, *, node: Node | None = None, handle: Handle | None = None
) -> Backend:
    """The backend for a target (and, on a cluster, the node carrying the run)."""
    root = handle.root if isinstance(handle, PosixHandle) else ""
    if target.kind == ComputeKind.LOCAL:
        return LocalBackend()
    if target.kind == ComputeKind.VM:
        return VmBackend(target, root=root)
    if target.kind == ComputeKind.HDINSIGHT:
        return HdInsightBackend(target, root=root)
    if target.kind == ComputeKind.CLUSTER:
        node_id = handle.node_id if handle is not None else None
        if node is None and node_id is not None:
            node = Node.objects.filter(pk=node_id).select_related("engine").first()
        if node is None:
            raise BackendError(f"The node that ran this run on {target.name} no longer exists.")
        return NodeBackend(target, node)
    if target.kind in CLOUD_BACKENDS:
        return CLOUD_BACKENDS[target.kind](target)
    raise BackendError(
        f"Script runs on {target.get_kind_display()} targets are not supported: "
        "choose the local target, a VM, a compute cluster or an HDInsight / Spark head node."
    )
