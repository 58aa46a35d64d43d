"""Detaching a compute target of any kind attached to the workspace."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from compute import selectors, ssh
from compute.models import ComputeKind, ComputeOperation, ComputeTarget, OperationState
from compute.vm.services import ssh_target
from studio.errors import ServiceError

# Runs named in a refused detach; the Runs page lists them all.
DETACH_RUNS_NAMED = 5


def detach_refusal(target: ComputeTarget) -> str:
    """Why `target` cannot be detached now, or '' when it can."""
    if target.kind == ComputeKind.LOCAL:
        return "The built-in local target is part of every workspace: it stays."
    if target.kind == ComputeKind.CLUSTER:
        return (
            f"{target.name} is a compute cluster Trainyard created: delete it instead of detaching."
        )
    # Detached, their target would be gone for the run monitor: it would fail them and
    # leave their processes running on the machine.
    active = selectors.target_active_runs(target=target)
    count = active.count()
    if not count:
        return ""
    named = ", ".join(f"{run} ({run.status})" for run in active[:DETACH_RUNS_NAMED])
    if count > DETACH_RUNS_NAMED:
        named += f" and {count - DETACH_RUNS_NAMED} more"
    runs, have, them, they_end = (
        ("run", "has", "it", "it ends") if count == 1 else ("runs", "have", "them", "they end")
    )
    return (
        f"{target.name} still has {count} {runs} that {have} not ended: {named}. "
        f"Cancel {them} or wait until {they_end}, then detach {target.name}."
    )


def compute_detach(*, target: ComputeTarget, user: User) -> None:
    """Forget an attached target and its secrets; runs keep their history and its name."""
    refusal = detach_refusal(target)
    if refusal:
        raise ServiceError(refusal, status=409)
    pooled = ssh_target(target) if target.address else None
    with transaction.atomic():
        ComputeOperation.objects.create(
            target=None,
            workspace=target.workspace,
            target_name=target.name,
            action="detach",
            state=OperationState.SUCCEEDED,
            started_by=user,
            finished_at=timezone.now(),
        )
        target.delete()
    if pooled is not None:
        ssh.pool.close(pooled)
