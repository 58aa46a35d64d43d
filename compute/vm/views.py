"""Pages of machines attached over SSH (VMs, HDInsight / Spark head nodes) and of the
local target: attach wizards, detail, re-check, credentials, host key, Spark master."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from compute import sandbox, selectors, ssh
from compute.models import SSH_KINDS, ComputeKind, ComputeTarget, OperationState
from compute.vm import services
from compute.vm.forms import (
    KEYGEN_COMMAND,
    Authentication,
    HdInsightAttachForm,
    SparkMasterForm,
    VmAttachForm,
    VmCredentialsForm,
    authorized_keys_command,
    generated_key_open,
    generated_key_seal,
)
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error
from studio.models import Role

# Fields a re-rendered wizard may show again; secrets are never sent back to the browser.
NON_SECRET_FIELDS = ("name", "address", "reachable_address", "port", "spark_master", "username")


def _target(request, name: str) -> ComputeTarget:
    try:
        return selectors.compute_get(workspace=request.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise Http404("No such compute target") from exc


def _vm(request, name: str) -> ComputeTarget:
    """A target attached over SSH: a VM or an HDInsight / Spark head node."""
    target = _target(request, name)
    if target.kind not in SSH_KINDS:
        raise Http404("No such machine attached over SSH")
    return target


def machine_detail(request, target: ComputeTarget):
    """The detail page of the local target, a VM or a head node (compute_detail hands them here)."""
    operation = selectors.operation_latest(target=target)
    running = operation is not None and operation.state == OperationState.RUNNING
    context: dict[str, object] = {
        "target": target,
        "operation": operation,
        "poll": running or target.is_busy,
        "terminal_problem": selectors.terminal_problem(target),
        "terminal_sessions": selectors.terminal_sessions(target=target),
    }
    if target.kind == ComputeKind.LOCAL:
        context["local_problem"] = sandbox.local_target_problem(request.user)
        context["local_isolated"] = not sandbox.isolation_problem()
        context["local_run_user"] = settings.LOCAL_RUN_USER
    if target.kind == ComputeKind.HDINSIGHT:
        context["spark_form"] = SparkMasterForm(
            initial={"spark_master": target.config.get("spark_master", "")}
        )
    if request.htmx:
        shown = request.GET.get("shown")
        if shown and shown != target.state:
            # The facts, host key and settings below the status change with the state.
            return HttpResponseClientRefresh()
        return render(request, "compute/_target_status.html", context)
    return render(request, "compute/compute_detail.html", context)


def _key_pair_context(token: str) -> dict:
    """What the wizard shows for a generated key: the public half and how to authorise it."""
    try:
        public_key = services.public_key_line(generated_key_open(token))
    except ValidationError:
        return {}
    return {"public_key": public_key, "authorize_command": authorized_keys_command(public_key)}


def attach_wizard(request, *, form_class, template: str):
    """An attach wizard for a machine reached over SSH: the form, key generation, attaching.

    The form's `attach` starts the attach; the user then watches its steps on the
    target's page.
    """
    context = {"keygen_command": KEYGEN_COMMAND}
    if request.method == "POST" and "generate" in request.POST:
        private_key, _ = ssh.generate_key_pair()
        initial = {field: request.POST.get(field, "") for field in NON_SECRET_FIELDS}
        initial.update(
            authentication=Authentication.GENERATE, generated_key=generated_key_seal(private_key)
        )
        form = form_class(initial=initial, workspace=request.workspace)
        context.update(_key_pair_context(initial["generated_key"]))
    elif request.method == "POST":
        form = form_class(request.POST, request.FILES, workspace=request.workspace)
        if form.is_valid():
            data = form.cleaned_data
            try:
                form.attach(user=request.user)
            except ServiceError as exc:
                form_add_service_error(form, exc)
            else:
                messages.success(
                    request, f"Attaching {data['name']}: follow the steps below as they happen."
                )
                return redirect("compute_detail", slug=request.workspace.slug, name=data["name"])
        if request.POST.get("generated_key"):
            context.update(_key_pair_context(request.POST["generated_key"]))
    else:
        form = form_class(workspace=request.workspace)
    context["form"] = form
    return render(request, template, context)


@workspace_view(role=Role.CONTRIBUTOR)
def vm_attach(request):
    return attach_wizard(request, form_class=VmAttachForm, template="compute/vm_attach.html")


@require_POST
@workspace_view()
def compute_check(request, name: str):
    target = _vm(request, name)
    try:
        services.compute_check(target=target, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("compute_detail", slug=request.workspace.slug, name=target.name)


def _machine(target: ComputeTarget) -> str:
    return "head node" if target.kind == ComputeKind.HDINSIGHT else "VM"


# New credentials decide whom every run on the target trusts: an owner's call.
@workspace_view(role=Role.OWNER, write_role=Role.OWNER)
def compute_credentials(request, name: str):
    target = _vm(request, name)
    context = {"target": target, "keygen_command": KEYGEN_COMMAND}
    if request.method == "POST" and "generate" in request.POST:
        private_key, _ = ssh.generate_key_pair()
        form = VmCredentialsForm(
            machine=_machine(target),
            initial={
                "username": request.POST.get("username", target.username),
                "authentication": Authentication.GENERATE,
                "generated_key": generated_key_seal(private_key),
            },
        )
        context.update(_key_pair_context(form.initial["generated_key"]))
    elif request.method == "POST":
        form = VmCredentialsForm(request.POST, request.FILES, machine=_machine(target))
        if form.is_valid():
            try:
                form.update(target=target, user=request.user)
            except ServiceError as exc:
                form_add_service_error(form, exc)
            else:
                messages.success(
                    request, f"New credentials saved for {target.name}: checking them now."
                )
                return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
        if request.POST.get("generated_key"):
            context.update(_key_pair_context(request.POST["generated_key"]))
    else:
        method = Authentication.PASSWORD if target.auth_method == "password" else Authentication.KEY
        form = VmCredentialsForm(
            initial={"username": target.username, "authentication": method},
            machine=_machine(target),
        )
    context["form"] = form
    return render(request, "compute/vm_credentials.html", context)


@require_POST
@workspace_view(write_role=Role.OWNER)
def compute_retrust(request, name: str):
    target = _vm(request, name)
    try:
        services.host_key_retrust(
            target=target, user=request.user, fingerprint=request.POST.get("fingerprint", "")
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{target.name} is now pinned to {target.host_key_fingerprint}: re-checking."
        )
    return redirect("compute_detail", slug=request.workspace.slug, name=target.name)


@workspace_view(role=Role.CONTRIBUTOR)
def hdinsight_attach(request):
    return attach_wizard(
        request, form_class=HdInsightAttachForm, template="compute/hdinsight_attach.html"
    )


@require_POST
@workspace_view(role=Role.CONTRIBUTOR)
def spark_master_update(request, name: str):
    targets = selectors.compute_list(workspace=request.workspace)
    target = targets.filter(name=name, kind=ComputeKind.HDINSIGHT).first()
    if target is None:
        raise Http404("No such HDInsight / Spark target")
    form = SparkMasterForm(request.POST)
    if form.is_valid():
        master = form.cleaned_data["spark_master"]
        try:
            form.update(target=target)
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"New runs on {target.name} submit to {master}."
                if master
                else f"New runs on {target.name} submit to the master the cluster uses.",
            )
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    return render(
        request,
        "compute/spark_master.html",
        {"target": target, "form": form},
        status=400,
    )
