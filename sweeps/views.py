from django.contrib import messages
from django.shortcuts import redirect, render

from runs.charts import line_chart
from runs.parents import parent_cancel_view, parent_detail_view, parent_list_view
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error
from sweeps import selectors, services
from sweeps.definition import EXAMPLE
from sweeps.forms import SweepSubmitForm
from sweeps.models import Sweep
from sweeps.services import SWEEP


@workspace_view()
def sweep_submit(request):
    # Target and environment start empty: the service's defaults fill what stays empty.
    initial = {"experiment": request.GET.get("experiment", "")}
    form = SweepSubmitForm(
        request.POST or None, request.FILES or None, workspace=request.workspace, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        files = form.folder_files()
        try:
            run = services.sweep_submit(
                workspace=request.workspace,
                user=request.user,
                request=form.submit_request(),
                definition=form.cleaned_data["hyperdrive_config"],
                files=files,
                archive=form.cleaned_data.get("source_archive"),
                git_files=form.cleaned_data["source_git"],
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            summary = form.upload_summary(files)
            messages.success(
                request, f"Sweep {run} submitted to {run.target_name}. {summary}".strip()
            )
            return redirect("sweep_detail", request.workspace.slug, run.pk)
    return render(request, "sweeps/sweep_submit.html", {"form": form, "example": EXAMPLE})


def _context(request, sweep: Sweep) -> dict:
    spec = selectors.sweep_spec(sweep)
    rows = selectors.sweep_children(sweep, spec)
    return {
        "spec": spec,
        "rows": rows,
        "best": selectors.best_child(rows),
        "parameter_names": [p.name for p in spec.parameters],
        "chart": line_chart(
            spec.primary_metric_name,
            {f"#{row.child.run.number}": list(enumerate(row.values)) for row in rows if row.values},
        ),
    }


sweep_list = parent_list_view(SWEEP)
sweep_detail = parent_detail_view(SWEEP, _context)
sweep_cancel = parent_cancel_view(SWEEP)
