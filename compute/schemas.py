"""What the API answers about compute targets and their operations; never a secret.

Every kind's endpoints answer with these, so they live below the kinds.
"""

from datetime import datetime

from ninja import Schema

from compute import selectors
from compute.models import CLOUD_KINDS, ComputeKind, ComputeTarget


class OperationOut(Schema):
    action: str
    state: str
    steps: list[dict]
    error: str
    started_by: str | None
    started_at: datetime
    finished_at: datetime | None


class AttachedOut(Schema):
    """What a target attached over SSH adds to its JSON; never a secret."""

    address: str | None = None
    resource_id: str | None = None
    port: int | None = None
    username: str | None = None
    auth_method: str | None = None
    public_key: str | None = None
    host_key_fingerprint: str | None = None
    host_key_type: str | None = None
    offered_host_key: dict | None = None
    spark_master: str | None = None
    facts: dict = {}
    checked_at: datetime | None = None
    created_by: str | None = None
    operation: OperationOut | None = None


def attached_out(target: ComputeTarget) -> dict:
    """The AttachedOut fields of `target` (all empty for kinds that are not attached over SSH)."""
    operation = selectors.operation_latest(target=target)
    fields: dict = {
        "created_by": target.created_by.username if target.created_by else None,
        "operation": operation_out(operation) if operation else None,
    }
    if target.kind in CLOUD_KINDS:
        return fields | {"facts": target.facts, "checked_at": target.checked_at}
    if not target.is_ssh:
        return fields
    if target.kind == ComputeKind.HDINSIGHT:
        fields["spark_master"] = target.config.get("spark_master", "")
    return fields | {
        "address": target.address,
        "resource_id": target.resource_id or None,
        "port": target.port,
        "username": target.username,
        "auth_method": target.auth_method,
        "public_key": target.config.get("public_key"),
        "host_key_fingerprint": target.host_key_fingerprint or None,
        "host_key_type": target.host_key_type or None,
        "offered_host_key": target.config.get("offered_host_key"),
        "facts": target.facts,
        "checked_at": target.checked_at,
    }


def operation_out(operation) -> OperationOut:
    return OperationOut(
        action=operation.action,
        state=operation.state,
        steps=operation.steps,
        error=operation.error,
        started_by=operation.started_by.username if operation.started_by else None,
        started_at=operation.started_at,
        finished_at=operation.finished_at,
    )


class NodeOut(Schema):
    name: str
    state: str
    run_id: int | None
    engine: str | None
    container_id: str
    ssh_port: int | None
    cpus: float
    memory_gib: float
    idle_since: datetime | None
    error: str


class ComputeOut(AttachedOut):
    name: str
    kind: str
    state: str
    error: str
    warnings: list[str]
    created_at: datetime
    # Set while the machine does not answer the run monitor or the dispatcher.
    unreachable_since: datetime | None = None
    unreachable_reason: str = ""
    vm_size: str | None = None
    vm_priority: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    idle_seconds_before_scaledown: int | None = None
    engines: list[str] | None = None
    vnet_name: str | None = None
    subnet_name: str | None = None
    admin_username: str | None = None
    current_nodes: int | None = None
    target_nodes: int | None = None
    scaling: str | None = None
    nodes: list[NodeOut] = []


def compute_out(target: ComputeTarget) -> ComputeOut:
    """The fields every kind of target has (a cluster adds its own: compute.cluster.api)."""
    return ComputeOut(
        name=target.name,
        kind=target.kind,
        state=target.state,
        error=target.error,
        warnings=target.warnings or [],
        created_at=target.created_at,
        unreachable_since=target.unreachable_since,
        unreachable_reason=target.unreachable_reason,
        **attached_out(target),
    )
