"""Operations on compute targets (attach, check, provision, teardown) and their steps.

An operation is recorded as a ComputeOperation whose steps the target's page
shows as they happen (templates/compute/_operation_steps.html). Every kind runs
its operations with one `OperationRunner`: step by step, then `finish` or `fail`.
Secrets never reach a step or an error: every detail passes `redact` with the
workspace's secrets before it is stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute import selectors
from compute.models import ComputeOperation, ComputeState, ComputeTarget, OperationState
from compute.names import NAME_TAKEN, name_taken_message
from studio.errors import ServiceError
from studio.secrets import redact
from studio.tasks import task_enqueue

# Longer than the slowest check (connect timeout + 120 s preflight): an operation
# still "running" after this lost its worker and must not block the target.
STALE_OPERATION = timedelta(minutes=5)
# What the target is while an operation runs (any other operation: Updating).
TARGET_STATES = {
    "attach": ComputeState.CREATING,
    "provision": ComputeState.CREATING,
    "delete": ComputeState.DELETING,
}
STEP_PENDING, STEP_RUNNING, STEP_DONE, STEP_FAILED = "pending", "running", "done", "failed"


def target_create(**fields: Any) -> ComputeTarget:
    """Store a new compute target; a name already taken in the workspace is a conflict."""
    try:
        return ComputeTarget.objects.create(**fields)
    except IntegrityError:
        raise ServiceError(
            name_taken_message(fields["name"]), field="name", code=NAME_TAKEN, status=409
        ) from None


def operation_require_idle(target: ComputeTarget) -> None:
    """Refuse a second operation while one runs on the target (a stale one no longer counts)."""
    running = target.operations.filter(
        state=OperationState.RUNNING, started_at__gt=timezone.now() - STALE_OPERATION
    ).first()
    if running is not None:
        raise ServiceError(
            f"{target.name} is busy ({running.action} started "
            f"{running.started_at:%H:%M:%S}): wait until it finishes, then try again.",
            status=409,
        )


def operation_open(
    *, target: ComputeTarget, user: User, action: str, steps: list[tuple[str, str]]
) -> ComputeOperation:
    """Record a new operation with its pending steps and mark the target as busy."""
    # Anything a stale operation left "running" is closed, so the page shows one live operation.
    target.operations.filter(state=OperationState.RUNNING).update(
        state=OperationState.FAILED,
        error="The worker running this operation stopped before it finished.",
        finished_at=timezone.now(),
    )
    state = TARGET_STATES.get(action, ComputeState.UPDATING)
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


def operation_start(
    *, target: ComputeTarget, user: User, action: str, steps: list[tuple[str, str]], task: str
) -> ComputeOperation:
    """Open the operation and run the task named `task` on it in the background once the
    transaction commits. No periodic task runs it later: while the queue is down the
    caller gets a ServiceError saying to try again (the operation left open is closed
    by the next one)."""
    operation = operation_open(target=target, user=user, action=action, steps=steps)
    task_enqueue(task, operation.pk, redispatched=False)
    return operation


def step_key(label: str) -> str:
    """The key of a step added as it happens, from its label."""
    return label.lower().replace(" ", "_")


class OperationRunner:
    """Runs an operation's steps, saved on every change so the page can follow them.

    Steps declared when the operation opened are updated in place; a step not
    declared is added (a running step shows its progress that way). `current` is
    the step last started, where an unexpected failure belongs. Without an
    operation (a look that nobody follows) nothing is recorded.
    """

    def __init__(self, operation: ComputeOperation | None):
        self.operation = operation
        self.current = ""
        self.secrets = (
            selectors.workspace_secrets(workspace_id=operation.workspace_id)
            if operation is not None
            else frozenset()
        )

    def step(self, key: str, state: str, detail: str | None = None, *, label: str = "") -> None:
        """Set step `key` to `state` (and its detail, unless None); add it when it is new."""
        if self.operation is None:
            return
        steps = self.operation.steps
        step = next((s for s in steps if s["key"] == key), None)
        if step is None:
            step = {"key": key, "label": label or key, "state": state, "detail": ""}
            steps.append(step)
        step["state"] = state
        if detail is not None:
            step["detail"] = redact(detail, self.secrets)
        ComputeOperation.objects.filter(pk=self.operation.pk).update(steps=steps)

    def labelled(self, label: str, state: str, detail: str = "") -> None:
        """Set the step called `label`, added as it happens."""
        self.step(step_key(label), state, detail, label=label)

    def start(self, key: str, detail: str) -> None:
        self.current = key
        self.step(key, STEP_RUNNING, detail)

    def done(self, key: str, detail: str) -> None:
        self.step(key, STEP_DONE, detail)

    def finish(self, **target_fields: Any) -> None:
        """The operation succeeded; `target_fields` are what it found out about the target."""
        assert self.operation is not None  # only an operation that is followed finishes
        with transaction.atomic():
            if target_fields:
                ComputeTarget.objects.filter(operations=self.operation).update(**target_fields)
            ComputeOperation.objects.filter(pk=self.operation.pk).update(
                state=OperationState.SUCCEEDED, error="", finished_at=timezone.now()
            )
        self.operation.state = OperationState.SUCCEEDED

    def fail(self, error: str, *, step: str = "", label: str = "") -> None:
        """The operation failed at `step` (or the step called `label`); so did the target."""
        assert self.operation is not None  # only an operation that is followed fails
        error = redact(error, self.secrets)
        if label:
            self.labelled(label, STEP_FAILED, error)
        else:
            self.step(step or self.current, STEP_FAILED, error)
        with transaction.atomic():
            ComputeTarget.objects.filter(operations=self.operation).update(
                state=ComputeState.FAILED, error=error
            )
            ComputeOperation.objects.filter(pk=self.operation.pk).update(
                state=OperationState.FAILED, error=error, finished_at=timezone.now()
            )
        self.operation.state, self.operation.error = OperationState.FAILED, error
