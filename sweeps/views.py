from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from runs.charts import line_chart
from runs.models import FINAL_STATUSES, RunStatus
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error
from sweeps import selectors, services
from sweeps.definition import EXAMPLE
from sweeps.forms import SweepSubmitForm
from sweeps.models import Sweep


def _sweep(request, run_id: int) -> Sweep:
    try:
        return selectors.sweep_get(workspace=request.workspace, run_id=run_id)
    except Sweep.DoesNotExist as exc:
        raise Http404("No such sweep") from exc


@workspace_view()
def sweep_list(request):
    sweeps = selectors.sweep_list(workspace=request.workspace)[:100]
    return render(request, "sweeps/sweep_list.html", {"sweeps": sweeps})


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
    run = sweep.run
    return {
        "sweep": sweep,
        "spec": spec,
        "run": run,
        "rows": rows,
        "best": selectors.best_child(rows),
        "parameter_names": [p.name for p in spec.parameters],
        "chart": line_chart(
            spec.primary_metric_name,
            {f"#{row.child.run.number}": list(enumerate(row.values)) for row in rows if row.values},
        ),
        "can_cancel": request.membership.can_edit
        and run.status not in (*FINAL_STATUSES, RunStatus.CANCEL_REQUESTED),
    }


@workspace_view()
def sweep_detail(request, run_id: int):
    sweep = _sweep(request, run_id)
    template = "sweeps/_sweep_status.html" if request.htmx else "sweeps/sweep_detail.html"
    return render(request, template, _context(request, sweep))


@require_POST
@workspace_view()
def sweep_cancel(request, run_id: int):
    sweep = _sweep(request, run_id)
    if services.sweep_cancel(sweep=sweep, user=request.user):
        messages.success(request, f"Canceling sweep {sweep.run}: its child runs are being stopped.")
    else:
        messages.warning(request, f"Sweep {sweep.run} is {sweep.run.status}: nothing to cancel.")
    url = reverse("sweep_detail", args=[request.workspace.slug, sweep.run_id])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)
