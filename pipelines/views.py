from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from pipelines import selectors, services
from pipelines.definition import EXAMPLE
from pipelines.forms import PipelineSubmitForm
from pipelines.graph import pipeline_svg
from pipelines.models import Pipeline
from runs.models import FINAL_STATUSES, RunStatus
from studio.access import workspace_view


def _pipeline(request, run_id: int) -> Pipeline:
    try:
        return selectors.pipeline_get(workspace=request.workspace, run_id=run_id)
    except Pipeline.DoesNotExist as exc:
        raise Http404("No such pipeline") from exc


@workspace_view()
def pipeline_list(request):
    pipelines = selectors.pipeline_list(workspace=request.workspace)[:100]
    return render(request, "pipelines/pipeline_list.html", {"pipelines": pipelines})


@workspace_view()
def pipeline_submit(request):
    form = PipelineSubmitForm(
        request.POST or None, request.FILES or None, workspace=request.workspace
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        files = form.folder_files()
        try:
            run = services.pipeline_submit(
                workspace=request.workspace,
                user=request.user,
                definition=data["definition_text"],
                experiment=data.get("experiment") or "",
                files=files,
                archive=data.get("source_archive"),
                git_files=data["source_git"],
                tags=data.get("tags") or {},
            )
        except services.PipelineError as exc:
            field = exc.field if exc.field in form.fields else None
            if field == "definition":
                field = "definition_file"
            form.add_error(field, str(exc))
        else:
            messages.success(
                request, f"Pipeline {run} submitted. {form.upload_summary(files)}".strip()
            )
            return redirect("pipeline_detail", request.workspace.slug, run.pk)
    return render(request, "pipelines/pipeline_submit.html", {"form": form, "example": EXAMPLE})


def _context(request, pipeline: Pipeline) -> dict:
    steps = selectors.pipeline_steps(pipeline)
    run = pipeline.run
    return {
        "pipeline": pipeline,
        "run": run,
        "steps": steps,
        "graph": pipeline_svg(steps, slug=request.workspace.slug),
        "can_cancel": request.membership.can_edit
        and run.status not in (*FINAL_STATUSES, RunStatus.CANCEL_REQUESTED),
    }


@workspace_view()
def pipeline_detail(request, run_id: int):
    pipeline = _pipeline(request, run_id)
    template = (
        "pipelines/_pipeline_status.html" if request.htmx else "pipelines/pipeline_detail.html"
    )
    return render(request, template, _context(request, pipeline))


@require_POST
@workspace_view()
def pipeline_cancel(request, run_id: int):
    pipeline = _pipeline(request, run_id)
    if services.pipeline_cancel(pipeline=pipeline, user=request.user):
        messages.success(
            request, f"Canceling pipeline {pipeline.run}: its steps are being stopped."
        )
    else:
        messages.warning(
            request, f"Pipeline {pipeline.run} is {pipeline.run.status}: nothing to cancel."
        )
    url = reverse("pipeline_detail", args=[request.workspace.slug, pipeline.run_id])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)
