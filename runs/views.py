import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from compute.targets.views import terminal_page
from runs import charts, selectors
from runs.forms import EnvironmentForm, ExperimentForm, RunSubmitForm
from runs.models import FINAL_STATUSES, RunFile, RunStatus
from runs.services import environments, lifecycle
from runs.services.experiments import experiment_create
from runs.services.submit import run_submit_upload
from runs.snapshots import upload_plan
from runs.snapshots.archives import zip_chunks
from runs.snapshots.capture import SnapshotError, ignore_spec_from
from runs.terminal import run_has_terminal, run_place
from studio.access import workspace_view
from studio.blobs import SHA256, blob_exists, blob_path
from studio.errors import ServiceError, form_add_service_error
from studio.models import Role

RUNS_PER_PAGE = 25
SNAPSHOT_FILES_PER_PAGE = 200


def _run_table(request, *, experiment=None):
    filters = {key: request.GET.get(key, "").strip() for key in ("status", "target", "tag", "q")}
    sort = request.GET.get("sort", "-submitted")
    runs = selectors.run_list(
        workspace=request.workspace, experiment=experiment, filters=filters, sort=sort
    )
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    return {
        "page": page,
        "filters": filters,
        "sort": sort,
        "statuses": RunStatus.values,
        "targets": selectors.runnable_targets(workspace=request.workspace),
        "query": query.urlencode(),
        "sort_query": sort_query.urlencode(),
    }


@workspace_view()
def experiment_list(request):
    form = ExperimentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            experiment = experiment_create(
                workspace=request.workspace,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                user=request.user,
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(request, f"Experiment {experiment.name} created.")
            return redirect("experiment_detail", request.workspace.slug, experiment.name)
    experiments = selectors.experiment_list(workspace=request.workspace)
    return render(request, "runs/experiment_list.html", {"experiments": experiments, "form": form})


@workspace_view()
def experiment_detail(request, name: str):
    experiment = selectors.experiment_get(workspace=request.workspace, name=name)
    context = {"experiment": experiment, **_run_table(request, experiment=experiment)}
    if request.htmx:
        return render(request, "runs/_run_table.html", context)
    metric_names = selectors.metric_names(experiment=experiment)
    metric = request.GET.get("metric") or (metric_names[0] if metric_names else "")
    chosen = [int(pk) for pk in request.GET.getlist("compare") if pk.isdigit()]
    compare_runs = selectors.run_list(workspace=request.workspace, experiment=experiment)
    compare_runs = compare_runs.filter(pk__in=chosen) if chosen else compare_runs[:5]
    chart = charts.line_chart(metric, selectors.metric_compare(runs=compare_runs, name=metric))
    context.update(
        {
            "metric_names": metric_names,
            "metric": metric,
            "compare_chart": chart if metric else "",
            "compared": {run.pk for run in compare_runs},
            "all_runs": selectors.run_list(workspace=request.workspace, experiment=experiment)[:50],
        }
    )
    return render(request, "runs/experiment_detail.html", context)


@workspace_view()
def run_list(request):
    context = _run_table(request)
    if request.htmx:
        return render(request, "runs/_run_table.html", context)
    return render(request, "runs/run_list.html", context)


@workspace_view()
def run_submit(request):
    # Target, environment and node count start empty: a runconfig file fills them, and
    # only then the service's defaults.
    form = RunSubmitForm(
        request.POST or None,
        request.FILES or None,
        workspace=request.workspace,
        initial={"experiment": request.GET.get("experiment", "")},
    )
    if request.method == "POST" and form.is_valid():
        files = form.folder_files()
        try:
            run = run_submit_upload(
                workspace=request.workspace,
                user=request.user,
                request=form.submit_request(),
                files=files,
                archive=form.cleaned_data.get("source_archive"),
                git_files=form.cleaned_data["source_git"],
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            summary = form.upload_summary(files)
            messages.success(
                request, f"Run {run} submitted to {run.target_name}. {summary}".strip()
            )
            return redirect("run_detail", request.workspace.slug, run.pk)
    return render(request, "runs/run_submit.html", {"form": form})


@require_POST
@workspace_view()
def snapshot_plan(request):
    """What the submit page needs to send of a chosen folder.

    `{"paths": [...], "ignore": {".amlignore": text}}` → the paths the ignore rules
    leave out (the page neither hashes nor sends them); `{"sha256": [...]}` → the
    hashes of files the workspace does not hold yet (the only ones the page sends), and
    the signed plan the submit hands back for the others (runs.snapshots.upload_plan).
    """
    try:
        body = json.loads(request.body)
    except (ValueError, RawPostDataException):
        # Not JSON, or a form whose body was already read as form fields.
        body = None
    if isinstance(body, dict) and isinstance(body.get("paths"), list):
        ignore = body.get("ignore") or {}
        if not isinstance(ignore, dict) or not all(isinstance(t, str) for t in ignore.values()):
            return JsonResponse(
                {"error": "ignore maps an ignore file's name to its text."}, status=400
            )
        try:
            spec, _ = ignore_spec_from(ignore)
        except SnapshotError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        paths = [p for p in body["paths"] if isinstance(p, str)]
        return JsonResponse({"ignored": [p for p in paths if spec.match_file(p)]})
    hashes = body.get("sha256") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or not all(
        isinstance(h, str) and SHA256.fullmatch(h) for h in hashes
    ):
        return JsonResponse(
            {"error": 'Send {"paths": [...], "ignore": {...}} or {"sha256": [...]}.'}, status=400
        )
    sizes = selectors.snapshot_blob_sizes(workspace=request.workspace, hashes=hashes)
    plan = upload_plan.plan_sign(workspace=request.workspace, hashes=hashes, sizes=sizes)
    return JsonResponse({"missing": [sha for sha in hashes if sha not in sizes], "plan": plan})


def _run_context(request, run):
    series = selectors.metric_series(run)
    return {
        "run": run,
        "timeline": selectors.run_timeline(run),
        "charts": [charts.line_chart(name, {name: points}) for name, points in series.items()],
        "files": list(run.files.all()),
        "can_cancel": request.membership.can_edit
        and run.status not in (*FINAL_STATUSES, RunStatus.CANCEL_REQUESTED),
        "can_open_terminal": request.membership.can_edit and run_has_terminal(run),
    }


@workspace_view()
def run_detail(request, run_id: int):
    run = selectors.run_get(workspace=request.workspace, run_id=run_id)
    if hasattr(run, "pipeline"):
        # A pipeline's parent run is shown as the pipeline: its graph of steps.
        return redirect("pipeline_detail", request.workspace.slug, run.pk)
    if hasattr(run, "sweep"):
        # A sweep's parent run is shown as the sweep: its children and their metric.
        return redirect("sweep_detail", request.workspace.slug, run.pk)
    context = _run_context(request, run)
    entries = selectors.snapshot_entries(run.snapshot)
    context["snapshot_page"] = Paginator(entries, SNAPSHOT_FILES_PER_PAGE).get_page(
        request.GET.get("files")
    )
    return render(request, "runs/run_detail.html", context)


@workspace_view()
def run_status(request, run_id: int):
    """The part of the run page that changes while the run runs (polled by htmx)."""
    run = selectors.run_get(workspace=request.workspace, run_id=run_id)
    return render(request, "runs/_run_status.html", _run_context(request, run))


@workspace_view(role=Role.CONTRIBUTOR)
def run_terminal(request, run_id: int):
    """A shell in a running run's working directory, on its VM or node."""
    slug = request.workspace.slug
    return terminal_page(
        request,
        run_place(request.user, slug, run_id),
        f"/ws/w/{slug}/runs/{run_id}/terminal/",
        reverse("run_detail", args=[slug, run_id]),
    )


@require_POST
@workspace_view()
def run_cancel(request, run_id: int):
    run = selectors.run_get(workspace=request.workspace, run_id=run_id)
    if lifecycle.run_cancel(run=run, user=request.user):
        messages.success(request, f"Canceling run {run}: its processes are being stopped.")
    else:
        messages.warning(request, f"Run {run} is {run.status}: there is nothing to cancel.")
    url = reverse("run_detail", args=[request.workspace.slug, run.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@workspace_view()
def run_file_download(request, run_id: int, path: str):
    run = selectors.run_get(workspace=request.workspace, run_id=run_id)
    run_file = RunFile.objects.filter(run=run, path=path).first()
    if run_file is None:
        raise Http404("This run has no such file")
    return _blob_response(run_file.sha256, path)


@workspace_view()
def run_snapshot_file(request, run_id: int, path: str):
    run = selectors.run_get(workspace=request.workspace, run_id=run_id)
    entry = selectors.snapshot_entry(run.snapshot, path)
    if entry is None:
        raise Http404("The run's snapshot has no such file")
    return _blob_response(entry["sha256"], path)


@workspace_view()
def run_snapshot_zip(request, run_id: int):
    return snapshot_zip_response(selectors.run_get(workspace=request.workspace, run_id=run_id))


def snapshot_zip_response(run) -> StreamingHttpResponse:
    """The run's snapshot as a .zip, written while it is sent (the page's and the API's)."""
    if run.snapshot is None:
        raise Http404("This run has no snapshot")
    manifest = run.snapshot.manifest
    if not all(blob_exists(sha) for _, sha, _, _ in manifest):
        raise Http404("Some of the snapshot's files are no longer stored")
    date_time = timezone.localtime(run.snapshot.created_at).timetuple()[:6]
    response = StreamingHttpResponse(
        zip_chunks(manifest, date_time), content_type="application/zip"
    )
    name = f"{run.experiment.name}-{run.number}-snapshot.zip"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _blob_response(sha: str, path: str) -> FileResponse:
    try:
        handle = blob_path(sha).open("rb")
    except FileNotFoundError as exc:
        raise Http404("The file's content is no longer stored") from exc
    return FileResponse(handle, as_attachment=True, filename=path.rsplit("/", 1)[-1])


@workspace_view()
def environment_list(request):
    environments = list(selectors.environment_list(workspace=request.workspace))
    own = any(env.workspace_id for env in environments)
    return render(request, "runs/environment_list.html", {"environments": environments, "own": own})


@workspace_view()
def environment_create(request):
    form = EnvironmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            env = environments.environment_create(workspace=request.workspace, **form.cleaned_data)
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(request, f"Environment {env} saved.")
            return redirect("environment_list", request.workspace.slug)
    return render(request, "runs/environment_form.html", {"form": form})
