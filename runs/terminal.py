"""The terminal of a running run: a shell in its working directory on its VM or node.

The shell is compute's (compute.terminal); this module finds where a run's opens (rank
0's node for a multi-node run) and who may open it.
"""

from __future__ import annotations

from compute.backends import PosixHandle, handle_load
from compute.consumers import TerminalConsumer
from compute.models import ComputeKind, ComputeTarget, Node
from compute.selectors import terminal_problem
from compute.terminal import Place, terminal_membership
from runs.models import FINAL_STATUSES, Run, RunStatus


def run_has_terminal(run) -> bool:
    """Whether the run page offers a terminal: the run runs on a VM, head node or node."""
    return (
        run.status == RunStatus.RUNNING
        and run.target is not None
        and bool(_run_dir(run.target, run.handle))
        and (run.target.is_ssh or run.target.kind == ComputeKind.CLUSTER)
    )


def _run_dir(target: ComputeTarget, data: dict | None) -> str:
    """The run's directory on a machine ("" before it has one, or on a cloud service)."""
    handle = handle_load(target.kind, data)
    return handle.run_dir if isinstance(handle, PosixHandle) else ""


def run_place(user, slug: str, run_id: int) -> Place | None:
    """A terminal in a running run's working directory, or None when `user` may not open one."""
    membership = terminal_membership(user, slug)
    run = membership and (
        Run.objects.select_related("target")
        .filter(workspace=membership.workspace, pk=run_id)
        .first()
    )
    if not run:
        return None
    target = run.target
    handle = handle_load(target.kind, run.handle) if target is not None else None
    if (
        target is None
        or run.status in FINAL_STATUSES
        or not isinstance(handle, PosixHandle)
        or not handle.run_dir
    ):
        problem = (
            f"Run {run.number} of {run.experiment.name} is {run.status}: a terminal opens in "
            "the working directory of a running run."
        )
        return Place(target or ComputeTarget(name=run.target_name), run_id=run.pk, problem=problem)
    node = None
    if target.kind == ComputeKind.CLUSTER:
        node_id = handle.node_id
        node = (
            Node.objects.select_related("engine").filter(pk=node_id).first()
            if node_id is not None
            else None
        )
        if node is None:
            problem = f"The node that runs this run on {target.name} no longer exists."
            return Place(target, run_id=run.pk, problem=problem)
    return Place(
        target,
        node=node,
        run_id=run.pk,
        directory=f"{handle.run_dir}/wd",
        problem=terminal_problem(target, node),
    )


class RunTerminalConsumer(TerminalConsumer):
    """A shell in a running run's working directory, on its VM or node."""

    def place(self, user) -> Place | None:
        kwargs = self.scope["url_route"]["kwargs"]
        return run_place(user, kwargs["slug"], int(kwargs["run_id"]))
