from typing import Any

from django.db.models import QuerySet

from compute.models import ComputeOperation, ComputeTarget, TerminalSession
from studio.models import Workspace
from studio.secrets import maskable


def compute_list(*, workspace: Workspace) -> QuerySet[ComputeTarget]:
    return ComputeTarget.objects.filter(workspace=workspace).select_related("created_by")


def terminal_sessions(*, target: ComputeTarget, limit: int = 10) -> QuerySet[TerminalSession]:
    """The latest terminal sessions on `target`, newest first."""
    return target.terminal_sessions.all()[:limit]


def compute_get(*, workspace: Workspace, name: str) -> ComputeTarget:
    return ComputeTarget.objects.select_related("created_by").get(workspace=workspace, name=name)


def target_active_runs(*, target: ComputeTarget) -> QuerySet[Any]:
    """The runs on `target` that have not ended yet, oldest first."""
    return target.runs.unfinished().select_related("experiment").order_by("created_at")


def operation_latest(*, target: ComputeTarget) -> ComputeOperation | None:
    return target.operations.select_related("started_by").first()


def workspace_secrets(*, workspace_id: int) -> frozenset[str]:
    """What to mask in the workspace's run output: every secret of its targets."""
    rows = ComputeTarget.objects.filter(workspace_id=workspace_id).values_list(
        "password", "private_key", "passphrase", "access_token"
    )
    return frozenset(text for row in rows for value in row for text in maskable(value))
