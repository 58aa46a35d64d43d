from django.http import Http404
from django.shortcuts import render

from compute import cluster_views, selectors
from compute.models import ComputeKind, ComputeTarget
from studio.access import workspace_view


@workspace_view()
def compute_list(request):
    targets = selectors.compute_list(workspace=request.workspace)
    return render(request, "compute/compute_list.html", {"targets": targets})


@workspace_view()
def compute_detail(request, name: str):
    try:
        target = selectors.compute_get(workspace=request.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise Http404("No such compute target") from exc
    if target.kind == ComputeKind.CLUSTER:
        return cluster_views.cluster_detail(request, target)
    return render(request, "compute/compute_detail.html", {"target": target})
