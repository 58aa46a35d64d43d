from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from runs.logs import store as logstore
from runs.models import Run
from studio.access import workspace_view


@require_safe
@workspace_view()
def run_logs(request, run_id: int):
    run = get_object_or_404(
        Run.objects.select_related("experiment", "workspace"),
        pk=run_id,
        workspace=request.workspace,
    )
    return render(request, "runs/run_logs.html", {"run": run})


@require_safe
@workspace_view()
def run_log_download(request, run_id: int, stream: str):
    """The whole stored stream, streamed from its file however large it is."""
    run = get_object_or_404(
        Run.objects.select_related("experiment"), pk=run_id, workspace=request.workspace
    )
    try:
        handle = logstore.stream_path(run.pk, stream).open("rb")
    except (ValueError, FileNotFoundError) as exc:
        raise Http404("This run has no such log") from exc
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{run.experiment.name}-{run.number}-{stream}.log",
        content_type="text/plain; charset=utf-8",
    )
