from typing import Any

from django.db.models import QuerySet

from compute.models import (
    ComputeKind,
    ComputeOperation,
    ComputeState,
    ComputeTarget,
    Node,
    NodeState,
    TerminalSession,
)
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


def terminal_problem(target: ComputeTarget, node: Node | None = None) -> str:
    """Why a terminal cannot be opened on `target` (or its `node`); "" when it can."""
    if target.kind == ComputeKind.LOCAL:
        return (
            "The local target has no terminal: a shell there would run as the studio's own "
            "account, with its data and keys. Attach a virtual machine to get one."
        )
    if target.kind == ComputeKind.CLUSTER:
        if node is None:
            return f"Choose a node in the node table of {target.name} to open a terminal on it."
        if node.state not in (NodeState.IDLE, NodeState.RUNNING) or not node.container_id:
            return (
                f"Node {node.name} is {node.get_state_display()}: a terminal opens on an idle "
                "or running node."
            )
        return ""
    if not target.is_ssh:
        return f"A {target.get_kind_display()} target has no terminal."
    if target.state != ComputeState.SUCCEEDED:
        return (
            f"{target.name} is {target.state}: a terminal opens once its check has succeeded "
            "(use Re-check on its page)."
        )
    return ""
