from django.contrib import messages
from django.shortcuts import redirect, render

from pipelines import selectors, services
from pipelines.definition import EXAMPLE
from pipelines.forms import PipelineSubmitForm
from pipelines.graph import pipeline_svg
from pipelines.models import Pipeline
from pipelines.services import PIPELINE
from runs.parents import parent_cancel_view, parent_detail_view, parent_list_view
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error


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
        except ServiceError as exc:
            if exc.field == "definition":
                # The definition is the uploaded file or the pasted text: its problem shows
                # by the file field, first on the form.
                form.add_error("definition_file", exc.message)
            else:
                form_add_service_error(form, exc)
        else:
            messages.success(
                request, f"Pipeline {run} submitted. {form.upload_summary(files)}".strip()
            )
            return redirect("pipeline_detail", request.workspace.slug, run.pk)
    return render(request, "pipelines/pipeline_submit.html", {"form": form, "example": EXAMPLE})


def _context(request, pipeline: Pipeline) -> dict:
    steps = selectors.pipeline_steps(pipeline)
    return {"steps": steps, "graph": pipeline_svg(steps, slug=request.workspace.slug)}


pipeline_list = parent_list_view(PIPELINE)
pipeline_detail = parent_detail_view(PIPELINE, _context)
pipeline_cancel = parent_cancel_view(PIPELINE)
