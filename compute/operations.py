"""Operations on compute targets (attach, check, provision, teardown) and their steps.

An operation is recorded as a ComputeOperation whose steps the target's page
shows as they happen.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from compute.models import ComputeOperation, ComputeState, ComputeTarget, OperationState
from compute.names import NAME_TAKEN, name_taken_message

# Longer than the slowest check (connect timeout + 120 s preflight): an operation
# still "running" after this lost its worker and must not block the target.
STALE_OPERATION = timedelta(minutes=5)


class ComputeError(Exception):
    """A request the target's current state does not allow; the message says what to do."""


def target_create(**fields) -> ComputeTarget:
    """Store a new compute target; a name already taken in the workspace is a form error."""
    try:
        return ComputeTarget.objects.create(**fields)
    except IntegrityError:
        raise ValidationError(
            {"name": ValidationError(name_taken_message(fields["name"]), code=NAME_TAKEN)}
        ) from None


def operation_require_idle(target: ComputeTarget) -> None:
    """Refuse a second operation while one runs on the target (a stale one no longer counts)."""
    running = target.operations.filter(
        state=OperationState.RUNNING, started_at__gt=timezone.now() - STALE_OPERATION
    ).first()
    if running is not None:
        raise ComputeError(
            f"{target.name} is busy ({running.action} started "
            f"{running.started_at:%H:%M:%S}): wait until it finishes, then try again."
        )


def operation_open(
    *, target: ComputeTarget, user, action: str, steps: list[tuple[str, str]]
) -> ComputeOperation:
    """Record a new operation with its pending steps and mark the target as busy."""
    # Anything a stale operation left "running" is closed, so the page shows one live operation.
    target.operations.filter(state=OperationState.RUNNING).update(
        state=OperationState.FAILED,
        error="The worker running this operation stopped before it finished.",
        finished_at=timezone.now(),
    )
    state = ComputeState.CREATING if action == "attach" else ComputeState.UPDATING
    ComputeTarget.objects.filter(pk=target.pk).update(state=state, error="")
    target.state, target.error = state, ""
    return ComputeOperation.objects.create(
        target=target,
        workspace=target.workspace,
        target_name=target.name,
        action=action,
        started_by=user,
        steps=[
            {"key": key, "label": label, "state": "pending", "detail": ""} for key, label in steps
        ],
    )
