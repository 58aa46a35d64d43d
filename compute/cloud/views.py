"""Pages of the cloud targets: the three attach wizards, the detail page, re-check, credentials."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from compute import selectors
from compute.cloud import services as cloud_services
from compute.cloud.clients.datalake import RETIREMENT_NOTICE
from compute.cloud.forms import (
    SECRET_FORMS,
    BatchAttachForm,
    CloudAttachForm,
    DatabricksAttachForm,
    DataLakeAttachForm,
)
from compute.models import CLOUD_KINDS, ComputeKind, ComputeTarget, OperationState
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error
from studio.models import Role

WIZARDS: dict[str, tuple[type[CloudAttachForm], str]] = {
    ComputeKind.DATABRICKS: (
        DatabricksAttachForm,
        "Databricks runs pipeline steps as Databricks jobs: a Python script, a notebook or a JAR, "
        "on one of the workspace's clusters or on a new job cluster. Trainyard signs in with the "
        "token now and lists the workspace's clusters.",
    ),
    ComputeKind.DATALAKE: (
        DataLakeAttachForm,
        "Data Lake Analytics runs U-SQL scripts as pipeline steps. Trainyard signs in as the "
        "application now and lists the account's recent jobs.",
    ),
    ComputeKind.BATCH: (
        BatchAttachForm,
        "Azure Batch runs a pipeline step's command line as a job with one task on a pool of the "
        "account. Trainyard checks the key now, lists the pools and verifies the default one.",
    ),
}


def cloud_target(request, name: str) -> ComputeTarget:
    try:
        target = selectors.compute_get(workspace=request.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise Http404("No such compute target") from exc
    if target.kind not in CLOUD_KINDS:
        raise Http404("No such Databricks, Data Lake or Batch target")
    return target


def _attach(request, kind: str):
    form_class, intro = WIZARDS[kind]
    form = form_class(request.POST or None, workspace=request.workspace)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            form.attach(user=request.user)
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(
                request, f"Attaching {data['name']}: follow the steps below as they happen."
            )
            return redirect("compute_detail", slug=request.workspace.slug, name=data["name"])
    context = {
        "form": form,
        "kind_label": ComputeKind(kind).label,
        "intro": intro,
        "notice": RETIREMENT_NOTICE if kind == ComputeKind.DATALAKE else "",
    }
    return render(request, "compute/cloud_attach.html", context)


@workspace_view(role=Role.CONTRIBUTOR)
def databricks_attach(request):
    return _attach(request, ComputeKind.DATABRICKS)


@workspace_view(role=Role.CONTRIBUTOR)
def datalake_attach(request):
    return _attach(request, ComputeKind.DATALAKE)


@workspace_view(role=Role.CONTRIBUTOR)
def batch_attach(request):
    return _attach(request, ComputeKind.BATCH)


def cloud_detail(request, target: ComputeTarget):
    """The detail page of a cloud target (compute_detail hands cloud kinds over to this)."""
    operation = selectors.operation_latest(target=target)
    running = operation is not None and operation.state == OperationState.RUNNING
    context = {
        "target": target,
        "operation": operation,
        "poll": running or target.is_busy,
        "notice": RETIREMENT_NOTICE if target.kind == ComputeKind.DATALAKE else "",
    }
    if request.htmx:
        return render(request, "compute/_cloud_status.html", context)
    return render(request, "compute/cloud_detail.html", context)


@require_POST
@workspace_view()
def cloud_check(request, name: str):
    target = cloud_target(request, name)
    try:
        cloud_services.cloud_check(target=target, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("compute_detail", slug=request.workspace.slug, name=target.name)


@workspace_view(role=Role.OWNER, write_role=Role.OWNER)
def cloud_credentials(request, name: str):
    target = cloud_target(request, name)
    form_class, field = SECRET_FORMS[target.kind]
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cloud_services.cloud_credentials_update(
                target=target, user=request.user, secret=form.cleaned_data[field]
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(
                request, f"New credentials saved for {target.name}: checking them now."
            )
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    return render(request, "compute/cloud_credentials.html", {"target": target, "form": form})
