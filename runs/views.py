from django.shortcuts import render

from runs import selectors
from studio.access import workspace_view


@workspace_view()
def experiment_list(request):
    experiments = selectors.experiment_list(workspace=request.workspace)
    return render(request, "runs/experiment_list.html", {"experiments": experiments})


@workspace_view()
def run_list(request):
    runs = selectors.run_list(workspace=request.workspace)[:100]
    return render(request, "runs/run_list.html", {"runs": runs})


@workspace_view()
def environment_list(request):
    environments = selectors.environment_list(workspace=request.workspace)
    return render(request, "runs/environment_list.html", {"environments": environments})
