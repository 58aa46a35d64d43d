"""A workspace's home page: its recent runs and targets, and the first steps still to take."""

from django.http import HttpResponse
from django.shortcuts import render

from compute.models import ComputeKind
from compute.selectors import compute_list
from runs.models import RunStatus
from runs.selectors import run_list
from studio.access import WorkspaceRequest, workspace_view
from studio.models import Workspace


def first_steps(workspace: Workspace) -> dict:
    """Which steps of the core loop (compute, a run, a finished run) a workspace has done."""
    runs = run_list(workspace=workspace)
    completed = runs.filter(status=RunStatus.COMPLETED).order_by("-created_at").first()
    return {
        "compute": compute_list(workspace=workspace).exclude(kind=ComputeKind.LOCAL).exists(),
        "run": runs.exists(),
        "completed": completed,
        "latest_run": runs.order_by("-created_at").first(),
    }


@workspace_view()
def home(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    targets = list(compute_list(workspace=workspace)[:8])
    steps = first_steps(workspace)
    return render(
        request,
        "studio/home.html",
        {
            "recent_runs": run_list(workspace=workspace)[:8],
            "targets": targets,
            "only_local": [t.kind for t in targets] == [ComputeKind.LOCAL],
            "steps": steps,
            "steps_left": not (steps["compute"] and steps["run"] and steps["completed"]),
        },
    )
